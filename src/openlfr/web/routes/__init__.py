"""One module per area, each with an ``APIRouter`` named ``router`` (see ``web/app.py``)."""

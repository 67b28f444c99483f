"""The one table from the :mod:`openlfr.errors` tree to HTTP status codes.

The app's error handler (:func:`openlfr.web.app.create_app`) answers with it; the console's
forms, which show a refused action on the same page, take their status from it too.
"""

from __future__ import annotations

from openlfr import errors

#: The HTTP status of each kind of :mod:`openlfr.errors`.
STATUS: dict[type[errors.OpenLFRError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.IntegrityFailure: 500,
    errors.Unavailable: 503,
}
#: The answer to anything unexpected (a bug): logged with its traceback, no detail.
INTERNAL = "internal error: it has been logged on the server"
#: The answer to an integrity failure: logged, no detail.
INTEGRITY = "integrity failure: it has been logged on the server"
#: What a console form shows again on the page, with the message (an integrity failure or
#: anything unexpected is left to the app's handler: logged, 500, no detail).
SHOWN_ON_FORMS: tuple[type[errors.OpenLFRError], ...] = (
    errors.InvalidInput, errors.Unauthenticated, errors.Forbidden, errors.NotFound,
    errors.Conflict, errors.Unavailable)


def http_status(exc: BaseException) -> int:
    """The status for ``exc``: its kind's, or 500 for anything else."""
    kind = errors.kind(exc)
    return STATUS[kind] if kind is not None else 500

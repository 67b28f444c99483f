"""Hostile uploads through the web app: the JSON API and the console page answer with a plain
message (400, or 503 when busy), never a 500; nothing is stored; uploads never touch the disk.
On SQLite and PostgreSQL (the ``gov`` fixture)."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from openlfr.governance import watchlists as wls
from openlfr.store.models import Subject, SubjectImage
from openlfr.vision import imageio
from openlfr.web import tokens
from openlfr.web.app import create_app
from tests.govfix import PASSWORD, Gov
from tests.hostile import bad_dimensions_tiff, malformed_exif_jpeg, png_bomb

REASON = "Warrant W-77 of the crown court, failing to appear at trial"
PURPOSE = "Find people wanted by the courts at the event"
META_CSRF = re.compile(r'<meta name="csrf-token" content="([0-9a-f]{64})">')


@pytest.fixture()
def api(gov: Gov, app: FastAPI) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """A client and an operator's bearer token header."""
    token = tokens.create_token(gov.db, gov.actors["admin"], "op1", "test")[1]
    with TestClient(app) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def _fields(reference: str = "case 9") -> dict[str, str]:
    return {"reference": reference, "category": "wanted_by_court", "reason": REASON,
            "expires": "30d", "source": "custody record 9"}


def _counts(gov: Gov) -> tuple[int, int]:
    with gov.db.reading() as s:
        return (len(s.scalars(select(Subject.id)).all()),
                len(s.scalars(select(SubjectImage.id)).all()))


def _post_api(client: TestClient, headers: dict[str, str], wl_id: int, name: str,
              data: bytes, reference: str = "case 9") -> object:
    return client.post(f"/api/v1/watchlists/{wl_id}/subjects", data=_fields(reference),
                       files={"image": (name, data, "application/octet-stream")},
                       headers=headers)


def test_hostile_files_through_the_api_are_400_with_a_plain_message(
        gov: Gov, api: tuple[TestClient, dict[str, str]], face_images: dict[str, Path]
) -> None:
    client, auth = api
    wl_id = wls.create_watchlist(gov.system, gov.actors["op1"], "uploads", PURPOSE).id
    cases = [
        ("bad.tif", bad_dimensions_tiff(), "unreadable: corrupt or truncated image (invalid "
                                           "dimensions)"),
        ("tall.png", png_bomb(1, 64_000_000), "unreadable: too large: 1×64,000,000 pixels"),
        ("square.png", png_bomb(8000, 8000), "unreadable: too large: 8,000×8,000 pixels"),
        ("thin.png", png_bomb(26000, 1000), "unreadable: too elongated"),
    ]
    # how fast each is refused (from the header, before decoding) is measured by
    # benchmarks/bench_upload_memory.py against a normal photo, not timed here
    for name, data, words in cases:
        r = _post_api(client, auth, wl_id, name, data, f"ref {name}")
        assert r.status_code == 400, (name, r.status_code, r.text)
        detail = r.json()["detail"]
        assert words in detail.lower(), (name, detail)
        assert detail.startswith("image 1 (custody record 9): "), detail
    assert _counts(gov) == (0, 0)
    # the JPEG with the malformed EXIF is a readable photo: turned upright and accepted
    sideways = malformed_exif_jpeg(Image.open(face_images["obama"]))
    r = _post_api(client, auth, wl_id, "sideways.jpg", sideways)
    assert r.status_code == 201, r.text
    assert _counts(gov) == (1, 1)


def _csrf(client: TestClient, path: str) -> str:
    r = client.get(path)
    assert r.status_code == 200, r.text
    m = META_CSRF.search(r.text)
    assert m
    return m.group(1)


def test_hostile_files_on_the_console_page_are_messages_not_500(
        gov: Gov, app: FastAPI) -> None:
    wl_id = wls.create_watchlist(gov.system, gov.actors["op1"], "uploads", PURPOSE).id
    page = f"/console/watchlists/{wl_id}"
    with TestClient(app) as client:
        r = client.post("/api/v1/auth/login", json={"name": "op1", "password": PASSWORD})
        assert r.status_code == 200
        for name, data, words in [
            ("bad.tif", bad_dimensions_tiff(), "unreadable: corrupt or truncated image"),
            ("tall.png", png_bomb(1, 64_000_000), "unreadable: too large"),
        ]:
            form = {"reference": "case 2026/117", "category": "wanted_by_court",
                    "reason": REASON, "expires": "90d", "source": "custody record 2026/117",
                    "csrf_token": _csrf(client, page)}
            r = client.post(f"{page}/subjects", data=form,
                            files=[("image", (name, data, "image/tiff"))],
                            follow_redirects=False)
            assert r.status_code == 400, (name, r.status_code, r.text[-2000:])
            assert "text/html" in r.headers["content-type"]
            message = re.search(r'id="subject-error"[^>]*>([^<]+)<', r.text)
            assert message and words in message.group(1).lower(), (name, r.text[-3000:])
            assert 'value="case 2026/117"' in r.text and "Traceback" not in r.text
    assert _counts(gov) == (0, 0)


def test_a_full_decoder_answers_busy(sqlite_gov: Gov, face_images: dict[str, Path],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    gov = sqlite_gov
    app = create_app(gov.system)
    wl_id = wls.create_watchlist(gov.system, gov.actors["op1"], "uploads", PURPOSE).id
    token = tokens.create_token(gov.db, gov.actors["admin"], "op1", "test")[1]
    auth = {"Authorization": f"Bearer {token}"}
    gate = imageio.DecodeGate(slots=1, memory=imageio.DECODE_MEMORY)
    monkeypatch.setattr(imageio, "GATE", gate)
    monkeypatch.setattr(imageio, "DECODE_WAIT", 0.2)
    photo = face_images["obama"].read_bytes()
    assert gate.acquire(1, timeout=1)  # another decode is running, and stays
    with TestClient(app) as client:
        r = _post_api(client, auth, wl_id, "o.jpg", photo)
        assert r.status_code == 503, r.text
        assert "busy" in r.json()["detail"] and r.headers["retry-after"]
        assert _counts(gov) == (0, 0)
        r = client.post("/api/v1/auth/login", json={"name": "op1", "password": PASSWORD})
        page = f"/console/watchlists/{wl_id}"
        form = {"reference": "case 1", "category": "wanted_by_court", "reason": REASON,
                "expires": "90d", "source": "custody 1", "csrf_token": _csrf(client, page)}
        r = client.post(f"{page}/subjects", data=form,
                        files=[("image", ("o.jpg", photo, "image/jpeg"))],
                        follow_redirects=False)
        assert r.status_code == 503 and "busy" in r.text and 'value="case 1"' in r.text
        gate.release(1)  # the other decode ends
        # uploads check their images one at a time: a second one waits, then is "busy"
        assert wls._ANALYSIS.acquire(timeout=1)
        try:
            r = _post_api(client, auth, wl_id, "o.jpg", photo)
        finally:
            wls._ANALYSIS.release()
        assert r.status_code == 503 and "another upload" in r.json()["detail"], r.text
        r = _post_api(client, auth, wl_id, "o.jpg", photo)  # and now the same upload goes in
        assert r.status_code == 201, r.text
    assert _counts(gov) == (1, 1)


def test_uploads_are_never_spooled_to_disk(sqlite_gov: Gov, face_images: dict[str, Path],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Starlette spools a file part over 1 MB to a temporary file: an unencrypted reference
    image on disk. Every temporary file made while the upload is handled is recorded."""
    gov = sqlite_gov
    app = create_app(gov.system)
    wl_id = wls.create_watchlist(gov.system, gov.actors["op1"], "uploads", PURPOSE).id
    token = tokens.create_token(gov.db, gov.actors["admin"], "op1", "test")[1]
    auth = {"Authorization": f"Bearer {token}"}
    # a real 3 MB photo: the face, with 3 MB of camera data after the end of the image
    big = face_images["obama"].read_bytes() + b"\x00" * (3 * 1024 * 1024)
    made: list[str] = []
    real = tempfile.TemporaryFile

    def recording(*args: object, **kwargs: object) -> object:
        made.append(f"TemporaryFile{args}{kwargs}")
        return real(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(tempfile, "TemporaryFile", recording)
    with TestClient(app) as client:
        r = _post_api(client, auth, wl_id, "big.jpg", big)
        assert r.status_code == 201, r.text
        # the console's form too (parsed once for its CSRF token, then by the page)
        r = client.post("/api/v1/auth/login", json={"name": "op2", "password": PASSWORD})
        page = f"/console/watchlists/{wl_id}"
        form = {"reference": "case 2", "category": "wanted_by_court", "reason": REASON,
                "expires": "90d", "source": "custody 2", "csrf_token": _csrf(client, page)}
        r = client.post(f"{page}/subjects", data=form,
                        files=[("image", ("b.jpg", face_images["obama2"].read_bytes()
                                          + b"\x00" * (2 * 1024 * 1024), "image/jpeg"))],
                        follow_redirects=False)
        assert r.status_code == 303, r.text[-2000:]
    assert made == []
    assert _counts(gov) == (2, 2)
    # the request body limit still bounds what is held in memory
    with TestClient(app) as client:
        r = _post_api(client, auth, wl_id, "huge.jpg", b"\xff\xd8\xff" + b"\0" * (33 << 20))
        assert r.status_code == 413


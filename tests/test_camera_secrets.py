"""Camera sources are secrets: one redaction (a URL parser, not a regex), sources stored
encrypted beside a display form and a keyed digest, audit entries without credentials, edits
keeping the secrets of unchanged lines, every role seeing only the display form (service, API,
console, CLI), plaintext sources of an older database sealed on open, and the live run still
opening the real source. Real SQLite file and real PostgreSQL (``gov``)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from typer.testing import CliRunner

from openlfr.cli import app as cli_app
from openlfr.config import Settings
from openlfr.governance import deployments as deps
from openlfr.governance.authz import RuleError
from openlfr.governance.live import DeploymentRun, RunOptions
from openlfr.governance.system import initialise, open_system
from openlfr.redact import redact
from openlfr.store.db import Database, alembic_config
from openlfr.store.models import AuditRecord, Camera, Deployment
from openlfr.web.app import create_app
from tests import videoclips
from tests.govfix import PASSWORD, Gov, authorise
from tests.test_gov_deployments import approved_watchlist, plan

AT_PASSWORD = "rtsp://u:p@ss@10.0.0.5/live"
QUERY = "http://10.0.0.7/cgi/mjpg?user=admin&pwd=hunter2&channel=1"
SECRETS = ("p@ss", "u:p", "hunter2", "admin")


@pytest.mark.parametrize(("source", "shown"), [
    (AT_PASSWORD, "rtsp://***@10.0.0.5/live"),
    ("rtsp://admin:secret@cam/s", "rtsp://***@cam/s"),
    (QUERY, "http://10.0.0.7/cgi/mjpg?user=***&pwd=***&channel=1"),
    ("rtsp://u:p/ss@host/live", "rtsp://***@host/live"),
    ("rtsp://u:p?x@host/a", "rtsp://***@host/a"),
    ("rtsp://u:p#x@host/a", "rtsp://***@host/a"),
    ("https://h/a?api_key=1&Password=2&access_token=3&sig=4&fps=5",
     "https://h/a?api_key=***&Password=***&access_token=***&sig=***&fps=5"),
    ("rtsp://10.0.0.6/stream", "rtsp://10.0.0.6/stream"),
    ("/data/clips/gate.avi", "/data/clips/gate.avi"),
    ("0", "0"),
    # a secret in the path cannot be told from a path: shown (and documented)
    ("rtmp://host/live/streamkey", "rtmp://host/live/streamkey"),
])
def test_redaction_hides_userinfo_and_secret_query_values(source: str, shown: str) -> None:
    assert redact(source) == shown
    from openlfr.video import sources
    assert sources.redact is redact  # one redaction for the whole project


def _entries(gov: Gov, dep_id: int) -> list[AuditRecord]:
    with gov.db.reading() as s:
        return list(s.scalars(select(AuditRecord).where(
            AuditRecord.object_type == "deployment", AuditRecord.object_id == str(dep_id))
            .order_by(AuditRecord.seq)))


def _sources(gov: Gov, dep_id: int) -> list[tuple[str, str]]:
    with gov.db.reading() as s:
        dep = s.get(Deployment, dep_id)
        assert dep is not None
        return deps.camera_sources(s, gov.system.keyring, dep)


def _no_secret(blob: str) -> None:
    for secret in ("p@ss", "hunter2", "pwd=h", "user=admin", "u:p@"):
        assert secret not in blob, secret


def _secret_deployment(gov: Gov, face_images: dict[str, Path]) -> int:
    wid = approved_watchlist(gov, face_images["obama"])
    return deps.create(gov.db, gov.actors["op1"], plan((wid,), cameras=(
        deps.CameraSpec("gate", AT_PASSWORD), deps.CameraSpec("yard", QUERY))),
        keyring=gov.system.keyring)


def test_sources_are_stored_encrypted_and_audited_without_secrets(gov: Gov, face_images):
    dep_id = _secret_deployment(gov, face_images)
    authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
    # the rows hold a display form, a digest and a ciphertext; no plaintext
    with gov.db.reading() as s:
        rows = s.scalars(select(Camera).where(Camera.deployment_id == dep_id)
                         .order_by(Camera.id)).all()
        raw = s.execute(text("SELECT source FROM cameras")).scalars().all()
        dep = s.get(Deployment, dep_id)
        assert dep is not None and dep.camera_key_id is not None
    assert raw == [None, None]
    assert [r.display for r in rows] == ["rtsp://***@10.0.0.5/live",
                                        "http://10.0.0.7/cgi/mjpg?user=***&pwd=***&channel=1"]
    for row in rows:
        assert row.source_ct and b"10.0.0" not in row.source_ct
        assert row.source_digest and len(row.source_digest) == 32
    # only the live run's reader decrypts
    assert _sources(gov, dep_id) == [("gate", AT_PASSWORD), ("yard", QUERY)]
    # every role sees the display form
    for who in ("op1", "ao1", "au1", "admin"):
        view = deps.show(gov.db, gov.actors[who], dep_id)
        _no_secret(view.model_dump_json())
        assert view.cameras[0].source == "rtsp://***@10.0.0.5/live"
    # the permanent log: the display form and a keyed digest, never the secret
    entries = _entries(gov, dep_id)
    assert [e.action for e in entries] == ["deployment.create", "deployment.authorise"]
    for e in entries:
        _no_secret(e.details)
        cams = json.loads(e.details)["cameras"]
        assert [c["digest"] for c in cams] == [r.source_digest for r in rows]
    if gov.kind == "sqlite":  # nor anywhere in the database file or its log
        gov.db.checkpoint()
        blob = b"".join(p.read_bytes() for p in gov.data_dir.glob("openlfr.db*"))
        assert b"hunter2" not in blob and b"p@ss" not in blob


def test_an_edit_keeps_the_secret_of_unchanged_lines(gov: Gov, face_images):
    dep_id = _secret_deployment(gov, face_images)
    digests = [c["digest"] for c in json.loads(_entries(gov, dep_id)[0].details)["cameras"]]
    # the display text, as pages show it, keeps the stored source; a new line is new
    changed = deps.edit(gov.db, gov.actors["op2"], dep_id, keyring=gov.system.keyring,
                        cameras=[deps.CameraSpec("gate", "rtsp://***@10.0.0.5/live"),
                                 deps.CameraSpec("yard", redact(QUERY)),
                                 deps.CameraSpec("side", "rtsp://10.0.0.6/stream")])
    assert changed == ["cameras"]
    assert _sources(gov, dep_id) == [("gate", AT_PASSWORD), ("yard", QUERY),
                                     ("side", "rtsp://10.0.0.6/stream")]
    # the same lines again, or the full source again: nothing changed, nothing written
    n = len(_entries(gov, dep_id))
    assert deps.edit(gov.db, gov.actors["op2"], dep_id, keyring=gov.system.keyring,
                     cameras=[deps.CameraSpec("gate", AT_PASSWORD),
                              deps.CameraSpec("yard", redact(QUERY)),
                              deps.CameraSpec("side", "rtsp://10.0.0.6/stream")]) == []
    assert len(_entries(gov, dep_id)) == n
    # a new password behind the same display form is a change (the digest tells)
    new = "rtsp://u:n3w-pass@10.0.0.5/live"
    assert deps.edit(gov.db, gov.actors["op2"], dep_id, keyring=gov.system.keyring,
                     cameras=[deps.CameraSpec("gate", new),
                              deps.CameraSpec("yard", redact(QUERY))]) == ["cameras"]
    assert _sources(gov, dep_id) == [("gate", new), ("yard", QUERY)]
    # a display form under another name is not a source: refused, not stored with its masks
    with pytest.raises(RuleError, match="redacted display form"):
        deps.edit(gov.db, gov.actors["op2"], dep_id, keyring=gov.system.keyring,
                  cameras=[deps.CameraSpec("gate2", "rtsp://***@10.0.0.5/live")])
    last = json.loads(_entries(gov, dep_id)[-1].details)
    assert last["cameras"][0]["source"] == "rtsp://***@10.0.0.5/live"
    assert last["cameras"][0]["digest"] != digests[0]
    assert last["cameras"][1]["digest"] == digests[1]
    for e in _entries(gov, dep_id):
        _no_secret(e.details)
        assert "n3w-pass" not in e.details


def test_the_api_and_the_console_show_and_keep_only_display_forms(gov: Gov, face_images):
    wid = approved_watchlist(gov, face_images["obama"])
    app = create_app(gov.system)
    now = datetime.now(UTC)
    from openlfr.web import tokens as tok
    auth = {name: {"Authorization": "Bearer " + tok.create_token(
        gov.db, gov.actors["admin"], name, "test")[1]} for name in ("op1", "ao2", "au1")}
    with TestClient(app) as c:
        body = {"name": "Gate", "site": "Station", "location": "Gate 3",
                "purpose": "Find people wanted by the courts",
                "alternatives": "Patrols do not suffice", "legal_basis": "Common law",
                "dpia_ref": "D-1", "equality_ref": "E-1",
                "planned_start": now.isoformat(),
                "planned_end": (now + timedelta(hours=2)).isoformat(),
                "signage": True, "public_notice": True, "watchlist_ids": [wid],
                "cameras": [{"name": "gate", "source": AT_PASSWORD},
                            {"name": "yard", "source": QUERY}]}
        r = c.post("/api/v1/deployments", json=body, headers=auth["op1"])
        assert r.status_code == 201, r.text
        _no_secret(r.text)
        dep_id = r.json()["id"]
        shown = r.json()["cameras"]
        # PATCH with what GET showed keeps the secrets; one line changed is one line changed
        shown[1] = {"name": "yard", "source": "http://10.0.0.8/mjpg?token=t0ps3cret"}
        r = c.patch(f"/api/v1/deployments/{dep_id}", json={"cameras": shown},
                    headers=auth["op1"])
        assert r.status_code == 200, r.text
        assert "t0ps3cret" not in r.text and "token=***" in r.text
        assert _sources(gov, dep_id) == [("gate", AT_PASSWORD),
                                         ("yard", "http://10.0.0.8/mjpg?token=t0ps3cret")]
    with TestClient(app) as c:  # the console page and its edit form: the display form only
        assert c.post("/api/v1/auth/login",
                      json={"name": "op1", "password": PASSWORD}).status_code == 200
        page = c.get(f"/console/deployments/{dep_id}").text
        _no_secret(page)
        assert "rtsp://***@10.0.0.5/live" in page and "t0ps3cret" not in page
    with TestClient(app) as c:
        for who in ("au1", "ao2"):
            r = c.get(f"/api/v1/deployments/{dep_id}", headers=auth[who])
            assert r.status_code == 200 and "t0ps3cret" not in r.text
            _no_secret(r.text)
    # the command line shows the display form too
    result = CliRunner().invoke(cli_app, ["deployment", "show", str(dep_id), "--user", "au1",
                                          "--json"], env=gov.env())
    assert result.exit_code == 0, result.output
    assert "rtsp://***@10.0.0.5/live" in result.output
    _no_secret(result.output)
    assert "t0ps3cret" not in result.output


def test_plaintext_sources_of_an_older_database_are_sealed_on_open(sqlite_gov: Gov,
                                                                    face_images):
    gov = sqlite_gov
    dep_id = _secret_deployment(gov, face_images)
    with gov.db.session() as s:  # as the migration leaves an older database
        s.execute(text("UPDATE cameras SET source = :src, source_ct = NULL, "
                       "source_digest = NULL WHERE name = 'yard'"), {"src": QUERY})
    system = open_system(gov.settings)
    try:
        with system.db.reading() as s:
            raw = s.execute(text("SELECT source FROM cameras")).scalars().all()
            sealed = s.scalars(select(AuditRecord).where(
                AuditRecord.action == "deployment.cameras_sealed")).one()
    finally:
        system.close()
    assert raw == [None, None]
    _no_secret(sealed.details)
    assert json.loads(sealed.details)["cameras"][0]["name"] == "yard"
    assert _sources(gov, dep_id) == [("gate", AT_PASSWORD), ("yard", QUERY)]


class _AuthFiles(SimpleHTTPRequestHandler):
    """Serves a folder, only with the right basic-auth credentials and query token."""

    expected_auth = ""
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        if "token=t0ps3cret" not in self.path:
            self.send_error(403)
            return
        if self.headers.get("Authorization") != self.expected_auth:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="camera"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


def test_the_live_run_opens_the_real_source(gov: Gov, face_images, tmp_path: Path,
                                            no_face_path: Path):
    folder = tmp_path / "served"
    folder.mkdir()
    clip = videoclips.write_clip(folder / "empty.avi", videoclips.empty_frames(
        10, prop=no_face_path))
    handler = type("H", (_AuthFiles,), {
        "expected_auth": "Basic " + base64.b64encode(b"cam:s3cret").decode(),
        "seen": []})

    def make(*args: object, **kwargs: object) -> _AuthFiles:
        return handler(*args, directory=str(folder), **kwargs)  # type: ignore[arg-type]

    server = ThreadingHTTPServer(("127.0.0.1", 0), make)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        source = f"http://cam:s3cret@127.0.0.1:{port}/{clip.name}?token=t0ps3cret"
        wid = approved_watchlist(gov, face_images["obama"])
        dep_id = deps.create(gov.db, gov.actors["op1"], plan(
            (wid,), cameras=(deps.CameraSpec("gate", source),)), keyring=gov.system.keyring)
        assert deps.show(gov.db, gov.actors["op1"], dep_id).cameras[0].source == (
            f"http://***@127.0.0.1:{port}/{clip.name}?token=***")
        authorise(gov.db, gov.system.keyring, gov.actors["ao1"], dep_id)
        deps.start(gov.db, gov.actors["op1"], dep_id)
        result = DeploymentRun(gov.system, dep_id, gov.actors["op1"],
                               options=RunOptions(workers=1, max_seconds=4)).run()
    finally:
        server.shutdown()
        server.server_close()
    # the camera was asked with the real credentials and token, and its frames were read
    assert any("token=t0ps3cret" in p for p in handler.seen)
    # (a stream is read newest-frame-first: frames the analysis could not keep up with are
    # counted as dropped, but they were read all the same)
    assert result.summary.frames > 0
    assert result.summary.frames + result.summary.dropped_frames >= 10



@pytest.fixture(params=["sqlite", "postgresql"])
def old_install(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """An installation at the schema before encryption (0002), with a master key."""
    from openlfr.store.crypto import create_master_key
    from tests.govfix import _pg_database

    gen = _pg_database() if request.param == "postgresql" else None
    settings = Settings(data_dir=tmp_path / "data",
                        database_url=next(gen) if gen is not None else None)
    settings.data_dir.mkdir(mode=0o700)
    create_master_key(settings.master_key_path)
    db = Database(settings.url)
    try:
        from alembic import command

        cfg = alembic_config(settings.url)
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0002")
    finally:
        db.dispose()
    yield settings
    if gen is not None:
        for _ in gen:
            pass


def test_the_migration_moves_plaintext_sources_to_the_encrypted_column(old_install: Settings):
    db = Database(old_install.url)
    now = datetime(2026, 11, 1, 8)
    with db.engine.begin() as conn:  # a deployment as the older version stored it
        conn.execute(text(
            "INSERT INTO deployments (id, name, site, location, purpose, legal_basis, dpia_ref,"
            " equality_ref, planned_start, planned_end, threshold, model_id, two_person_rule,"
            " signage, public_notice, status, created_by, created_at) VALUES (1, 'Gate', 's',"
            " 'l', 'p', 'b', 'd', 'e', :t, :t, 0.5, 'm', false, false, false, 'draft', 'op1',"
            " :t)"), {"t": now})
        conn.execute(text("INSERT INTO cameras (deployment_id, name, source) VALUES "
                          "(1, 'gate', :a), (1, 'yard', :b)"), {"a": AT_PASSWORD, "b": QUERY})
        conn.execute(text("INSERT INTO camera_stats (deployment_id, camera, frames, faces_seen,"
                          " tracks, dropped, seconds, updated_at) VALUES (1, 'gate', 10, 2, 1,"
                          " 0, 1.0, :t)"), {"t": now})
    db.dispose()
    system, done = initialise(old_install)  # migrates, then seals
    try:
        assert "encrypted the camera sources of 1 deployment(s)" in done
        with system.db.reading() as s:
            raw = s.execute(text("SELECT source FROM cameras")).scalars().all()
            shown = s.execute(text("SELECT name, display FROM cameras ORDER BY id")).all()
            stats = s.execute(text("SELECT count(*) FROM camera_stats")).scalar()
            dep = s.get(Deployment, 1)
            assert dep is not None
            sources = deps.camera_sources(s, system.keyring, dep)
            sealed = s.scalars(select(AuditRecord).where(
                AuditRecord.action == "deployment.cameras_sealed")).one()
    finally:
        system.close()
    assert raw == [None, None] and stats == 1  # nothing of the deployment was lost
    assert [tuple(r) for r in shown] == [("gate", "rtsp://***@10.0.0.5/live"),
                                         ("yard", redact(QUERY))]
    assert sources == [("gate", AT_PASSWORD), ("yard", QUERY)]
    _no_secret(sealed.details)

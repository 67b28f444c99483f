"""A lived-in installation for looking at the pages (the accessibility check of
tests/test_web_a11y.py and the screenshots of scripts/screenshots.py): staff of every role, the
public pages' demo (tests/test_web_public.py's ``populate``: deployments planned, running and
ended, with figures) and a running deployment with three real possible matches waiting for a
decision, made from registry-package photos (tests/conftest.py's ``face_images``)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from openlfr.config import Settings
from openlfr.governance import alerts as alert_svc
from openlfr.governance import deployments as deps
from openlfr.governance import users, watchlists
from openlfr.governance.authz import Actor
from openlfr.governance.system import initialise
from openlfr.store.enums import Role
from openlfr.video.types import Alert
from openlfr.vision import get_engine, load_image
from tests.govfix import authorise
from tests.test_gov_deployments import REASON, plan
from tests.test_web_public import Demo, populate

PASSWORD = "a long showcase password"
#: One account of each role (the name is the one to sign in with).
STAFF = {"admin": Role.ADMIN, "op1": Role.OPERATOR, "sv1": Role.SUPERVISOR,
         "ao1": Role.AUTHORISING_OFFICER, "au1": Role.AUDITOR}


@dataclass(frozen=True)
class Showcase:
    data_dir: Path
    demo: Demo  # the public pages' deployments
    deployment: int  # running, with the alerts below
    watchlist: int  # approved, two subjects with real reference photos
    alerts: tuple[int, ...]  # pending, newest last


def seed(data_dir: Path, photos: dict[str, Path]) -> Showcase:
    """A new installation in ``data_dir`` (see the module's text); ``photos``: the
    ``face_images`` of tests/conftest.py."""
    system, _ = initialise(Settings(data_dir=data_dir))
    try:
        users.create_first_admin(system.db, "admin", PASSWORD)
        admin = Actor("admin", Role.ADMIN)
        for name, role in STAFF.items():
            if name != "admin":
                users.add_user(system.db, admin, name, role, PASSWORD)
        demo = populate(system.db)
        op1, ao1 = Actor("op1", Role.OPERATOR), Actor("ao1", Role.AUTHORISING_OFFICER)
        wl = watchlists.create_watchlist(system, op1, "Wanted by the courts",
                                         "Locate people wanted by the courts at the station")
        expires = datetime.now(UTC) + timedelta(days=30)
        subjects = {
            key: watchlists.add_subject(system, op1, wl.id, ref, "wanted_by_court", REASON,
                                        expires, [(photos[key].read_bytes(), source)])
            for key, ref, source in (("obama", "Case 2026/117", "custody record 117"),
                                     ("biden", "Case 2026/118", "custody record 118"))}
        watchlists.approve_watchlist(system.db, ao1, wl.id)
        chosen = plan((wl.id,), cameras=(deps.CameraSpec("gate-3", "rtsp://10.0.0.5/gate3"),
                                         deps.CameraSpec("gate-4", "rtsp://10.0.0.6/gate4")))
        dep_id = deps.create(system.db, op1, chosen, keyring=system.keyring)
        authorise(system.db, system.keyring, ao1, dep_id)
        deps.start(system.db, op1, dep_id)
        engine = get_engine("sface")
        recorder = alert_svc.AlertRecorder(system, dep_id)
        stored = []
        for n, (probe, key, camera) in enumerate((("obama2", "obama", "gate-3"),
                                                  ("biden", "biden", "gate-4"),
                                                  ("obama3", "obama", "gate-3"))):
            image = load_image(photos[probe])
            if probe == key:  # the one photo of him: seen mirrored, as from another side
                image = cv2.flip(image, 1)
            face = engine.detect(image)[0]
            reference = load_image(photos[key])
            a = engine.embed(image, [face])[0].vector
            b = engine.embed(reference, engine.detect(reference)[:1])[0].vector
            score = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
            x, y, w, h = (int(v) for v in face.box)
            pad = w // 3
            crop = image[max(0, y - pad): y + h + pad, max(0, x - pad): x + w + pad].copy()
            subject = subjects[key]
            when = datetime.now(UTC) - timedelta(minutes=9 - 4 * n)
            recorder.publish(Alert(
                alert_id=f"{camera}:{n}", camera=camera, track_id=n + 1,
                subject_id=str(subject.id), display_name=subject.reference, score=score,
                threshold=chosen.threshold, reference_id=str(subject.images[0].id),
                model_id=engine.model_id, frame=100 * n, t=4.0 * n,
                wall_time=when.timestamp(), frame_wall=when.timestamp(),
                box=(x, y, w, h), probe_crop=cv2.resize(crop, (160, 160)), revision=0))
            row = recorder.stored_id(f"{camera}:{n}")
            assert row is not None, "the showcase alert was not stored"
            stored.append(row)
        return Showcase(data_dir, demo, dep_id, wl.id, tuple(stored))
    finally:
        system.close()


@dataclass(frozen=True)
class Site:
    url: str
    showcase: Showcase


@contextmanager
def running_site(photos: dict[str, Path]) -> Iterator[Site]:
    """:func:`seed` in a temporary folder, served by ``openlfr serve`` until the end of the
    ``with`` (its cameras are made up: the live runs are not resumed)."""
    from tests.test_web_serve import Server

    with tempfile.TemporaryDirectory(prefix="openlfr-showcase-") as tmp:
        showcase = seed(Path(tmp) / "data", photos)
        server = Server(showcase.data_dir, Path(tmp), "--no-resume")
        try:
            server.wait_up(120.0)  # a busy machine imports slowly
            yield Site(server.url, showcase)
        finally:
            server.terminate()

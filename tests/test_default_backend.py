"""The default recogniser: ``fusion`` where dlib and its model files are installed, ``sface``
where they are not, or the one ``OPENLFR_DEFAULT_BACKEND`` names; every place that creates a
watchlist or a deployment without naming a recogniser reads it.

The rest of the suite names ``sface`` as the default (tests/conftest.py); these tests take that
setting away to see the choice the program makes by itself."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from openlfr.governance import watchlists as wls
from openlfr.store.enums import Role
from openlfr.vision import registry
from tests.govfix import Gov, bearer_headers

HAS_DLIB = importlib.util.find_spec("dlib") is not None
needs_dlib = pytest.mark.skipif(not HAS_DLIB, reason="dlib is not installed (extra [dlib])")


@pytest.fixture()
def unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """No default named: the program chooses."""
    monkeypatch.delenv(registry.DEFAULT_BACKEND_ENV, raising=False)


@needs_dlib
def test_fusion_where_dlib_and_its_files_are_installed(unset: None) -> None:
    assert registry.default_backend() == "fusion"


def test_sface_where_dlib_cannot_be_imported(unset: None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "dlib" else find(name, *a))
    assert registry.default_backend() == "sface"


def test_sface_where_the_dlib_model_files_are_missing(
        unset: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """dlib alone is not enough: fusion also needs dlib's model files (package or cache)."""
    real = registry._package_dir
    monkeypatch.setattr(registry, "_package_dir",
                        lambda p: None if p == "face_recognition_models" else real(p))
    monkeypatch.setenv("OPENLFR_MODEL_DIR", str(tmp_path))
    assert registry.default_backend() == "sface"


def test_named_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in registry.BACKENDS:
        monkeypatch.setenv(registry.DEFAULT_BACKEND_ENV, name)
        assert registry.default_backend() == name
    monkeypatch.setenv(registry.DEFAULT_BACKEND_ENV, "arcface")
    with pytest.raises(registry.ModelError, match="OPENLFR_DEFAULT_BACKEND='arcface'"):
        registry.default_backend()


@needs_dlib
def test_a_new_watchlist_takes_the_default(gov: Gov, client: TestClient, unset: None) -> None:
    """The service and the API (watchlists and deployments) read it."""
    fusion = registry.BACKENDS["fusion"].model_id
    made = wls.create_watchlist(gov.system, gov.actors["op1"], "wanted",
                                "Locate people wanted by the courts at the station")
    assert made.model_id == fusion
    h = bearer_headers(gov, "default")
    r = client.post("/api/v1/watchlists", headers=h[Role.OPERATOR],
                    json={"name": "second", "purpose": "Locate people wanted by the courts"})
    assert r.status_code == 201, r.text
    assert r.json()["model_id"] == fusion
    start = datetime.now(UTC) + timedelta(days=1)
    r = client.post("/api/v1/deployments", headers=h[Role.OPERATOR], json={
        "name": "Gate", "site": "Station", "location": "Gate 3",
        "purpose": "Find people wanted by the courts", "alternatives": "Patrols do not suffice",
        "legal_basis": "Common law", "dpia_ref": "D-1", "equality_ref": "E-1",
        "planned_start": start.isoformat(), "planned_end": (start + timedelta(hours=2)).isoformat(),
        "signage": True, "public_notice": True, "cameras": [{"name": "gate", "source": "0"}]})
    assert r.status_code == 201, r.text
    assert r.json()["model_id"] == fusion


@needs_dlib
def test_enroll_makes_a_fusion_watchlist(face_images: dict[str, Path], tmp_path: Path,
                                         unset: None) -> None:
    """``openlfr enroll`` into a new file (what ``watch`` then runs on), in a process of its
    own, without ``--backend``."""
    import os

    env = {k: v for k, v in os.environ.items() if k != registry.DEFAULT_BACKEND_ENV}
    wl = tmp_path / "w.watchlist"
    done = subprocess.run([sys.executable, "-c", "from openlfr.cli import main; main()",
                           "enroll", str(face_images["obama"]), "--watchlist", str(wl),
                           "--subject", "obama", "--json"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    from openlfr.watchlist.store import Watchlist

    assert Watchlist.load(wl).model_id == registry.BACKENDS["fusion"].model_id
    listed = subprocess.run([sys.executable, "-c", "from openlfr.cli import main; main()",
                             "models", "list", "--json"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert json.loads(listed.stdout)["default_backend"] == "fusion"

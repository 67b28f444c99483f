"""Shared fixtures: real face photos from registry packages, fetched once and verified; and
every test kept away from the user's real home.

The images come from the source distributions of ``face_recognition==1.3.0`` and
``insightface==2.1`` on PyPI (fetched with pip, checked by SHA-256, cached under
``OPENLFR_TEST_CACHE`` or ``~/.cache/openlfr-test`` of the real home) and from scikit-image's
bundled ``astronaut``. Nothing here reads ../shared.

Isolation: before anything is collected, ``HOME`` and the ``XDG_*`` base directories point into
a temporary folder and every ``OPENLFR_*`` setting of the user's shell is removed (the suite's
own ``OPENLFR_TEST_*`` stay), so the program's defaults (data directory, model cache) and every
library's caches land there, for the tests and for the processes they start. The photo cache is
the one thing kept in the real home. A guard compares the real home at the end of the session
with its start and fails the run if anything but that cache was written there.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import settings

#: The variables that place a user's files; each points into the session's temporary home.
HOME_VARIABLES = {
    "HOME": "",
    "XDG_DATA_HOME": ".local/share",
    "XDG_CONFIG_HOME": ".config",
    "XDG_CACHE_HOME": ".cache",
    "XDG_STATE_HOME": ".local/state",
}
#: The user's real values, handed down to pytest-xdist workers and read by the guard.
_REAL_ENV = "OPENLFR_TEST_REAL_ENV"
_saved_env: dict[str, str | None] = {}
_temp_home: Path | None = None
_home_before: dict[str, object] = {}


def real_env() -> dict[str, str | None]:
    """The home variables as the user's shell had them (``None``: unset); outside a test run
    (scripts/screenshots.py), as they are."""
    if _REAL_ENV not in os.environ:
        return {v: os.environ.get(v) for v in HOME_VARIABLES}
    return json.loads(os.environ[_REAL_ENV])


def real_home() -> Path:
    return Path(real_env()["HOME"] or "/").expanduser()


def _cache_dir() -> Path:
    """The photo cache: ``OPENLFR_TEST_CACHE``, resolved in the real home at start-up."""
    return Path(os.environ["OPENLFR_TEST_CACHE"])


def watched_in_home(home: Path, env: dict[str, str | None], allowed: Path) -> dict[str, object]:
    """What a test could leave under a home: every entry directly in it and in its XDG base
    directories (by name), and every file of the program's own folders there (by size and
    time), except the allowed cache. Other programs' folders are compared by name only, so
    that their own work at the same time does not count."""
    def base(variable: str) -> Path:
        value = env.get(variable)
        return Path(value) if value else home / HOME_VARIABLES[variable]

    bases = [base(v) for v in HOME_VARIABLES if v != "HOME"]
    ours = [b / "openlfr" for b in bases]
    seen: dict[str, object] = {}

    def skip(path: Path) -> bool:
        return path == allowed or allowed in path.parents

    for folder in [home, *bases]:
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if not skip(entry) and entry not in bases and entry.name != ".local":
                seen[str(entry)] = "dir" if entry.is_dir() else "file"
    for folder in ours:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not skip(Path(dirpath) / d)]
            for name in filenames:
                path = Path(dirpath) / name
                if skip(path):
                    continue
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                seen[str(path)] = (st.st_size, st.st_mtime_ns)
    return seen


def home_changes(before: dict[str, object], after: dict[str, object]) -> list[str]:
    return sorted(
        [f"created {p}" for p in after.keys() - before.keys()]
        + [f"removed {p}" for p in before.keys() - after.keys()]
        + [f"changed {p}" for p in before.keys() & after.keys() if before[p] != after[p]])


def pytest_configure(config: pytest.Config) -> None:
    """Point HOME and the XDG directories at a temporary home before anything is imported or
    collected; keep the real photo cache."""
    global _temp_home, _home_before
    if _REAL_ENV not in os.environ:  # the main process (an xdist worker inherits it)
        real = {v: os.environ.get(v) for v in HOME_VARIABLES}
        real["HOME"] = str(Path.home())
        os.environ[_REAL_ENV] = json.dumps(real)
        _saved_env[_REAL_ENV] = None
    cache = os.environ.get("OPENLFR_TEST_CACHE")
    cache_path = (Path(cache).expanduser() if cache
                  else real_home() / ".cache" / "openlfr-test").absolute()
    _temp_home = Path(tempfile.mkdtemp(prefix="openlfr-test-home-"))
    changes: dict[str, str | None] = {"OPENLFR_TEST_CACHE": str(cache_path)}
    for variable, relative in HOME_VARIABLES.items():
        changes[variable] = str(_temp_home / relative)
    for variable in os.environ:
        if variable.startswith("OPENLFR_") and not variable.startswith("OPENLFR_TEST_"):
            changes[variable] = None  # the user's data dir, database, key, model dir, user, ...
    # The suite's model ids, thresholds and scores are sface's: it is named as the default
    # recogniser here, whether dlib is installed or not (which would make it fusion);
    # tests/test_default_backend.py checks that choice itself.
    changes["OPENLFR_DEFAULT_BACKEND"] = "sface"
    for variable, value in changes.items():
        _saved_env.setdefault(variable, os.environ.get(variable))
        if value is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = value
    _home_before = watched_in_home(real_home(), real_env(), _cache_dir())


def pytest_unconfigure(config: pytest.Config) -> None:
    for variable, value in _saved_env.items():
        if value is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = value
    _saved_env.clear()
    if _temp_home is not None:
        shutil.rmtree(_temp_home, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _real_home_untouched() -> Iterator[None]:
    """The guard: fails the session if a test wrote under the real home (outside the photo
    cache). Torn down last, after every other fixture."""
    yield
    changes = home_changes(_home_before,
                           watched_in_home(real_home(), real_env(), _cache_dir()))
    if changes:
        pytest.fail(f"the tests wrote under the real home {real_home()} (unless another program "
                    "did at the same time): " + "; ".join(changes[:20]), pytrace=False)


SDISTS = {
    "face_recognition-1.3.0.tar.gz": (
        "face_recognition==1.3.0",
        "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
    ),
    "insightface-2.1.tar.gz": (
        "insightface==2.1",
        "776cbd36b70f5f2ae1a026101cfb80387f0b2280a0dbaf073f8d3ed69f554e01",
    ),
}

_FR = ("face_recognition-1.3.0.tar.gz", "face_recognition-1.3.0/tests/test_images/")
IMAGES = {
    "obama": (_FR[0], _FR[1] + "obama.jpg"),
    "obama2": (_FR[0], _FR[1] + "obama2.jpg"),
    "obama3": (_FR[0], _FR[1] + "obama3.jpg"),
    "biden": (_FR[0], _FR[1] + "biden.jpg"),
    "group": ("insightface-2.1.tar.gz", "insightface-2.1/insightface/data/images/t1.jpg"),
}


# Property-based tests (hypothesis): the same examples on every run and no per-example deadline
# (a shared CI machine is slow at times), nothing stored between runs. `--hypothesis-profile
# long` (benchmarks/fuzz_api.py) draws many more, new ones each run.
settings.register_profile("ci", max_examples=100, derandomize=True, deadline=None,
                          database=None, print_blob=True)
settings.register_profile("long", max_examples=2000, deadline=None, database=None,
                          print_blob=True)
settings.load_profile("ci")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _locked_cache(cache: Path) -> tuple[Path, int]:
    """The photo cache, locked against other test processes (pytest-xdist workers, a second
    run) until the returned descriptor is closed."""
    cache.mkdir(parents=True, exist_ok=True)
    fd = os.open(cache / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return cache, fd


def _fetch_sdist(cache: Path, filename: str) -> Path:
    """The sdist in the (locked) cache, downloaded by pip with the user's real pip settings
    when missing or wrong, and moved into place only once its digest is right."""
    requirement, digest = SDISTS[filename]
    target = cache / filename
    if target.exists() and _sha256(target) == digest:
        return target
    env = {k: v for k, v in os.environ.items() if k not in HOME_VARIABLES}
    env.update({k: v for k, v in real_env().items() if v is not None})
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
             ":all:", "--no-cache-dir", "--dest", tmp, requirement],
            check=True, stdout=subprocess.DEVNULL, env=env,
        )
        fetched = Path(tmp) / filename
        found = _sha256(fetched)
        if found != digest:
            raise RuntimeError(f"{requirement}: SHA-256 {found}, expected {digest}")
        fetched.replace(target)
    return target


@pytest.fixture(scope="session")
def face_images() -> dict[str, Path]:
    """Paths of real face photos: obama, obama2, obama3, biden (one face each), group (six)."""
    return fetch_face_images(_cache_dir())


def fetch_face_images(cache: Path) -> dict[str, Path]:
    """The photos of :func:`face_images`, fetched into (and then read from) ``cache``."""
    cache, lock = _locked_cache(cache)
    try:
        out_dir = cache / "images"
        out_dir.mkdir(exist_ok=True)
        paths: dict[str, Path] = {}
        for name, (sdist, member) in IMAGES.items():
            target = out_dir / f"{name}{Path(member).suffix}"
            if not target.exists():
                with tarfile.open(_fetch_sdist(cache, sdist)) as tar:
                    extracted = tar.extractfile(member)
                    assert extracted is not None, member
                    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
                    tmp.write_bytes(extracted.read())
                    tmp.replace(target)
            paths[name] = target
    finally:
        os.close(lock)
    return paths


@pytest.fixture(scope="session")
def astronaut_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-image's astronaut photo (Eileen Collins), written as a JPEG."""
    from skimage import data

    path = tmp_path_factory.mktemp("skimage") / "astronaut.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="session")
def no_face_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real photo with no face in it: scikit-image's coffee cup."""
    from skimage import data

    path = tmp_path_factory.mktemp("skimage") / "coffee.png"
    cv2.imwrite(str(path), cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture()
def truncated_path(face_images: dict[str, Path], tmp_path: Path) -> Path:
    data = face_images["obama"].read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 3])
    return path


def tight_crop(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    x, y, w, h = (int(v) for v in box)
    return image[max(y, 0): y + h, max(x, 0): x + w].copy()


from tests import videoclips  # noqa: E402

# The governance fixtures (`gov`: SQLite and PostgreSQL; `sqlite_gov`; `install`: one per
# module) live in tests/govfix.py.
from tests.govfix import Gov, gov, install, sqlite_gov  # noqa: E402, F401

# A real nats-server for the tests of sites and nodes (tests/natsfix.py).
from tests.natsfix import nats_server, nats_tls_server  # noqa: E402, F401

if TYPE_CHECKING:
    from tests.test_web_public import Demo


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory, face_images: dict[str, Path],
          no_face_path: Path) -> videoclips.ClipSet:
    """The test clips of tests/videoclips.py (a person walking in, a stranger, an empty scene,
    their watchlist), built once per session on first use and only read by the tests."""
    return videoclips.clip_set(tmp_path_factory, face_images, no_face_path)


@pytest.fixture(scope="module")
def people_dir(tmp_path_factory: pytest.TempPathFactory, face_images: dict[str, Path],
               no_face_path: Path) -> Path:
    """An evaluation data set in folders (tests/test_eval_identify.py's build_people): obama/
    (3 images), biden/ (1), p0..p5/ (one crop each from the group photo), coffee/ (no face)."""
    from tests.test_eval_identify import build_people

    return build_people(tmp_path_factory.mktemp("people"), face_images, no_face_path)


@pytest.fixture()
def groups_csv(tmp_path: Path) -> Path:
    """The groups (gender, skin tone) of :func:`people_dir`'s identities, as a CSV file."""
    path = tmp_path / "groups.csv"
    path.write_text("identity,gender,tone\n"
                    "obama,M,dark\nbiden,M,light\np0,M,light\np1,M,dark\n"
                    "p2,F,light\np3,F,dark\np4,F,light\np5,F,light\ncoffee,,\n")
    return path


@pytest.fixture()
def demo(gov: Gov) -> Demo:  # noqa: F811 (the parameter is the gov fixture imported above)
    """The public pages' data (tests/test_web_public.py's populate): deployments planned,
    running, ended, urgent and a draft, with their alerts and figures."""
    from tests.test_web_public import populate

    return populate(gov.db)


@pytest.fixture()
def app(gov: Gov) -> FastAPI:  # noqa: F811 (the parameter is the gov fixture imported above)
    """The web app over the test's installation (``gov``: SQLite and PostgreSQL)."""
    from openlfr.web.app import create_app

    return create_app(gov.system)


@pytest.fixture()
def client(app: FastAPI) -> Iterator[TestClient]:
    """A client of :func:`app`, started (lifespan run) and closed around the test."""
    with TestClient(app, base_url="http://testserver") as c:
        yield c

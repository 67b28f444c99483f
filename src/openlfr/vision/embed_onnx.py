"""A recogniser a user brings: an ONNX graph that maps one aligned face crop to a vector.

:class:`OnnxRecogniser` says how to run the file: the crop size, the per-channel mean and
standard deviation (``x = (pixel - mean) / std``, pixels 0-255), the colour order the network
expects, the tensor layout, and the input and output tensors. It is frozen and hashable: it is
the embedder factory of the model's :class:`~openlfr.vision.registry.BackendSpec`.

Faces are aligned with the same 5-point similarity transform as SFace (the ArcFace template,
scaled to the crop). The file is read once, its SHA-256 compared with the one recorded when it
was added (a changed file is refused:
:class:`~openlfr.vision.registry.ModelIntegrityError`), and the bytes that were hashed are
the bytes given to ONNX Runtime. The graph goes through the repairs of
:mod:`openlfr.vision.sface_ort` (each a no-op on a graph that does not need it).

:func:`inspect_model` checks a file before it is added: an ONNX graph, one image input of the
stated size, one output that is a flat vector per face; it finds the tensors' names, the
layout and the vector's length by running the graph once on a blank crop.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from openlfr.vision.align import TEMPLATE_112, align
from openlfr.vision.embed_sface import l2_normalise
from openlfr.vision.imageio import ImageArray, as_image
from openlfr.vision.registry import (
    DETECTORS,
    FILES,
    BackendSpec,
    ModelError,
    ModelFile,
    ModelIntegrityError,
)
from openlfr.vision.types import Face, FloatArray, Template

#: Accepted colour orders.
COLOURS = ("rgb", "bgr")
#: A face template is a vector of this many numbers, at least and at most.
MIN_DIM, MAX_DIM = 32, 4096
#: Largest crop side accepted.
MAX_SIDE = 1024
DETECTORS_LABEL = {"yunet": "YuNet detector"}


@dataclass(frozen=True)
class OnnxRecogniser:
    """How to run one ONNX recogniser; calling it loads the embedder."""

    path: str
    sha256: str
    model_id: str
    width: int
    height: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    colour: str = "rgb"
    layout: str = "nchw"
    input_name: str = ""
    output_name: str = ""
    dim: int = 0

    @property
    def file(self) -> ModelFile:
        return ModelFile(name=self.model_id, filename=Path(self.path).name, sha256=self.sha256,
                         package="", package_path="", url="", licence="the user's",
                         role=f"recogniser ({self.dim}-d, added by a user)", path=self.path)

    def __call__(self) -> OnnxEmbedder:
        return OnnxEmbedder(self)


def _session(data: bytes, what: str) -> Any:
    """An ORT CPU session for the graph in ``data``, repaired in memory."""
    try:
        import onnx
        import onnxruntime as ort

        from openlfr.vision.sface_ort import QUIET_LOG_SEVERITY, repair_graph
    except ImportError as exc:
        raise ModelError(f"{what}: running a model you add needs onnx and onnxruntime "
                         f"({exc})") from exc
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelError(f"{what}: not an ONNX model ({_first_line(exc)})") from None
    if not model.graph.node:
        raise ModelError(f"{what}: not an ONNX model (no graph)")
    try:
        repair_graph(model)
    except ValueError as exc:
        raise ModelError(f"{what}: not a face recogniser with one image input "
                         f"({_first_line(exc)})") from None
    options = ort.SessionOptions()
    options.log_severity_level = QUIET_LOG_SEVERITY
    try:
        return ort.InferenceSession(model.SerializeToString(), options,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT's own exception types
        raise ModelError(f"{what}: ONNX Runtime cannot load it ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def read_verified(path: Path, sha256: str, what: str) -> bytes:
    """The file's bytes, if their SHA-256 is ``sha256``; else a ModelError (integrity)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{what}: model file {path} is missing; it was recorded with "
                         f"SHA-256 {sha256}") from None
    except OSError as exc:
        raise ModelError(f"{what}: cannot read {path} ({exc.strerror or exc})") from None
    found = hashlib.sha256(data).hexdigest()
    if found != sha256:
        raise ModelIntegrityError(f"{what}: {path} has SHA-256 {found}, not the "
                         f"{sha256} recorded when it was added; refusing to load it")
    return data


def align_crop(image: ImageArray, landmarks: np.ndarray, width: int,
               height: int) -> ImageArray:
    """The face aligned to ``width`` x ``height``: the 112x112 template scaled to the height
    and centred across (a square crop is exactly SFace's)."""
    if width == height:
        return align(image, landmarks, width)
    dst = TEMPLATE_112 * (height / 112.0) + np.array([(width - height) / 2.0, 0.0],
                                                     dtype=np.float32)
    matrix, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, dtype=np.float32), dst,
                                            method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("landmarks are degenerate; cannot align this face")
    return as_image(cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR))


class OnnxEmbedder:
    """Embeds aligned crops with a user's ONNX recogniser into unit vectors."""

    def __init__(self, config: OnnxRecogniser) -> None:
        self.config = config
        what = f"model {config.model_id}"
        self._session = _session(read_verified(Path(config.path), config.sha256, what), what)
        shape = self._session.get_inputs()[0].shape
        #: A graph declared for one image at a time gets one image per run.
        self._per_image = not shape or shape[0] == 1
        self._mean = np.asarray(config.mean, dtype=np.float32)
        self._std = np.asarray(config.std, dtype=np.float32)
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self.config.model_id

    @property
    def dim(self) -> int:
        return self.config.dim

    def crops(self, image: ImageArray, faces: Sequence[Face]) -> list[ImageArray]:
        c = self.config
        return [align_crop(image, f.landmarks, c.width, c.height) for f in faces]

    def blob(self, crops: Sequence[ImageArray]) -> np.ndarray:
        """The network's input for BGR crops: colour order, ``(x - mean) / std``, layout."""
        x = np.stack([np.asarray(c, dtype=np.float32) for c in crops])
        if self.config.colour == "rgb":
            x = x[..., ::-1]
        x = (x - self._mean) / self._std
        if self.config.layout == "nchw":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)

    def _run(self, blob: np.ndarray) -> np.ndarray:
        c = self.config
        out = self._session.run([c.output_name], {c.input_name: blob})[0]
        return np.asarray(out, dtype=np.float32).reshape(len(blob), -1)

    def embed_crops(self, crops: Sequence[ImageArray]) -> FloatArray:
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        blob = self.blob(crops)
        if self._per_image:
            out = np.concatenate([self._run(blob[i:i + 1]) for i in range(len(blob))])
        else:
            out = self._run(blob)
        return l2_normalise(out)

    def embed(self, image: ImageArray, faces: Sequence[Face]) -> list[Template]:
        vectors = self.embed_crops(self.crops(image, faces))
        return [Template(v, self.model_id) for v in vectors]


def read_model_file(path: str | Path) -> bytes:
    """The bytes of a model file a user gives, or a one-line :class:`ModelError` saying why
    not (no such file, a directory, unreadable)."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelError(f"{path}: a directory, not a model file") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def inspect_model(config: OnnxRecogniser) -> OnnxRecogniser:
    """Check that ``config.path`` is a face recogniser taking ``width`` x ``height`` crops and
    return ``config`` with the layout, tensor names and vector length found in the graph.

    One-line :class:`ModelError` for: not ONNX, not one image input, an input size other than
    the one stated, an output that is not one vector per face. The file is not hashed here."""
    what = Path(config.path).name
    c = config
    if c.colour not in COLOURS:
        raise ModelError(f"colour order {c.colour!r}: one of {', '.join(COLOURS)}")
    if not (16 <= c.width <= MAX_SIDE and 16 <= c.height <= MAX_SIDE):
        raise ModelError(f"input size {c.width}x{c.height}: each side between 16 and "
                         f"{MAX_SIDE} pixels")
    if any(s <= 0 for s in c.std):
        raise ModelError(f"std {list(c.std)}: every value must be positive")
    data = read_model_file(c.path)
    session = _session(data, what)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise ModelError(f"{what}: expects {len(inputs)} inputs; a face recogniser takes one "
                         "image")
    shape = list(inputs[0].shape)
    if len(shape) != 4 or 3 not in (shape[1], shape[3]):
        raise ModelError(f"{what}: input {inputs[0].name} has shape {shape}; a face recogniser "
                         "takes a batch of colour images (N, 3, H, W) or (N, H, W, 3)")
    layout = "nchw" if shape[1] == 3 else "nhwc"
    h, w = (shape[2], shape[3]) if layout == "nchw" else (shape[1], shape[2])
    for found, stated, side in ((w, c.width, "width"), (h, c.height, "height")):
        if isinstance(found, int) and found > 0 and found != stated:
            raise ModelError(f"{what}: the graph takes {side} {found}, not the {stated} given "
                             f"(input size {shape[3] if layout == 'nchw' else shape[2]}x"
                             f"{shape[2] if layout == 'nchw' else shape[1]})")
    c = replace(c, layout=layout, input_name=inputs[0].name)
    blank = np.zeros((1, c.height, c.width, 3), dtype=np.float32)
    blob = blank.transpose(0, 3, 1, 2) if layout == "nchw" else blank
    names = [o.name for o in outputs]
    try:
        results = session.run(names, {c.input_name: np.ascontiguousarray(blob)})
    except Exception as exc:  # ORT's own exception types
        raise ModelError(f"{what}: does not run on a {c.width}x{c.height} crop "
                         f"({_first_line(exc)})") from None
    problems = []
    for name, value in zip(names, results, strict=True):
        arr = np.asarray(value)
        flat = [d for d in arr.shape[1:] if d != 1]
        if (arr.ndim >= 2 and arr.shape[0] == 1 and len(flat) == 1
                and MIN_DIM <= flat[0] <= MAX_DIM and np.issubdtype(arr.dtype, np.floating)):
            if not np.all(np.isfinite(arr)):
                problems.append(f"{name} gives non-finite numbers")
                continue
            return replace(c, output_name=name, dim=int(flat[0]))
        problems.append(f"{name} has shape {list(arr.shape)}")
    raise ModelError(f"{what}: no output is one face template (a vector of {MIN_DIM} to "
                     f"{MAX_DIM} numbers per image): {'; '.join(problems)}")


def user_spec(name: str, config: OnnxRecogniser, detector: str = "yunet",
              floor: float | None = None) -> BackendSpec:
    """The spec of a user's recogniser. ``floor``: its calibrated floor, which is also its
    default threshold; ``None`` (not calibrated): no default threshold and no floor, so no
    deployment can use it."""
    if detector not in DETECTORS:
        raise ModelError(f"detector {detector!r}: one of {', '.join(DETECTORS)}")
    return BackendSpec(
        name=name, model_id=config.model_id, files=(FILES["yunet"], config.file),
        detector=DETECTORS[detector], embedder=config, default_threshold=floor,
        description=f"{DETECTORS_LABEL.get(detector, detector)} + {name} "
                    f"({config.dim}-d, added by a user)",
        origin="user")

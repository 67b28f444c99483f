"""1:1 verification on a pairs file: embed each image once, score each pair, compute metrics."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from openlfr.errors import InvalidInput
from openlfr.evaluation import metrics as m
from openlfr.evaluation.pairs import Pair, read_pairs
from openlfr.vision import FaceEngine, ImageError, get_engine, load_image
from openlfr.vision.types import Face, Template

#: FAR targets reported by default (keys of ``tar_at_far`` are these, formatted with ``g``).
FAR_TARGETS: tuple[float, ...] = (0.01, 0.001)
#: Padding for the second detection attempt on images where nothing was found.
RETRY_PAD = 0.3


@dataclass(frozen=True)
class FailedImage:
    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class PairScore:
    """One pair and its cosine similarity (``None`` when an image of the pair failed)."""

    left: str
    right: str
    same: bool
    fold: int
    score: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"left": self.left, "right": self.right, "same": self.same, "fold": self.fold,
                "score": self.score}


@dataclass
class VerifyReport:
    backend: str
    model_id: str
    dataset: str
    pairs_file: str
    pairs: int
    matched: int
    mismatched: int
    images: int
    failed_images: list[FailedImage]
    failed_pairs: int
    #: Mean and population std of the fold accuracies (threshold chosen on the other folds).
    accuracy: float
    accuracy_std: float
    #: Mean of the thresholds chosen for the folds.
    threshold: float
    auc: float
    eer: float
    eer_threshold: float
    #: TAR at FAR ≤ target on all scored pairs, keyed "0.01", "0.001".
    tar_at_far: dict[str, float]
    #: The threshold of that operating point on all scored pairs.
    threshold_at_far: dict[str, float]
    #: Per FAR target: mean/std over folds of each fold's own threshold and TAR at that FAR.
    fold_far: dict[str, dict[str, float | None]]
    folds: int
    per_fold: list[dict[str, Any]]
    default_threshold: float
    #: FAR, TAR and accuracy (all pairs, failed wrong) at the engine's default threshold.
    at_default_threshold: dict[str, float]
    seconds: float
    #: Settings of the embedder that produced the scores (runtime, flip, jitter, weight...).
    embedder: dict[str, Any] = field(default_factory=dict)
    scores: list[PairScore] = field(default_factory=list, repr=False)

    def score_arrays(self) -> tuple[m.FloatArray, m.BoolArray]:
        """Scores (NaN for failed pairs) and labels, in pairs-file order."""
        s = np.array([np.nan if p.score is None else p.score for p in self.scores],
                     dtype=np.float64)
        y = np.array([p.same for p in self.scores], dtype=bool)
        return s, y

    def to_dict(self, include_scores: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "backend": self.backend,
            "model_id": self.model_id,
            "dataset": self.dataset,
            "pairs_file": self.pairs_file,
            "pairs": self.pairs,
            "matched": self.matched,
            "mismatched": self.mismatched,
            "images": self.images,
            "failed_images": [f.to_dict() for f in self.failed_images],
            "failed_pairs": self.failed_pairs,
            "accuracy": self.accuracy,
            "accuracy_std": self.accuracy_std,
            "threshold": self.threshold,
            "auc": self.auc,
            "eer": self.eer,
            "eer_threshold": self.eer_threshold,
            "tar_at_far": dict(self.tar_at_far),
            "threshold_at_far": dict(self.threshold_at_far),
            "fold_far": {k: dict(v) for k, v in self.fold_far.items()},
            "folds": self.folds,
            "per_fold": [dict(f) for f in self.per_fold],
            "default_threshold": self.default_threshold,
            "at_default_threshold": dict(self.at_default_threshold),
            "seconds": self.seconds,
            "embedder": dict(self.embedder),
        }
        if include_scores:
            out["scores"] = [p.to_dict() for p in self.scores]
        return out


def far_key(target: float) -> str:
    return f"{target:g}"


def pick_face(faces: Sequence[Face], shape: tuple[int, ...]) -> Face | None:
    """The face nearest the image centre, distance measured in face sizes.

    ``cost = |face centre - image centre| / sqrt(w*h)``: a large face slightly off-centre beats
    a small face of a bystander that happens to be nearer the centre.
    """
    if not faces:
        return None
    h, w = shape[:2]
    cx, cy = w / 2.0, h / 2.0

    def cost(face: Face) -> float:
        fx, fy = face.center
        size = math.sqrt(max(face.box[2], 1.0) * max(face.box[3], 1.0))
        return math.hypot(fx - cx, fy - cy) / size

    return min(faces, key=cost)


def embed_image(engine: FaceEngine, path: Path) -> Template | str:
    """The template of the central face of ``path``, or the reason there is none."""
    try:
        image = load_image(path)
    except ImageError as exc:
        message = str(exc)
        prefix = f"{path}: "
        return "unreadable: " + (message[len(prefix):] if message.startswith(prefix) else message)
    try:
        faces = engine.detect(image)
        if not faces:
            faces = engine.detect(image, pad=RETRY_PAD)
        face = pick_face(faces, image.shape)
        if face is None:
            return "no face detected"
        templates = engine.embed(image, [face])
    except cv2.error as exc:
        return f"processing failed: {str(exc).strip().splitlines()[-1]}"
    if not templates:
        return "no template produced"
    return templates[0]


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


#: Embedder attributes worth recording with a result: they change the scores.
_EMBEDDER_SETTINGS = ("runtime", "flip", "jitter", "weight")


def describe_embedder(embedder: object) -> dict[str, Any]:
    """The class and scalar settings of an embedder (and of its parts, for fusion)."""
    out: dict[str, Any] = {"class": type(embedder).__name__}
    for name in _EMBEDDER_SETTINGS:
        value = getattr(embedder, name, None)
        if isinstance(value, str | int | float | bool):
            out[name] = value
    for part in ("sface", "dlib"):
        sub = getattr(embedder, part, None)
        if sub is not None and not isinstance(sub, str | int | float | bool):
            out[part] = describe_embedder(sub)
    return out


def _field(point: m.OperatingPoint | None, name: str) -> float | None:
    return None if point is None else float(getattr(point, name))


def run_verify(
    dataset: Path,
    pairs_file: Path,
    backend: str,
    progress: bool = True,
    engine: FaceEngine | None = None,
    far_targets: Sequence[float] = FAR_TARGETS,
) -> VerifyReport:
    """Evaluate ``backend`` on the pairs of ``pairs_file`` with images under ``dataset``.

    Raises ``FileNotFoundError`` (missing dataset or pairs file), ``ValueError`` (malformed
    pairs file, or nothing could be scored) and ``ModelError`` (unknown backend, missing model
    or dlib). Unreadable images and images without a face are reported, not raised.
    """
    start = time.perf_counter()
    dataset = Path(dataset)
    pairs_file = Path(pairs_file)
    if not dataset.exists():
        raise FileNotFoundError(f"dataset directory {dataset}: no such directory")
    if not dataset.is_dir():
        raise FileNotFoundError(f"dataset {dataset}: not a directory")
    pairs: list[Pair] = read_pairs(pairs_file)
    n_same = sum(p.same for p in pairs)
    if n_same == 0 or n_same == len(pairs):
        raise InvalidInput(
            f"pairs file {pairs_file}: needs both matched and mismatched pairs "
            f"(has {n_same} matched, {len(pairs) - n_same} mismatched)"
        )
    engine = engine or get_engine(backend)

    images = sorted({p.left for p in pairs} | {p.right for p in pairs})
    templates: dict[str, Template] = {}
    failed: list[FailedImage] = []
    with _progress(progress) as bar:
        task = bar.add_task(f"embedding ({engine.backend})", total=len(images))
        for rel in images:
            result = embed_image(engine, dataset / rel)
            if isinstance(result, Template):
                templates[rel] = result
            else:
                failed.append(FailedImage(rel, result))
            bar.advance(task)

    scores: list[PairScore] = []
    for p in pairs:
        a, b = templates.get(p.left), templates.get(p.right)
        score = None
        if a is not None and b is not None:
            score = float(np.dot(a.vector.astype(np.float64), b.vector.astype(np.float64)))
        scores.append(PairScore(p.left, p.right, p.same, p.fold, score))

    s = np.array([np.nan if p.score is None else p.score for p in scores], dtype=np.float64)
    y = np.array([p.same for p in scores], dtype=bool)
    f = np.array([p.fold for p in scores], dtype=np.int64)
    n_failed = int(np.isnan(s).sum())
    if n_failed == len(pairs):
        first = f"; first failure: {failed[0].path}: {failed[0].reason}" if failed else ""
        raise InvalidInput(
            f"no pair could be scored: every pair has an image that failed ({len(failed)} of "
            f"{len(images)} images failed{first}). Is --dataset the right directory?"
        )

    roc = m.roc_curve(s, y)
    eer = m.eer(s, y)
    kfold = m.kfold_accuracy(s, y, f)
    points = {far_key(t): m.tar_at_far(s, y, t) for t in far_targets}
    fold_points = {far_key(t): m.fold_tar_at_far(s, y, f, t) for t in far_targets}

    per_fold: list[dict[str, Any]] = []
    for i, fold in enumerate(kfold.folds):
        sel = f == fold
        per_fold.append({
            "fold": fold,
            "pairs": int(sel.sum()),
            "failed_pairs": int(np.isnan(s[sel]).sum()),
            "accuracy": kfold.accuracies[i],
            "threshold": kfold.thresholds[i],
            "threshold_at_far": {k: _field(pts[i], "threshold") for k, pts in fold_points.items()},
            "tar_at_far": {k: _field(pts[i], "tar") for k, pts in fold_points.items()},
        })

    default = engine.default_threshold
    at_default = m.rates_at(s, y, default)

    return VerifyReport(
        backend=engine.backend,
        model_id=engine.model_id,
        dataset=str(dataset),
        pairs_file=str(pairs_file),
        pairs=len(pairs),
        matched=int(y.sum()),
        mismatched=int((~y).sum()),
        images=len(images),
        failed_images=failed,
        failed_pairs=n_failed,
        accuracy=kfold.accuracy,
        accuracy_std=kfold.accuracy_std,
        threshold=kfold.threshold,
        auc=m.auc(roc.far, roc.tar),
        eer=eer.far,
        eer_threshold=eer.threshold,
        tar_at_far={k: p.tar for k, p in points.items()},
        threshold_at_far={k: p.threshold for k, p in points.items()},
        fold_far={k: m.summarise_points(pts) for k, pts in fold_points.items()},
        folds=len(kfold.folds),
        per_fold=per_fold,
        default_threshold=default,
        at_default_threshold={
            "far": at_default.far,
            "tar": at_default.tar,
            "accuracy": m.accuracy(s, y, default),
        },
        seconds=round(time.perf_counter() - start, 3),
        embedder=describe_embedder(engine.embedder),
        scores=scores,
    )

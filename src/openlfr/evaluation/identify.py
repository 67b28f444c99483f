"""Open-set identification (the watchlist case): FNIR at FPIR for several gallery sizes.

For each gallery size N, N identities are enrolled with one image each (identities with at
least two usable images first, so they give mated probes; the choice is a seeded shuffle);
the enrolment image of an identity is, with ``enrol_image="best"``, its best-quality usable
image (:func:`openlfr.vision.quality.template_weight` of its central face: size, sharpness,
frontality, detector confidence; ties go to name order), as an operator would pick a
watchlist photo; with ``"first"``, its first usable image in name order.
Mated searches are the other images of enrolled identities; non-mated searches are the images
of identities never enrolled. Every search returns the rank-1 candidate of the gallery.

* FPIR(t): fraction of non-mated searches whose top score is ≥ t.
* FNIR(t): fraction of mated searches whose correct identity is not at rank 1 with score ≥ t.
* FNIR at FPIR = x uses the lowest threshold whose FPIR is ≤ x. It needs at least 1/x
  non-mated searches; with fewer it is reported as ``None`` with a note, never guessed.

Images without a usable face are embedded once, counted (``no_face_images``, split into those of
enrolled and of never-enrolled identities) and listed; they are not searched, so the rates are
over the searches that could be made.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from openlfr.errors import InvalidInput
from openlfr.evaluation.groups import Dataset, scan_dataset
from openlfr.evaluation.templates import Embedded, embed_paths
from openlfr.evaluation.verify import RETRY_PAD, FailedImage, pick_face
from openlfr.vision import FaceEngine, get_engine
from openlfr.vision.imageio import ImageError, load_image
from openlfr.vision.quality import measure, template_weight
from openlfr.watchlist.gallery import Gallery

FPIR_TARGETS: tuple[float, ...] = (0.1, 0.01, 0.001)
DEFAULT_GALLERY_SIZES: tuple[int, ...] = (100, 1000)
DEFAULT_SEED = 0
#: How each enrolled identity's enrolment image is chosen (module docstring).
ENROL_IMAGE_CHOICES: tuple[str, ...] = ("best", "first")
#: "first": on LFW (gallery 1,000) the best-quality choice measured worse (README).
DEFAULT_ENROL_IMAGE = "first"
#: Below this many allowed false positives, FNIR at an FPIR is flagged as imprecise.
FEW_FALSE_POSITIVES = 10


def fpir_key(target: float) -> str:
    return f"{target:g}"


def threshold_at_fpir(nonmated_top: np.ndarray, target: float) -> float | None:
    """The lowest threshold t with ``mean(nonmated_top >= t) <= target``; ``None`` when there
    are fewer than ``1/target`` non-mated searches (the rate cannot be resolved)."""
    s = np.sort(np.asarray(nonmated_top, dtype=np.float64))[::-1]
    n = len(s)
    if n == 0 or n * target < 1.0 - 1e-9:
        return None
    allowed = int(np.floor(n * target + 1e-9))
    if allowed >= n:
        return float("-inf")
    return float(np.nextafter(s[allowed], np.inf))


def fpir_fnir_at(nonmated_top: np.ndarray, mated_hit_score: np.ndarray,
                 threshold: float) -> tuple[float | None, float | None]:
    """FPIR and FNIR at ``threshold``. ``mated_hit_score`` is the rank-1 score of each mated
    search when rank 1 is the right identity, else ``-inf``."""
    fpir = float(np.mean(nonmated_top >= threshold)) if len(nonmated_top) else None
    fnir = float(np.mean(~(mated_hit_score >= threshold))) if len(mated_hit_score) else None
    return fpir, fnir


def det_curve(nonmated_top: np.ndarray, mated_hit_score: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """(FPIR, FNIR) at every distinct score used as the threshold, by decreasing threshold."""
    nm = np.sort(np.asarray(nonmated_top, dtype=np.float64))
    mh = np.sort(np.asarray(mated_hit_score, dtype=np.float64))
    thr = np.unique(np.r_[nm, mh[np.isfinite(mh)]])[::-1]
    if not len(nm) or not len(mh) or not len(thr):
        return np.empty(0), np.empty(0)
    fpir = (len(nm) - np.searchsorted(nm, thr, side="left")) / len(nm)
    fnir = 1.0 - (len(mh) - np.searchsorted(mh, thr, side="left")) / len(mh)
    return fpir, fnir


@dataclass
class IdentifyResult:
    gallery_size: int
    mated_searches: int
    nonmated_searches: int
    no_face_images: int
    #: Images of enrolled / never-enrolled identities without a usable face (not searched).
    mated_failed: int
    nonmated_failed: int
    rank1: float | None
    fnir_at_fpir: dict[str, float | None]
    threshold_at_fpir: dict[str, float | None]
    fpir_at_default: float | None
    tpir_at_default: float | None
    notes: list[str] = field(default_factory=list)
    det_fpir: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    det_fnir: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gallery_size": self.gallery_size,
            "mated_searches": self.mated_searches,
            "nonmated_searches": self.nonmated_searches,
            "no_face_images": self.no_face_images,
            "mated_failed": self.mated_failed,
            "nonmated_failed": self.nonmated_failed,
            "rank1": self.rank1,
            "fnir_at_fpir": dict(self.fnir_at_fpir),
            "threshold_at_fpir": dict(self.threshold_at_fpir),
            "fpir_at_default": self.fpir_at_default,
            "tpir_at_default": self.tpir_at_default,
            "notes": list(self.notes),
        }


@dataclass
class IdentifyReport:
    backend: str
    model_id: str
    dataset: str
    identities: int
    images: int
    seed: int
    default_threshold: float
    failed_images: list[FailedImage]
    results: list[IdentifyResult]
    seconds: float
    cached_templates: int = 0
    enrol_image: str = "first"

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model_id": self.model_id,
            "dataset": self.dataset,
            "identities": self.identities,
            "images": self.images,
            "seed": self.seed,
            "enrol_image": self.enrol_image,
            "default_threshold": self.default_threshold,
            "no_face_images": len(self.failed_images),
            "failed_images": [f.to_dict() for f in self.failed_images],
            "cached_templates": self.cached_templates,
            "seconds": self.seconds,
            "results": [r.to_dict() for r in self.results],
        }


def parse_sizes(text: str) -> list[int]:
    """``"100,1000"`` → ``[100, 1000]``; each a positive integer."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip().replace("_", "")
        if not part:
            continue
        # isascii: str.isdigit() also takes "²", which int() refuses; 12 digits: int() refuses
        # thousands of them, and no gallery is that large
        if not (part.isascii() and part.isdigit()) or len(part) > 12 or int(part) < 1:
            raise InvalidInput(f"--gallery-sizes: {part!r} is not a positive integer")
        out.append(int(part))
    if not out:
        raise InvalidInput("--gallery-sizes: give at least one size, e.g. 100,1000")
    return sorted(set(out))


def choose_enrolled(usable: dict[str, list[int]], size: int, seed: int) -> list[str]:
    """``size`` identities: those with ≥ 2 usable images first (seeded shuffle), then the
    others (seeded shuffle)."""
    if size > len(usable):
        raise InvalidInput(f"gallery size {size} is larger than the {len(usable)} identities with "
                            "a usable image")
    rng = np.random.default_rng(seed)
    multi = sorted(k for k, v in usable.items() if len(v) >= 2)
    single = sorted(k for k, v in usable.items() if len(v) < 2)
    order = [multi[i] for i in rng.permutation(len(multi))]
    order += [single[i] for i in rng.permutation(len(single))]
    return order[:size]


def quality_weights(engine: FaceEngine, dataset: Dataset, images: Sequence[int]
                    ) -> dict[int, float]:
    """The quality weight of each image's central face (by image position; -1 without one)."""
    out: dict[int, float] = {}
    for i in images:
        try:
            image = load_image(Path(dataset.root) / dataset.images[i])
            faces = engine.detect(image) or engine.detect(image, pad=RETRY_PAD)
        except (ImageError, cv2.error):
            out[i] = -1.0
            continue
        face = pick_face(faces, image.shape)
        out[i] = -1.0 if face is None else template_weight(face, measure(image, face))
    return out


def enrolment_image(images: Sequence[int], weights: dict[int, float] | None) -> int:
    """The enrolment image among an identity's usable ``images`` (name order): the
    best-weighted one (ties: the first), or the first without ``weights``."""
    if not weights:
        return images[0]
    return max(images, key=lambda i: (weights.get(i, -1.0), -i))


def evaluate_size(
    dataset: Dataset, emb: Embedded, size: int, seed: int, model_id: str,
    default_threshold: float, targets: Sequence[float] = FPIR_TARGETS,
    weights: dict[int, float] | None = None,
) -> IdentifyResult:
    """One gallery size on embedded images; ``weights`` (:func:`quality_weights`) choose
    the enrolment images, else each identity's first."""
    row = emb.row_of()
    failed_paths = {f.path for f in emb.failed}
    by_id = dataset.by_identity()
    usable = {k: [i for i in v if i in row] for k, v in by_id.items()}
    usable = {k: v for k, v in usable.items() if v}
    enrolled = choose_enrolled(usable, size, seed)
    enrolled_set = set(enrolled)
    enrol_of = {k: enrolment_image(usable[k], weights) for k in enrolled}
    gallery = Gallery(model_id, emb.vectors.shape[1])
    enrol_rows = [row[enrol_of[k]] for k in enrolled]
    gallery.add_many(enrolled, [dataset.images[enrol_of[k]] for k in enrolled],
                     emb.vectors[enrol_rows])

    mated_rows: list[int] = []
    mated_truth: list[str] = []
    nonmated_rows: list[int] = []
    for ident, idx in usable.items():
        if ident in enrolled_set:
            for i in idx:
                if i == enrol_of[ident]:
                    continue
                mated_rows.append(row[i])
                mated_truth.append(ident)
        else:
            nonmated_rows.extend(row[i] for i in idx)
    mated_failed = sum(1 for k in enrolled_set for i in by_id[k]
                       if dataset.images[i] in failed_paths)
    nonmated_failed = len(failed_paths) - mated_failed

    def top1(rows: list[int]) -> tuple[list[str], np.ndarray]:
        if not rows:
            return [], np.empty(0)
        hits = gallery.search(emb.vectors[rows], k=1)
        return [h[0].subject_id for h in hits], np.array([h[0].score for h in hits])

    m_ids, m_scores = top1(mated_rows)
    _, nm_scores = top1(nonmated_rows)
    correct = np.array([a == b for a, b in zip(m_ids, mated_truth, strict=True)], dtype=bool)
    hit_score = np.where(correct, m_scores, -np.inf) if len(m_scores) else np.empty(0)

    notes: list[str] = []
    fnir: dict[str, float | None] = {}
    thr_at: dict[str, float | None] = {}
    for target in targets:
        key = fpir_key(target)
        t = threshold_at_fpir(nm_scores, target)
        thr_at[key] = t
        if t is None:
            fnir[key] = None
            notes.append(f"FPIR {key} needs at least {int(np.ceil(1 / target - 1e-9))} non-mated "
                         f"searches, have {len(nm_scores)}: not reported")
        elif not len(hit_score):
            fnir[key] = None
        else:
            fnir[key] = fpir_fnir_at(nm_scores, hit_score, t)[1]
            allowed = int(np.floor(len(nm_scores) * target + 1e-9))
            if allowed < FEW_FALSE_POSITIVES:
                notes.append(f"FPIR {key} allows only {allowed} false positive(s) among "
                             f"{len(nm_scores)} non-mated searches: its threshold rests on "
                             "a handful of scores and is imprecise")
    if not len(hit_score):
        notes.append("no mated searches: enrolled identities have no second usable image")
    fpir_d, fnir_d = fpir_fnir_at(nm_scores, hit_score, default_threshold)
    det_fpir, det_fnir = det_curve(nm_scores, hit_score)
    return IdentifyResult(
        gallery_size=size,
        mated_searches=len(mated_rows),
        nonmated_searches=len(nonmated_rows),
        no_face_images=len(emb.failed),
        mated_failed=mated_failed,
        nonmated_failed=nonmated_failed,
        rank1=float(correct.mean()) if len(correct) else None,
        fnir_at_fpir=fnir,
        threshold_at_fpir=thr_at,
        fpir_at_default=fpir_d,
        tpir_at_default=None if fnir_d is None else 1.0 - fnir_d,
        notes=notes,
        det_fpir=det_fpir,
        det_fnir=det_fnir,
    )


def run_identify(
    dataset: Path,
    gallery_sizes: Sequence[int] = DEFAULT_GALLERY_SIZES,
    backend: str = "sface",
    seed: int = DEFAULT_SEED,
    cache_dir: Path | None = None,
    progress: bool = True,
    engine: FaceEngine | None = None,
    enrol_image: str = DEFAULT_ENROL_IMAGE,
) -> IdentifyReport:
    """Open-set identification on identity folders under ``dataset``.

    Raises ``FileNotFoundError`` / ``ValueError`` for an unusable dataset or a gallery size
    larger than the identities available, ``ModelError`` for an unusable backend.
    """
    start = time.perf_counter()
    ds = scan_dataset(Path(dataset))
    if not ds.has_identities:
        raise InvalidInput(f"dataset {dataset}: identification needs one folder per identity")
    sizes = sorted(set(int(s) for s in gallery_sizes))
    n_ids = len(set(ds.identities))
    if sizes and sizes[-1] > n_ids:
        raise InvalidInput(f"gallery size {sizes[-1]} is larger than the {n_ids} identities in "
                            f"{dataset}")
    engine = engine or get_engine(backend)
    emb = embed_paths(engine, ds.root, ds.images, cache_dir=cache_dir, progress=progress)
    if not len(emb.vectors):
        raise InvalidInput(f"no usable face in any of the {len(ds.images)} images of {dataset}")
    if enrol_image not in ENROL_IMAGE_CHOICES:
        raise InvalidInput(f"enrolment image {enrol_image!r}: choose "
                           f"{' or '.join(ENROL_IMAGE_CHOICES)}", field="enrol_image")
    weights = None
    if enrol_image == "best":
        # only identities with a choice to make (two or more usable images) are measured
        row = emb.row_of()
        multi = [i for v in ds.by_identity().values() if sum(j in row for j in v) > 1
                 for i in v if i in row]
        weights = quality_weights(engine, ds, multi)
    results = [evaluate_size(ds, emb, s, seed, engine.model_id, engine.default_threshold,
                             weights=weights)
               for s in sizes]
    return IdentifyReport(
        backend=engine.backend,
        model_id=engine.model_id,
        dataset=str(dataset),
        identities=n_ids,
        images=len(ds.images),
        seed=seed,
        default_threshold=engine.default_threshold,
        failed_images=emb.failed,
        results=results,
        seconds=round(time.perf_counter() - start, 3),
        cached_templates=emb.cached,
        enrol_image=enrol_image,
    )


def plot_identify(report: IdentifyReport, path: Path) -> Path:
    """FNIR against FPIR (log-log, DET style), one curve per gallery size, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 5.0), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    floor = 1e-4
    for r in report.results:
        if not len(r.det_fpir):
            continue
        ax.step(np.maximum(r.det_fpir, floor), np.maximum(r.det_fnir, floor), where="post",
                label=f"N={r.gallery_size} ({r.mated_searches} mated, "
                      f"{r.nonmated_searches} non-mated)")
    for target in FPIR_TARGETS:
        ax.axvline(target, color="0.8", linewidth=0.8, linestyle=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(floor, 1.0)
    ax.set_xlabel("FPIR (non-mated searches with a candidate ≥ threshold)")
    ax.set_ylabel("FNIR (mated searches missed at rank 1)")
    ax.set_title(f"open-set identification: {report.model_id}")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path

"""Threshold calibration: the lowest threshold that (a) meets a target false-positive
identification rate (FPIR) at a planned watchlist size and (b) at which no demographic group's
false-match rate is significantly above the others on the given data.

Pure computation (no database): the result is a frozen :class:`Calibration` whose ``evidence``
holds only JSON strings, integers, booleans, lists and dicts — rates and thresholds as decimal
strings — so it can go into the hash-chained audit log, which refuses floats.

**FPIR at a watchlist size N** is estimated in one of two ways, and the evidence says which:

* ``searches`` (preferred, used whenever the data allow): galleries of N identities are drawn
  from the dataset (seeded; one image each, the identity's first usable image), and every usable
  image of the identities left out is searched against each gallery (a *non-mated* search).
  FPIR(t) is the fraction of these searches whose best score is ≥ t. Enough galleries are drawn
  for the target to allow :data:`WANTED_FALSE_POSITIVES` false positives (at most
  :data:`MAX_GALLERIES`); the same probe image appears in several galleries' searches, so the
  searches are not independent and the interval given is optimistic.
  Needs more than N identities and at least ``1 / target`` searches in all.
* ``impostor-pairs`` (otherwise): from every impostor pair of the dataset (all pairs of
  images of different identities, counted exhaustively), FPIR(t) = 1 - (1 - FMR(t))^N, i.e.
  the N comparisons of a search taken as independent. The pairwise false-match rate allowed is
  then 1 - (1 - target)^(1/N) (≈ target / N), which needs at least its inverse in pairs.

**No group significantly above the others**: for every attribute (race, gender, …) and every
group, the group's false matches over its within-group impostor pairs (as in ``openlfr eval
fairness``) are compared with those of all the attribute's other groups pooled, with the
homogeneity test of :mod:`openlfr.evaluation.stats` (chi-square, or Fisher's exact test for
small counts) at level ``alpha``, uncorrected for the number of groups (a stricter floor, not a
looser one). A threshold fails when some group's rate is higher than the rest's and the
difference is significant.

**The search**: candidate thresholds are the multiples of ``step`` (default 0.01) from the
lowest one that meets the FPIR target up to 1. The floor is the lowest candidate at which the
group check passes *and keeps passing at every higher candidate*, so a chance gap in the
evidence at one threshold cannot lower the floor.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from openlfr import __version__
from openlfr.errors import InvalidInput
from openlfr.evaluation import stats
from openlfr.evaluation.fairness import (
    DEFAULT_MAX_PAIRS,
    AttributeResult,
    evaluate_attribute,
    genuine_scores,
    impostor_scores,
)
from openlfr.evaluation.groups import Dataset, Groups, load_groups, scan_dataset
from openlfr.evaluation.identify import threshold_at_fpir
from openlfr.evaluation.report import GroupScores, MeasuredFpir, fpir_model
from openlfr.evaluation.templates import Embedded, embed_paths, sha256_file
from openlfr.evaluation.verify import _progress
from openlfr.vision import FaceEngine, get_engine

DEFAULT_WATCHLIST_SIZE = 1000
DEFAULT_TARGET_FPIR = 1 / 6000
DEFAULT_STEP = 0.01
DEFAULT_SEED = 0
#: False positives the pooled non-mated searches should allow at the target.
WANTED_FALSE_POSITIVES = 10
#: Most galleries drawn for the search-based FPIR estimate.
MAX_GALLERIES = 50
#: Watchlist sizes at which FPIR is measured for the report (those the data allow).
REPORT_SIZES = (10, 30, 100, 300, 1_000, 3_000, 10_000)
#: Rows of the Gram matrix computed at once.
_BLOCK = 2048
#: Two templates this close come from the same photo (a copy under another name): the later
#: image is left out, counted as a duplicate. Different photos never come this close.
DUPLICATE_COSINE = 0.999
EVIDENCE_KIND = "openlfr-threshold-calibration"


def dec(value: float, digits: int = 6) -> str:
    """A float as a plain decimal string with ``digits`` significant digits (no exponent)."""
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value}")
    text = format(Decimal(f"{value:.{digits}g}"), "f")
    return text if text != "-0" else "0"


# -- FPIR at a watchlist size ------------------------------------------------------------------


def pair_fmr_for(target_fpir: float, size: int) -> float:
    """The pairwise FMR at which ``1 - (1 - FMR)^size`` equals ``target_fpir``."""
    return float(-np.expm1(np.log1p(-target_fpir) / size))


@dataclass(frozen=True)
class AllImpostors:
    """The highest impostor scores over *all* impostor pairs of a dataset, and their number."""

    pairs: int
    top: np.ndarray  # descending

    def threshold_at(self, fmr: float) -> float | None:
        """Lowest threshold whose FMR over all pairs is ≤ ``fmr``; ``None`` when there are too
        few pairs (fewer than ``1 / fmr``) or the tail kept is too short."""
        if self.pairs == 0 or self.pairs * fmr < 1.0 - 1e-9:
            return None
        allowed = int(np.floor(self.pairs * fmr + 1e-9))
        if allowed >= len(self.top):
            return None
        return float(np.nextafter(self.top[allowed], np.inf))

    def false_matches(self, threshold: float) -> int | None:
        """Impostor pairs ≥ ``threshold``; ``None`` when the kept tail cannot tell."""
        k = int(np.sum(self.top >= threshold))
        if k == len(self.top) and self.pairs > len(self.top):
            return None
        return k


def top_impostor_scores(x: np.ndarray, ident: np.ndarray, keep: int) -> AllImpostors:
    """The ``keep`` highest scores among all pairs ``i < j`` with different ``ident``,
    computed block by block over the Gram matrix."""
    n = len(x)
    best = np.empty(0, dtype=np.float32)
    pairs = 0
    for a in range(0, n, _BLOCK):
        block = x[a:a + _BLOCK] @ x.T
        rows = np.arange(a, min(a + _BLOCK, n))
        mask = (np.arange(n)[None, :] > rows[:, None]) & (ident[a:a + _BLOCK, None]
                                                           != ident[None, :])
        vals = block[mask]
        pairs += len(vals)
        if len(vals) > keep:
            vals = np.partition(vals, len(vals) - keep)[-keep:]
        best = np.r_[best, vals.astype(np.float32)]
        if len(best) > keep:
            best = np.partition(best, len(best) - keep)[-keep:]
    return AllImpostors(pairs, np.sort(best)[::-1])


def nonmated_top_scores(x: np.ndarray, ident: np.ndarray, size: int, galleries: int,
                        seed: int) -> np.ndarray:
    """Best score of every non-mated search against ``galleries`` random galleries of ``size``
    identities (first image of each); pooled over the galleries."""
    ids = np.unique(ident)
    first = {v: int(np.flatnonzero(ident == v)[0]) for v in ids.tolist()}
    out: list[np.ndarray] = []
    for r in range(galleries):
        rng = np.random.default_rng([seed, r, size])
        enrolled = rng.choice(len(ids), size=size, replace=False)
        enrolled_ids = ids[enrolled]
        gal = x[[first[v] for v in enrolled_ids.tolist()]]
        probes = x[~np.isin(ident, enrolled_ids)]
        for a in range(0, len(probes), _BLOCK):
            out.append((probes[a:a + _BLOCK] @ gal.T).max(axis=1))
    return np.concatenate(out) if out else np.empty(0, dtype=np.float32)


def galleries_needed(target: float, probes: int) -> int:
    """Galleries so that the pooled searches allow :data:`WANTED_FALSE_POSITIVES` false
    positives at ``target`` (at most :data:`MAX_GALLERIES`, at least 1)."""
    if probes <= 0:
        return 0
    want = math.ceil(WANTED_FALSE_POSITIVES / target / probes)
    return max(1, min(MAX_GALLERIES, want))


@dataclass(frozen=True)
class FpirEstimate:
    """How FPIR at the planned watchlist size is estimated, and the threshold meeting it."""

    method: str  # "searches" | "impostor-pairs"
    threshold: float
    #: Non-mated searches pooled over ``galleries`` (searches), or impostor pairs counted.
    n: int
    galleries: int
    #: False positives the target allows among the ``n`` searches or pairs.
    allowed: int
    description: str
    notes: tuple[str, ...] = ()


def estimate_fpir_threshold(size: int, target: float, nonmated_top: np.ndarray | None,
                            galleries: int, all_impostors: AllImpostors) -> FpirEstimate:
    """The lowest threshold meeting ``target`` at ``size``: from the non-mated searches when
    they can resolve the target, else from all impostor pairs as ``1 - (1 - FMR)^size``.
    Raises ``ValueError`` when neither can."""
    notes: list[str] = []
    if nonmated_top is not None and len(nonmated_top):
        t = threshold_at_fpir(nonmated_top, target)
        if t is not None:
            allowed = int(np.floor(len(nonmated_top) * target + 1e-9))
            if allowed < WANTED_FALSE_POSITIVES:
                notes.append(f"the target allows only {allowed} false positive(s) among "
                             f"{len(nonmated_top):,} searches: the FPIR threshold is imprecise")
            return FpirEstimate(
                "searches", t, len(nonmated_top), galleries, allowed,
                f"measured: {len(nonmated_top):,} non-mated searches against {galleries} "
                f"random galleries of {size:,} identities (one image each)", tuple(notes))
        notes.append(f"{len(nonmated_top):,} non-mated searches against galleries of {size:,} "
                     f"cannot resolve FPIR {target:.3g} (need {math.ceil(1 / target):,}): "
                     "estimated from impostor pairs instead")
    elif nonmated_top is not None:
        notes.append(f"the dataset has no more than {size:,} identities with a usable image: "
                     "no non-mated searches against galleries of that size are possible, so "
                     "FPIR is estimated from impostor pairs")
    fmr = pair_fmr_for(target, size)
    t = all_impostors.threshold_at(fmr)
    if t is None:
        raise InvalidInput(
            f"the data cannot resolve FPIR {target:.3g} at watchlist size {size:,}: that needs "
            f"at least {math.ceil(1 / target):,} non-mated searches against galleries of "
            f"{size:,} identities (more than {size:,} identities), or at least "
            f"{math.ceil(1 / fmr):,} impostor pairs (have {all_impostors.pairs:,}); use more "
            "data, a smaller --watchlist-size or a larger --target-fpir")
    allowed = int(np.floor(all_impostors.pairs * fmr + 1e-9))
    if allowed < WANTED_FALSE_POSITIVES:
        notes.append(f"the pairwise rate allows only {allowed} false match(es) among "
                     f"{all_impostors.pairs:,} impostor pairs: the threshold is imprecise")
    return FpirEstimate(
        "impostor-pairs", t, all_impostors.pairs, 0, allowed,
        f"modelled: 1 - (1 - FMR)^{size} from all {all_impostors.pairs:,} impostor pairs, "
        f"pairwise FMR allowed {fmr:.3g} (each comparison of a search taken as independent)",
        tuple(notes))


# -- the group check ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupCheck:
    attribute: str
    group: str
    false_matches: int
    pairs: int
    #: The group's rate is above the pooled rate of the attribute's other groups, significantly.
    above_rest: bool
    p_value: float | None
    #: At the attribute's pooled rate fewer than 5 false matches are expected in this group:
    #: the data cannot show a difference for it.
    too_small: bool


def _counts_at(sorted_scores: np.ndarray, t: float) -> int:
    return int(len(sorted_scores) - np.searchsorted(sorted_scores, t, side="left"))


def check_groups(groups: dict[str, dict[str, np.ndarray]], threshold: float,
                 alpha: float = stats.ALPHA) -> list[GroupCheck]:
    """Each group against the rest of its attribute at ``threshold``. ``groups`` maps an
    attribute to ``{group: sorted impostor scores}``."""
    out: list[GroupCheck] = []
    for attr, by_group in groups.items():
        counts = {g: (_counts_at(s, threshold), len(s)) for g, s in by_group.items() if len(s)}
        total_k = sum(k for k, _ in counts.values())
        total_n = sum(n for _, n in counts.values())
        pooled = total_k / total_n if total_n else 0.0
        for g, (k, n) in counts.items():
            rest_k, rest_n = total_k - k, total_n - n
            if rest_n == 0:
                out.append(GroupCheck(attr, g, k, n, False, None, True))
                continue
            test = stats.homogeneity_test([(k, n), (rest_k, rest_n)], alpha)
            above = bool(test.significant) and k / n > rest_k / rest_n
            out.append(GroupCheck(attr, g, k, n, above, test.p_value,
                                  n * pooled < stats.MIN_EXPECTED))
    return out


def candidate_thresholds(start: float, step: float) -> list[float]:
    """Multiples of ``step`` from the first one ≥ ``start`` up to 1."""
    first = math.ceil(round(start / step, 9))
    last = math.floor(round(1.0 / step, 9))
    return [round(k * step, 10) for k in range(first, last + 1)]


@dataclass(frozen=True)
class SearchResult:
    threshold: float
    #: Candidates at which some group was significantly above the rest: (threshold, checks).
    failures: tuple[tuple[float, tuple[GroupCheck, ...]], ...]
    checks: tuple[GroupCheck, ...]


def search_threshold(groups: dict[str, dict[str, np.ndarray]], fpir_threshold: float,
                     step: float = DEFAULT_STEP, alpha: float = stats.ALPHA) -> SearchResult:
    """The lowest candidate ≥ ``fpir_threshold`` from which on every candidate passes the
    group check. ``groups``: attribute → group → impostor scores (any order)."""
    sorted_groups = {a: {g: np.sort(np.asarray(s, dtype=np.float64)) for g, s in gs.items()}
                     for a, gs in groups.items()}
    cands = candidate_thresholds(fpir_threshold, step)
    if not cands:
        raise InvalidInput(f"the FPIR target needs a threshold above 1 ({fpir_threshold:.4f}): "
                            "no cosine threshold meets it")
    failures: list[tuple[float, tuple[GroupCheck, ...]]] = []
    chosen_index = 0
    for i, t in enumerate(cands):
        bad = tuple(c for c in check_groups(sorted_groups, t, alpha) if c.above_rest)
        if bad:
            failures.append((t, bad))
            chosen_index = i + 1
    if chosen_index >= len(cands):
        raise InvalidInput("some group's false-match rate is significantly above the others at "
                            "every threshold up to 1: no floor can be set on this data")
    chosen = cands[chosen_index]
    return SearchResult(chosen, tuple(failures), tuple(check_groups(sorted_groups, chosen,
                                                                     alpha)))


# -- the result ---------------------------------------------------------------------------------


@dataclass
class CalibrationData:
    """What the report draws (arrays; never in the evidence)."""

    overall: GroupScores
    panels: list[tuple[str, list[GroupScores]]]
    fpir_threshold: float
    measured: list[MeasuredFpir]
    attributes: list[AttributeResult]
    summary: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Calibration:
    """The floor found for a model, and the evidence behind it (JSON without floats)."""

    model_id: str
    backend: str
    threshold: float
    watchlist_size: int
    target_fpir: float
    method: str
    evidence: dict[str, Any]
    data: CalibrationData | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "backend": self.backend,
                "threshold": self.threshold, "watchlist_size": self.watchlist_size,
                "target_fpir": self.target_fpir, "method": self.method,
                "evidence": self.evidence}

    def with_evidence(self, **extra: Any) -> Calibration:
        """A copy with more evidence (e.g. who ran it)."""
        return replace(self, evidence={**self.evidence, **extra})


def dataset_digest(ds: Dataset) -> str:
    """SHA-256 over the sorted relative paths and each file's SHA-256."""
    h = hashlib.sha256()
    for rel in sorted(ds.images):
        h.update(f"{rel}\0{sha256_file(ds.root / rel)}\n".encode())
    return h.hexdigest()


def _ci(k: int, n: int) -> list[str] | None:
    ci = stats.clopper_pearson(k, n)
    return None if ci is None else [dec(ci[0]), dec(ci[1])]


def _rate(k: int, n: int) -> str | None:
    r = stats.rate(k, n)
    return None if r is None else dec(r)


def _group_evidence(attr: AttributeResult, checks: Sequence[GroupCheck]) -> dict[str, Any]:
    by_name = {c.group: c for c in checks if c.attribute == attr.attribute}
    groups: dict[str, Any] = {}
    for g in attr.groups:
        c = by_name.get(g.group)
        k = c.false_matches if c else 0
        n = g.impostor.pairs
        groups[g.group] = {
            "images": g.images,
            "impostor_pairs": n,
            "impostor_available": g.impostor.available,
            "false_matches": k,
            "fmr": _rate(k, n),
            "fmr_ci": _ci(k, n),
            "above_rest": bool(c.above_rest) if c else False,
            "p_value_vs_rest": None if c is None or c.p_value is None else dec(c.p_value, 3),
            "too_small": True if c is None else c.too_small,
        }
    counts = [(by_name[g.group].false_matches, g.impostor.pairs) for g in attr.groups
              if g.group in by_name]
    test = stats.homogeneity_test(counts)
    return {"groups": groups, "test": test.test,
            "p_value": None if test.p_value is None else dec(test.p_value, 3),
            "significant": test.significant}


def calibrate(
    dataset: Path,
    groups_spec: str,
    backend: str = "sface",
    watchlist_size: int = DEFAULT_WATCHLIST_SIZE,
    target_fpir: float = DEFAULT_TARGET_FPIR,
    attributes: Sequence[str] | None = None,
    max_pairs: int = DEFAULT_MAX_PAIRS,
    seed: int = DEFAULT_SEED,
    step: float = DEFAULT_STEP,
    alpha: float = stats.ALPHA,
    cache_dir: Path | None = None,
    progress: bool = True,
    engine: FaceEngine | None = None,
) -> Calibration:
    """Find the floor (module docstring) for ``backend`` on ``dataset`` with ``groups_spec``.

    Raises ``FileNotFoundError`` / ``ValueError`` for unusable input or data too small to
    resolve the target, ``ModelError`` for an unusable backend.
    """
    start = time.perf_counter()
    _check_parameters(watchlist_size, target_fpir, step, alpha, max_pairs)
    ds = scan_dataset(Path(dataset))
    groups: Groups = load_groups(groups_spec, ds, attributes)
    engine = engine or get_engine(backend)
    t = _usable_templates(engine, ds, dataset, cache_dir, progress)

    with _progress(progress) as bar:
        task = bar.add_task("calibrating", total=4)
        # (a) FPIR at the planned size.
        all_imp, nonmated, est = _fpir_at_size(t, watchlist_size, target_fpir, seed)
        bar.advance(task)
        # (b) the group check, on within-group impostor pairs as in eval fairness.
        attr_results, found = _group_floor(t, groups, est.threshold, max_pairs, seed, step,
                                           alpha)
        bar.advance(task)
        chosen = found.threshold
        # FPIR at the chosen threshold, and measured against other watchlist sizes.
        measured = _measured_fpir(t, chosen, watchlist_size, nonmated, seed)
        bar.advance(task)
        digest = dataset_digest(ds)
        overall = _overall_scores(t, max_pairs, seed)
        bar.advance(task)

    evidence = _evidence(
        engine, chosen, target_fpir, watchlist_size,
        fpir=_fpir_evidence(est, nonmated, chosen, all_imp, watchlist_size),
        fairness=_fairness_evidence(alpha, step, max_pairs, est, found, attr_results),
        dataset=_dataset_evidence(dataset, digest, t, groups, groups_spec, all_imp.pairs,
                                  len(overall.genuine)),
        seed=seed, notes=list(est.notes) + list(groups.notes), start=start)
    evidence["worst_group"] = worst_group(attr_results, target_fpir, watchlist_size, step)
    evidence["curve"] = rate_curve(nonmated, all_imp, overall.genuine, watchlist_size)
    if t.duplicates:
        evidence["notes"].append(f"{len(t.duplicates)} images are copies of an earlier image "
                                 f"(cosine >= {DUPLICATE_COSINE}) and were left out")
    data = _report_data(overall, attr_results, est.threshold, measured)
    return Calibration(engine.model_id, engine.backend, float(chosen), watchlist_size,
                       float(target_fpir), est.method, evidence, data)


# -- the steps of a calibration -----------------------------------------------------------------


def _check_parameters(watchlist_size: int, target_fpir: float, step: float, alpha: float,
                      max_pairs: int) -> None:
    """Refuse parameters outside their range, naming the option."""
    if watchlist_size < 1:
        raise InvalidInput(f"--watchlist-size must be at least 1, got {watchlist_size}")
    if not 0.0 < target_fpir < 1.0:
        raise InvalidInput(f"--target-fpir must lie strictly between 0 and 1, got {target_fpir}")
    if not 0.0 < step <= 0.1:
        raise InvalidInput(f"--step must lie in (0, 0.1], got {step}")
    if not 0.0 < alpha < 1.0:
        raise InvalidInput(f"--alpha must lie strictly between 0 and 1, got {alpha}")
    if max_pairs < 1:
        raise InvalidInput(f"--max-pairs must be at least 1, got {max_pairs}")


@dataclass(frozen=True, eq=False)
class _Templates:
    """A dataset's templates, and those used: one per usable, non-duplicate image, in dataset
    order, with the identity of each."""

    ds: Dataset
    emb: Embedded
    row_of: dict[int, int]
    duplicates: list[int]
    x: np.ndarray
    ident: np.ndarray
    n_ids: int


def _usable_templates(engine: FaceEngine, ds: Dataset, dataset: Path, cache_dir: Path | None,
                      progress: bool) -> _Templates:
    """Embed every image of ``ds``; leave out those without a face and duplicates."""
    emb: Embedded = embed_paths(engine, ds.root, ds.images, cache_dir=cache_dir,
                                progress=progress)
    if len(emb.vectors) < 2:
        raise InvalidInput(f"fewer than two usable faces in the {len(ds.images)} images of "
                            f"{dataset}")
    row_of, duplicates = drop_duplicates(emb.row_of(), emb.vectors)
    idx = sorted(row_of)
    x = emb.vectors[[row_of[i] for i in idx]].astype(np.float32)
    ident = np.array([ds.identities[i] for i in idx])
    return _Templates(ds, emb, row_of, duplicates, x, ident, len(set(ident.tolist())))


def _fpir_at_size(t: _Templates, watchlist_size: int, target_fpir: float, seed: int
                  ) -> tuple[AllImpostors, np.ndarray, FpirEstimate]:
    """The impostor tail, the non-mated searches at the planned size (empty when the data
    have too few identities) and the lowest threshold meeting the target."""
    x, ident = t.x, t.ident
    keep = int(min(max(64, 4 * len(x) ** 2 * pair_fmr_for(target_fpir, watchlist_size)),
                   5_000_000)) + 1
    all_imp = top_impostor_scores(x, ident, keep)
    galleries = 0
    if t.n_ids > watchlist_size:
        probes = len(ident) - _enrolled_images_estimate(ident, watchlist_size)
        galleries = galleries_needed(target_fpir, probes)
        nonmated = nonmated_top_scores(x, ident, watchlist_size, galleries, seed)
    else:
        nonmated = np.empty(0, dtype=np.float32)
    est = estimate_fpir_threshold(watchlist_size, target_fpir, nonmated, galleries, all_imp)
    return all_imp, nonmated, est


def _group_floor(t: _Templates, groups: Groups, fpir_threshold: float, max_pairs: int,
                 seed: int, step: float, alpha: float
                 ) -> tuple[list[AttributeResult], SearchResult]:
    """Each attribute's groups scored at ``fpir_threshold``, and the floor search on them."""
    attr_results = [evaluate_attribute(a, groups.labels[a], t.ds, t.emb.vectors, t.row_of,
                                       fpir_threshold, max_pairs, seed)
                    for a in groups.attributes]
    scores = {a.attribute: {g.group: g.impostor_scores for g in a.groups}
              for a in attr_results}
    if not any(len(s) for gs in scores.values() for s in gs.values()):
        raise InvalidInput(f"no group of {groups.source} has two labelled images of "
                            "different people: no false-match rate can be measured")
    return attr_results, search_threshold(scores, fpir_threshold, step, alpha)


def _measured_fpir(t: _Templates, chosen: float, watchlist_size: int, nonmated: np.ndarray,
                   seed: int) -> list[MeasuredFpir]:
    """FPIR at ``chosen`` measured by searches at each of :data:`REPORT_SIZES` the data allow
    (reusing the planned size's searches)."""
    measured: list[MeasuredFpir] = []
    for size in REPORT_SIZES:
        if size >= t.n_ids:
            break
        if size == watchlist_size and len(nonmated):
            top = nonmated
        else:
            top = nonmated_top_scores(t.x, t.ident, size, 3, seed)
        measured.append(MeasuredFpir(size, int(np.sum(top >= chosen)), len(top)))
    return measured


def _overall_scores(t: _Templates, max_pairs: int, seed: int) -> GroupScores:
    """Impostor (sampled above ``max_pairs``) and genuine scores of all the images used."""
    overall_imp, _ = impostor_scores(t.x, t.ident, max_pairs,
                                     np.random.default_rng([seed, 1 << 20, len(t.x)]))
    return GroupScores("all images", overall_imp, genuine_scores(t.x, t.ident))


def _report_data(overall: GroupScores, attr_results: list[AttributeResult],
                 fpir_threshold: float, measured: list[MeasuredFpir]) -> CalibrationData:
    return CalibrationData(
        overall=overall,
        panels=[(a.attribute, [GroupScores(g.group, g.impostor_scores, g.genuine_scores)
                               for g in a.groups]) for a in attr_results],
        fpir_threshold=fpir_threshold,
        measured=measured,
        attributes=attr_results,
    )


# -- the evidence --------------------------------------------------------------------------------


def worst_group(attr_results: Sequence[AttributeResult], target_fpir: float,
                watchlist_size: int, step: float = DEFAULT_STEP) -> dict[str, Any]:
    """The floor that holds for the worst-measured group: for each group, the lowest multiple
    of ``step`` at which its within-group false-match rate is at most the pairwise rate the
    target allows at the watchlist size (:func:`pair_fmr_for`); the highest of these. A group
    with fewer impostor pairs than ``1 / allowed`` cannot show that rate: its floor is the
    lowest step above all its impostor scores, and ``resolved`` is false."""
    allowed = pair_fmr_for(target_fpir, watchlist_size)
    grid = candidate_thresholds(0.0, step)
    out: dict[str, Any] = {"rule": "per group, the lowest threshold at which its false-match "
                           "rate over within-group impostor pairs is at most the rate the "
                           "target allows at the watchlist size; the highest over groups",
                           "pair_fmr_allowed": dec(allowed), "floor": None, "group": None,
                           "resolved": None, "groups": {}}
    best: tuple[float, str, bool] | None = None
    for a in attr_results:
        for g in a.groups:
            scores = np.sort(np.asarray(g.impostor_scores, dtype=np.float64))
            n = len(scores)
            if n == 0:
                continue
            limit = math.floor(allowed * n + 1e-9)
            floor = next((c for c in grid if _counts_at(scores, c) <= limit), 1.0)
            name = f"{a.attribute}={g.group}"
            resolved = n * allowed >= 1.0 - 1e-9
            out["groups"][name] = {"floor": dec(floor, 6), "impostor_pairs": n,
                                   "resolved": resolved}
            if best is None or floor > best[0]:
                best = (floor, name, resolved)
    if best is not None:
        out.update(floor=dec(best[0], 6), group=best[1], resolved=best[2])
    return out


def rate_curve(nonmated: np.ndarray, all_imp: AllImpostors, genuine: np.ndarray,
               watchlist_size: int, step: float = DEFAULT_STEP) -> list[dict[str, Any]]:
    """FPIR and FNIR by threshold (multiples of ``step``): the FPIR of the non-mated searches at
    the watchlist size where there are some, else modelled from the false-match rate over all
    impostor pairs; the FNIR as the share of genuine pairs scoring below the threshold (a miss
    of a mated search). Points the data cannot tell are left out."""
    genuine = np.sort(np.asarray(genuine, dtype=np.float64))
    out = []
    for c in candidate_thresholds(0.0, step):
        fpir: float | None
        if len(nonmated):
            fpir = float(np.mean(nonmated >= c))
        else:
            k = all_imp.false_matches(c)
            fpir = (None if k is None or not all_imp.pairs
                    else float(fpir_model(k / all_imp.pairs, watchlist_size)))
        fnir = (None if not len(genuine)
                else float(np.searchsorted(genuine, c, side="left")) / len(genuine))
        if fpir is None and fnir is None:
            continue
        out.append({"threshold": dec(c, 6), "fpir": None if fpir is None else dec(fpir),
                    "fnir": None if fnir is None else dec(fnir)})
    return out


def _fpir_evidence(est: FpirEstimate, nonmated: np.ndarray, chosen: float,
                   all_imp: AllImpostors, watchlist_size: int) -> dict[str, Any]:
    fpir: dict[str, Any] = {"method": est.method, "how": est.description,
                            "threshold_meeting_target": dec(est.threshold, 6)}
    if est.method == "searches":
        k = int(np.sum(nonmated >= chosen))
        fpir.update({"galleries": est.galleries, "searches": est.n, "false_positives": k,
                     "fpir": _rate(k, est.n), "fpir_ci": _ci(k, est.n),
                     "ci_note": "searches share probe images across galleries: the interval "
                                "is optimistic"})
    fm_all = all_imp.false_matches(chosen)
    if fm_all is not None:
        fmr_all = fm_all / all_imp.pairs
        fpir["modelled_fpir"] = dec(float(fpir_model(fmr_all, watchlist_size)))
        fpir["impostor_pairs"] = all_imp.pairs
        fpir["impostor_false_matches"] = fm_all
    return fpir


def _fairness_evidence(alpha: float, step: float, max_pairs: int, est: FpirEstimate,
                       found: SearchResult, attr_results: Sequence[AttributeResult]
                       ) -> dict[str, Any]:
    return {
        "rule": "each group's FMR over within-group impostor pairs against the pooled "
                "rest of its attribute, homogeneity test (chi-square or Fisher) at alpha, "
                "uncorrected; the floor is the lowest step at which no group is "
                "significantly above the rest, and none is at any higher step",
        "alpha": dec(alpha, 6),
        "step": dec(step, 6),
        "max_pairs_per_group": max_pairs,
        "lowest_threshold_meeting_fpir": dec(est.threshold, 6),
        "thresholds_failing": len(found.failures),
        "highest_failing": (dec(found.failures[-1][0], 6) if found.failures else None),
        "highest_failing_groups": ([f"{c.attribute}={c.group}" for c in
                                    found.failures[-1][1]][:10] if found.failures else []),
        "attributes": {a.attribute: _group_evidence(a, found.checks) for a in attr_results},
    }


def _dataset_evidence(dataset: Path, digest: str, t: _Templates, groups: Groups,
                      groups_spec: str, impostor_pairs: int, genuine_pairs: int
                      ) -> dict[str, Any]:
    return {
        "path": str(dataset),
        "sha256": digest,
        "digest_method": "SHA-256 over the sorted relative paths, each with its file's "
                         "SHA-256",
        "identities": len(set(t.ds.identities)),
        "images": len(t.ds.images),
        "usable_images": len(t.x),
        "no_face_images": len(t.emb.failed),
        "duplicate_images": len(t.duplicates),
        "duplicates_rule": f"cosine >= {DUPLICATE_COSINE} to an earlier image: the same "
                           "photo again, left out",
        "groups_source": groups.source,
        "groups_sha256": (None if groups_spec.strip().lower() == "utkface"
                          else sha256_file(Path(groups_spec))),
        "impostor_pairs": impostor_pairs,
        "genuine_pairs": genuine_pairs,
    }


def _evidence(engine: FaceEngine, chosen: float, target_fpir: float, watchlist_size: int, *,
              fpir: dict[str, Any], fairness: dict[str, Any], dataset: dict[str, Any],
              seed: int, notes: list[str], start: float) -> dict[str, Any]:
    """The whole evidence of a calibration (JSON without floats)."""
    return {
        "kind": EVIDENCE_KIND,
        "version": 1,
        "model_id": engine.model_id,
        "backend": engine.backend,
        "threshold": dec(chosen, 6),
        "target_fpir": dec(target_fpir, 6),
        "watchlist_size": watchlist_size,
        # None: a model a user added, which has no threshold before its first calibration
        "default_threshold": (None if engine.spec.default_threshold is None
                              else dec(engine.spec.default_threshold, 6)),
        "fpir": fpir,
        "fairness": fairness,
        "dataset": dataset,
        "seed": seed,
        "notes": notes,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "software": f"openlfr {__version__}",
        "seconds": dec(time.perf_counter() - start, 4),
    }


def drop_duplicates(row_of: dict[int, int], vectors: np.ndarray
                    ) -> tuple[dict[int, int], list[int]]:
    """``row_of`` without images whose template is within :data:`DUPLICATE_COSINE` of an
    earlier image's (in dataset order), and the dropped image indices."""
    order = sorted(row_of)
    x = vectors[[row_of[i] for i in order]]
    dup = np.zeros(len(order), dtype=bool)
    for a in range(0, len(order), _BLOCK):
        block = x[a:a + _BLOCK] @ x.T
        rows = np.arange(a, min(a + _BLOCK, len(order)))
        earlier = np.arange(len(order))[None, :] < rows[:, None]
        dup[rows] = ((block >= DUPLICATE_COSINE) & earlier).any(axis=1)
    dropped = [order[k] for k in np.flatnonzero(dup).tolist()]
    gone = set(dropped)
    return {i: r for i, r in row_of.items() if i not in gone}, dropped


def _enrolled_images_estimate(ident: np.ndarray, size: int) -> int:
    """Images of ``size`` identities of average size (to plan the number of galleries)."""
    n_ids = len(np.unique(ident))
    return math.ceil(len(ident) * size / max(n_ids, 1))


# -- plain language and the report -------------------------------------------------------------


def summary_sentences(cal: Calibration) -> list[str]:
    """What the floor means, for a reader who is not a specialist."""
    from openlfr.evaluation.report import per_10k

    ev = cal.evidence
    fp = ev["fpir"]
    fair = ev["fairness"]
    t = cal.threshold
    n = cal.watchlist_size
    out = [f"The threshold floor for {cal.model_id} is {t:g}: a deployment with a lower "
           "threshold is refused unless an override is recorded with a reason. A candidate "
           "is shown to an operator only when its score reaches the threshold; a higher "
           "threshold means fewer false alerts and more missed people."]
    target_10k = per_10k(cal.target_fpir)
    if fp.get("fpir") is not None:
        lo, hi = (float(v) for v in fp["fpir_ci"])
        out.append(
            f"With {n:,} people on the watchlist, about {per_10k(float(fp['fpir']))} in every "
            f"10,000 faces scanned of people who are not on it would raise a false alert at "
            f"{t:g} (95 % range {per_10k(lo)} to {per_10k(hi)}; measured in "
            f"{fp['searches']:,} searches against {fp['galleries']} lists of {n:,} people). "
            f"The target was at most {target_10k} in 10,000.")
    elif fp.get("modelled_fpir") is not None:
        out.append(
            f"With {n:,} people on the watchlist, about {per_10k(float(fp['modelled_fpir']))} "
            f"in every 10,000 faces scanned of people who are not on it would raise a false "
            f"alert at {t:g} (estimated from {fp['impostor_pairs']:,} comparisons of "
            f"different people, taking each comparison as independent). The target was at "
            f"most {target_10k} in 10,000.")
    meet = float(fair["lowest_threshold_meeting_fpir"])
    if fair["highest_failing"] is not None:
        out.append(
            f"The target alone would allow {meet:.3f}; the floor is higher because up to "
            f"{fair['highest_failing']} some group falsely matched significantly more often "
            f"than the others ({', '.join(fair['highest_failing_groups'])}).")
    else:
        out.append(f"The target alone allows {meet:.3f}; from there on no group falsely "
                   "matched significantly more often than the others, so the floor is the "
                   "first step at or above it.")
    for attr, a in fair["attributes"].items():
        parts = []
        small = []
        for g, d in a["groups"].items():
            if d["fmr"] is None:
                small.append(f"{g} (no pairs)")
                continue
            parts.append(f"{g} {per_10k(float(d['fmr']))} ({d['false_matches']} of "
                         f"{d['impostor_pairs']:,})")
            if d["too_small"]:
                small.append(g)
        out.append(f"{attr}: false matches per 10,000 comparisons of two different people of "
                   f"the same group at {t:g}: {'; '.join(parts)}.")
        if small:
            out.append(f"{attr}: too few comparisons for a conclusion in "
                       f"{', '.join(small)}: at the overall rate fewer than 5 false matches "
                       "would be expected there, so a difference could not be seen.")
    if ev["default_threshold"] is None:
        out.append("The model had no threshold before this calibration (a model you added).")
        return out
    dflt = float(ev["default_threshold"])
    rel = "above" if t > dflt else "below" if t < dflt else "equal to"
    out.append(f"The floor is {rel} the model's default threshold ({dflt:g}).")
    return out


def write_report(cal: Calibration, path: Path) -> Path:
    """A self-contained HTML report of a calibration (summary, tables, figures)."""
    import html

    from openlfr.evaluation import report as rp

    if cal.data is None:
        raise InvalidInput("this calibration carries no scores to draw")
    e = html.escape
    d = cal.data
    ev = cal.evidence
    ds = ev["dataset"]
    intro = (f"<p>Model {e(cal.model_id)}, dataset <code>{e(ds['path'])}</code> "
             f"(SHA-256 <code>{e(ds['sha256'])}</code>): {ds['identities']:,} identities, "
             f"{ds['images']:,} images, {ds['no_face_images']:,} without a usable face; groups "
             f"from {e(ds['groups_source'])}. Planned watchlist size {cal.watchlist_size:,}, "
             f"target FPIR {cal.target_fpir:.3g}. FPIR estimated by "
             f"{e(ev['fpir']['how'])}. Run {e(ev['date'])}.</p>")
    rows = []
    for attr, a in ev["fairness"]["attributes"].items():
        for g, gd in a["groups"].items():
            ci = gd["fmr_ci"]
            rows.append(
                f"<tr><td>{e(attr)}</td><td>{e(g)}</td><td>{gd['images']:,}</td>"
                f"<td>{gd['impostor_pairs']:,}</td><td>{gd['false_matches']:,}</td>"
                f"<td>{'–' if gd['fmr'] is None else e(gd['fmr'])}</td>"
                f"<td>{'–' if ci is None else e(ci[0] + ' – ' + ci[1])}</td>"
                f"<td>{'yes' if gd['above_rest'] else 'no'}</td>"
                f"<td>{'yes' if gd['too_small'] else 'no'}</td></tr>")
    table = ("<h2>Groups at the floor</h2><table><tr><th>attribute</th><th>group</th>"
             "<th>images</th><th>impostor pairs</th><th>false matches</th><th>FMR</th>"
             "<th>95 % CI</th><th>significantly above the rest</th><th>too small</th></tr>"
             + "".join(rows) + "</table>")
    marks = [("floor", cal.threshold), ("FPIR target met from", round(d.fpir_threshold, 3))]
    if ev["default_threshold"] is not None:
        marks.append(("default", float(ev["default_threshold"])))
    measured = [("all images", cal.threshold, d.measured)] if d.measured else []
    figures = [
        ("DET curves for all images and per group (only groups with several photos of the "
         "same person have one)", rp.det_figure([("all images", [d.overall]), *d.panels])),
        ("False-match rate per group against threshold, 95 % bands",
         rp.fmr_threshold_figure(d.panels, marks)),
        (f"FPIR against watchlist size at the floor {cal.threshold:g}: modelled from impostor "
         "pairs as 1 - (1 - FMR)^N, and measured by searches where the data allow",
         rp.fpir_size_figure([("all images", d.overall.impostor, cal.threshold)], measured,
                             cal.target_fpir) if len(d.overall.impostor) else None),
    ]
    page = rp.html_page(f"Threshold floor of {cal.model_id}", intro, summary_sentences(cal),
                        [table], figures, ev["notes"])
    return rp.write_page(path, page)

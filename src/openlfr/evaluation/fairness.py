"""Demographic differentials at a fixed threshold: FMR and FNMR per group, with exact 95 %
Clopper–Pearson intervals, the highest-to-lowest FMR ratio and a homogeneity test.

Per attribute (e.g. race, gender) and per group:

* impostor pairs are pairs of images of *different* identities that are both in the group; all
  of them are scored when there are at most ``max_pairs``, else a seeded uniform sample of
  ``max_pairs`` distinct pairs. A false match is an impostor score ≥ threshold.
* genuine pairs are pairs of images of the same identity, both in the group (only datasets with
  several images per identity have them). A false non-match is a genuine score < threshold.

Scores are cosine similarities computed with matrix products (blocks of the Gram matrix for
exhaustive pairs, a row-wise product for sampled ones).
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openlfr.errors import InvalidInput
from openlfr.evaluation import stats
from openlfr.evaluation.groups import Dataset, Groups, load_groups, scan_dataset
from openlfr.evaluation.report import GroupScores
from openlfr.evaluation.templates import embed_paths
from openlfr.evaluation.verify import FailedImage
from openlfr.vision import FaceEngine, get_engine
from openlfr.vision.thresholds import check_threshold

DEFAULT_MAX_PAIRS = 200_000
DEFAULT_SEED = 0
#: Rows of the Gram matrix computed at once when counting exhaustive pairs.
_BLOCK = 2048


@dataclass(frozen=True)
class PairCounts:
    """Counts of one kind of pair in one group."""

    errors: int
    pairs: int
    #: All pairs of this kind in the group (``pairs`` < ``available`` when sampled).
    available: int

    @property
    def sampled(self) -> bool:
        return self.pairs < self.available


def _upper_pairs(n: int) -> int:
    return n * (n - 1) // 2


def impostor_scores_exhaustive(x: np.ndarray, ident: np.ndarray) -> np.ndarray:
    """Scores of all pairs ``i < j`` of rows of ``x`` with different ``ident`` (float32)."""
    n = len(x)
    parts: list[np.ndarray] = []
    for a in range(0, n, _BLOCK):
        block = x[a:a + _BLOCK] @ x.T  # (b, n)
        rows = np.arange(a, min(a + _BLOCK, n))
        upper = np.arange(n)[None, :] > rows[:, None]
        diff = ident[a:a + _BLOCK, None] != ident[None, :]
        parts.append(block[upper & diff].astype(np.float32))
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float32)


def count_impostor_exhaustive(x: np.ndarray, ident: np.ndarray, threshold: float) -> PairCounts:
    """False matches among all pairs ``i < j`` of rows of ``x`` with different ``ident``."""
    scores = impostor_scores_exhaustive(x, ident)
    return PairCounts(int((scores >= threshold).sum()), len(scores), len(scores))


def _index_to_pair(k: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear index of the upper triangle (row-major, ``i < j``) → ``(i, j)``."""
    starts = np.arange(n) * (2 * n - np.arange(n) - 1) // 2  # first index of row i
    i = np.searchsorted(starts, k, side="right") - 1
    j = k - starts[i] + i + 1
    return i, j


def impostor_scores_sampled(x: np.ndarray, ident: np.ndarray, max_pairs: int,
                            rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Scores of a uniform sample of ``max_pairs`` distinct impostor pairs, and the number of
    impostor pairs available."""
    n = len(x)
    total = _upper_pairs(n)
    same_id = sum(_upper_pairs(int(c)) for c in np.unique(ident, return_counts=True)[1])
    available = int(total - same_id)
    want = min(max_pairs, available)
    chosen: np.ndarray = np.empty(0, dtype=np.int64)
    # Draw distinct linear indices, drop same-identity pairs, top up until there are enough.
    while len(chosen) < want:
        need = want - len(chosen)
        extra = rng.choice(total, size=min(total, int(need * 1.1) + 16), replace=False)
        i, j = _index_to_pair(extra, n)
        extra = extra[ident[i] != ident[j]]
        chosen = np.unique(np.r_[chosen, extra])
        if len(chosen) > want:
            chosen = rng.permutation(chosen)[:want]
    i, j = _index_to_pair(np.sort(chosen), n)
    return np.einsum("ij,ij->i", x[i], x[j]).astype(np.float32), available


def count_impostor_sampled(x: np.ndarray, ident: np.ndarray, threshold: float, max_pairs: int,
                           rng: np.random.Generator) -> PairCounts:
    """False matches among a uniform sample of ``max_pairs`` distinct impostor pairs."""
    scores, available = impostor_scores_sampled(x, ident, max_pairs, rng)
    return PairCounts(int((scores >= threshold).sum()), len(scores), available)


def impostor_scores(x: np.ndarray, ident: np.ndarray, max_pairs: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """All impostor scores when there are at most ``max_pairs``, else a uniform sample; and
    the number of impostor pairs available."""
    same_pairs = sum(_upper_pairs(int(c)) for c in np.unique(ident, return_counts=True)[1])
    available = _upper_pairs(len(x)) - same_pairs
    if available <= max_pairs:
        return impostor_scores_exhaustive(x, ident), available
    return impostor_scores_sampled(x, ident, max_pairs, rng)


def genuine_scores(x: np.ndarray, ident: np.ndarray) -> np.ndarray:
    """Scores of all same-identity pairs (float32)."""
    parts: list[np.ndarray] = []
    for value in np.unique(ident):
        rows = np.flatnonzero(ident == value)
        if len(rows) < 2:
            continue
        g = x[rows] @ x[rows].T
        parts.append(g[np.triu_indices(len(rows), 1)].astype(np.float32))
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float32)


def count_genuine(x: np.ndarray, ident: np.ndarray, threshold: float) -> PairCounts:
    """False non-matches among all same-identity pairs."""
    scores = genuine_scores(x, ident)
    return PairCounts(int((scores < threshold).sum()), len(scores), len(scores))


@dataclass
class GroupResult:
    group: str
    images: int
    identities: int
    impostor: PairCounts
    genuine: PairCounts
    #: The scores behind the counts (for curves against the threshold); not in the JSON.
    impostor_scores: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    genuine_scores: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    def to_dict(self) -> dict[str, Any]:
        fmr_ci = stats.clopper_pearson(self.impostor.errors, self.impostor.pairs)
        fnmr_ci = stats.clopper_pearson(self.genuine.errors, self.genuine.pairs)
        return {
            "images": self.images,
            "identities": self.identities,
            "fmr": stats.rate(self.impostor.errors, self.impostor.pairs),
            "fmr_ci": list(fmr_ci) if fmr_ci else None,
            "false_matches": self.impostor.errors,
            "n_impostor": self.impostor.pairs,
            "impostor_available": self.impostor.available,
            "impostor_sampled": self.impostor.sampled,
            "fnmr": stats.rate(self.genuine.errors, self.genuine.pairs),
            "fnmr_ci": list(fnmr_ci) if fnmr_ci else None,
            "false_non_matches": self.genuine.errors,
            "n_genuine": self.genuine.pairs,
        }


@dataclass
class AttributeResult:
    attribute: str
    groups: list[GroupResult]
    fmr_ratio: stats.RateRatio
    fmr_test: stats.HomogeneityTest
    fnmr_ratio: stats.RateRatio
    fnmr_test: stats.HomogeneityTest
    unlabelled_images: int


@dataclass
class FairnessReport:
    backend: str
    model_id: str
    dataset: str
    groups_source: str
    threshold: float
    max_pairs: int
    seed: int
    images: int
    failed_images: list[FailedImage]
    attributes: list[AttributeResult]
    seconds: float
    notes: list[str] = field(default_factory=list)
    cached_templates: int = 0
    #: Impostor (sampled like a group's) and genuine scores over all labelled images, for the
    #: report's overall curves; not in the JSON.
    overall: GroupScores = field(default_factory=lambda: GroupScores("all", np.empty(0)),
                                 repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model_id": self.model_id,
            "dataset": self.dataset,
            "groups_source": self.groups_source,
            "threshold": self.threshold,
            "max_pairs": self.max_pairs,
            "seed": self.seed,
            "images": self.images,
            "no_face_images": len(self.failed_images),
            "failed_images": [f.to_dict() for f in self.failed_images],
            "groups": {a.attribute: {g.group: g.to_dict() for g in a.groups}
                       for a in self.attributes},
            "fmr_ratio": {a.attribute: a.fmr_ratio.value for a in self.attributes},
            "fmr_ratio_detail": {a.attribute: a.fmr_ratio.to_dict() for a in self.attributes},
            "significant": {a.attribute: a.fmr_test.significant for a in self.attributes},
            "p_value": {a.attribute: a.fmr_test.p_value for a in self.attributes},
            "fmr_test": {a.attribute: a.fmr_test.to_dict() for a in self.attributes},
            "fnmr_ratio_detail": {a.attribute: a.fnmr_ratio.to_dict() for a in self.attributes},
            "fnmr_test": {a.attribute: a.fnmr_test.to_dict() for a in self.attributes},
            "unlabelled_images": {a.attribute: a.unlabelled_images for a in self.attributes},
            "cached_templates": self.cached_templates,
            "seconds": self.seconds,
            "notes": list(self.notes),
        }


def evaluate_attribute(
    attribute: str, labels: Sequence[str | None], dataset: Dataset, vectors: np.ndarray,
    row_of: dict[int, int], threshold: float, max_pairs: int, seed: int,
) -> AttributeResult:
    """Per-group counts for one attribute. ``row_of`` maps an image index to its vector row
    (images without a usable face are absent)."""
    groups: dict[str, list[int]] = {}
    unlabelled = 0
    for i, label in enumerate(labels):
        if label is None:
            unlabelled += 1
        elif i in row_of:
            groups.setdefault(label, []).append(i)
    results: list[GroupResult] = []
    for g_index, name in enumerate(sorted(groups)):
        idx = groups[name]
        x = vectors[[row_of[i] for i in idx]].astype(np.float32)
        ident = np.array([dataset.identities[i] for i in idx])
        rng = np.random.default_rng([seed, g_index, len(idx)])
        imp_scores, available = impostor_scores(x, ident, max_pairs, rng)
        gen_scores = genuine_scores(x, ident)
        imp = PairCounts(int((imp_scores >= threshold).sum()), len(imp_scores), available)
        gen = PairCounts(int((gen_scores < threshold).sum()), len(gen_scores), len(gen_scores))
        results.append(GroupResult(name, len(idx), len(set(ident.tolist())), imp, gen,
                                   imp_scores, gen_scores))
    fmr_counts = {r.group: (r.impostor.errors, r.impostor.pairs) for r in results}
    fnmr_counts = {r.group: (r.genuine.errors, r.genuine.pairs) for r in results}
    return AttributeResult(
        attribute=attribute,
        groups=results,
        fmr_ratio=stats.rate_ratio(fmr_counts),
        fmr_test=stats.homogeneity_test(list(fmr_counts.values())),
        fnmr_ratio=stats.rate_ratio(fnmr_counts),
        fnmr_test=stats.homogeneity_test(list(fnmr_counts.values())),
        unlabelled_images=unlabelled,
    )


def run_fairness(
    dataset: Path,
    groups_spec: str,
    threshold: float,
    backend: str = "sface",
    attributes: Sequence[str] | None = None,
    max_pairs: int = DEFAULT_MAX_PAIRS,
    seed: int = DEFAULT_SEED,
    cache_dir: Path | None = None,
    progress: bool = True,
    engine: FaceEngine | None = None,
) -> FairnessReport:
    """FMR/FNMR per group of each attribute at ``threshold``.

    Raises ``FileNotFoundError`` / ``ValueError`` for an unusable dataset or groups spec or an
    unknown attribute, ``ModelError`` for an unusable backend.
    """
    start = time.perf_counter()
    threshold = check_threshold(threshold)
    if max_pairs < 1:
        raise InvalidInput(f"--max-pairs must be at least 1, got {max_pairs}")
    ds = scan_dataset(Path(dataset))
    groups: Groups = load_groups(groups_spec, ds, attributes)
    labelled = [i for i in range(len(ds.images))
                if any(groups.labels[a][i] is not None for a in groups.attributes)]
    if not labelled:
        raise InvalidInput(f"no image of {dataset} has a group label from {groups.source}")
    engine = engine or get_engine(backend)
    paths = [ds.images[i] for i in labelled]
    emb = embed_paths(engine, ds.root, paths, cache_dir=cache_dir, progress=progress)
    row_of = {labelled[p]: r for p, r in emb.row_of().items()}
    results = [evaluate_attribute(a, groups.labels[a], ds, emb.vectors, row_of, threshold,
                                  max_pairs, seed) for a in groups.attributes]
    overall = overall_scores(ds, emb.vectors, row_of, max_pairs, seed)
    return FairnessReport(
        backend=engine.backend,
        model_id=engine.model_id,
        dataset=str(dataset),
        groups_source=groups.source,
        threshold=float(threshold),
        max_pairs=max_pairs,
        seed=seed,
        images=len(ds.images),
        failed_images=emb.failed,
        attributes=results,
        seconds=round(time.perf_counter() - start, 3),
        notes=list(groups.notes),
        cached_templates=emb.cached,
        overall=overall,
    )


def overall_scores(dataset: Dataset, vectors: np.ndarray, row_of: dict[int, int],
                   max_pairs: int, seed: int) -> GroupScores:
    """Impostor scores (all pairs, or a seeded sample of ``max_pairs``) and genuine scores over
    every embedded image, whatever its group."""
    idx = sorted(row_of)
    x = vectors[[row_of[i] for i in idx]].astype(np.float32)
    ident = np.array([dataset.identities[i] for i in idx])
    imp, _ = impostor_scores(x, ident, max_pairs, np.random.default_rng([seed, 1 << 20, len(idx)]))
    return GroupScores("all images", imp, genuine_scores(x, ident))


# -- figures and report --------------------------------------------------------------------


def _figure(report: FairnessReport) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = max(1, len(report.attributes))
    fig = Figure(figsize=(6.0, 2.2 + 1.6 * n), dpi=110)
    FigureCanvasAgg(fig)
    for k, attr in enumerate(report.attributes):
        ax = fig.add_subplot(n, 1, k + 1)
        names, mids, lo, hi = [], [], [], []
        for g in attr.groups:
            d = g.to_dict()
            if d["fmr"] is None:
                continue
            names.append(f"{g.group} (n={g.impostor.pairs:,})")
            mids.append(d["fmr"])
            lo.append(d["fmr_ci"][0])
            hi.append(d["fmr_ci"][1])
        y = np.arange(len(names))
        if names:
            m_arr, lo_arr, hi_arr = np.array(mids), np.array(lo), np.array(hi)
            ax.errorbar(m_arr, y, xerr=[m_arr - lo_arr, hi_arr - m_arr], fmt="o", capsize=3)
            ax.set_yticks(y, names, fontsize=8)
        ax.set_xlabel("false-match rate (95 % Clopper–Pearson)")
        ax.set_title(f"{attr.attribute}: FMR at threshold {report.threshold:g}", fontsize=10)
        ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_fairness(report: FairnessReport, path: Path) -> Path:
    """Per-attribute FMR with 95 % intervals, one panel per attribute, as a PNG."""
    path = Path(path)
    _figure(report).savefig(path, format="png")
    return path


def _per_10k(rate: float | None) -> str:
    if rate is None:
        return "not measurable"
    v = rate * 10_000
    return f"{v:.2g}" if v < 10 else f"{v:,.0f}"


def summary_sentences(report: FairnessReport) -> list[str]:
    """Plain-language findings, one sentence per group and per attribute."""
    out: list[str] = []
    t = report.threshold
    for attr in report.attributes:
        for g in attr.groups:
            d = g.to_dict()
            if d["fmr"] is None:
                out.append(f"{attr.attribute} = {g.group}: too few images to compare "
                           "different people.")
                continue
            lo, hi = d["fmr_ci"]
            out.append(
                f"At threshold {t:g}, about {_per_10k(d['fmr'])} in 10,000 comparisons between "
                f"different people of {attr.attribute} group {g.group} falsely match (95 % "
                f"range {_per_10k(lo)}–{_per_10k(hi)} in 10,000; {d['n_impostor']:,} "
                f"comparisons).")
            if d["fnmr"] is not None:
                out.append(
                    f"For the same group, about {_per_10k(d['fnmr'])} in 10,000 comparisons of "
                    f"two photos of the same person fail to match ({d['n_genuine']:,} "
                    "comparisons).")
        r = attr.fmr_ratio
        if r.value is not None:
            out.append(f"For {attr.attribute}, group {r.highest} falsely matches "
                       f"{r.value:.1f} times as often as group {r.lowest}.")
        elif r.highest is not None and r.at_least is not None:
            out.append(f"For {attr.attribute}: {r.note}.")
        test = attr.fmr_test
        if test.p_value is not None:
            verdict = ("a difference this large is unlikely to be chance" if test.significant
                       else "the differences could be chance")
            p_text = "p < 1e-300" if test.p_value == 0.0 else f"p = {test.p_value:.3g}"
            out.append(f"Test of equal false-match rates across {attr.attribute} groups "
                       f"({test.test}): {p_text}, so {verdict} (at the 5 % level).")
    return out


def report_figures(report: FairnessReport, marks: Sequence[tuple[str, float]] = ()
                   ) -> list[tuple[str, Any]]:
    """The report's figures: per-group FMR with intervals, DET curves overall and per group,
    FMR against threshold per group, FPIR against watchlist size."""
    from openlfr.evaluation import report as rp

    panels = [(a.attribute, [rp.GroupScores(g.group, g.impostor_scores, g.genuine_scores)
                             for g in a.groups]) for a in report.attributes]
    det_panels = [("all images", [report.overall]), *panels]
    marks = list(marks) or [("threshold", report.threshold)]
    curves: list[tuple[str, np.ndarray, float]] = []
    if len(report.overall.impostor):
        curves.append(("all images", report.overall.impostor, report.threshold))
    if report.attributes:
        first = report.attributes[0]
        curves += [(f"{first.attribute} {g.group} only", g.impostor_scores, report.threshold)
                   for g in first.groups if len(g.impostor_scores)]
    return [
        (f"False-match rate per group at threshold {report.threshold:g}, 95 % intervals",
         _figure(report)),
        ("DET curves (false non-matches against false matches) for all images and per group; "
         "only groups with several photos of the same person have one", rp.det_figure(
             det_panels)),
        ("False-match rate against threshold per group, with 95 % bands",
         rp.fmr_threshold_figure(panels, marks)),
        ("Chance that a search for someone not on the watchlist returns a candidate, against "
         "the number of people on the list, from 1 - (1 - FMR)^N (a group's curve: a list "
         "and passers-by all from that group)",
         rp.fpir_size_figure(curves) if curves else None),
    ]


def fairness_tables_html(report: FairnessReport) -> list[str]:
    e = html.escape

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{v * 100:.4f} %"

    tables: list[str] = []
    for attr in report.attributes:
        rows = []
        for g in attr.groups:
            d = g.to_dict()
            ci = d["fmr_ci"]
            nci = d["fnmr_ci"]
            rows.append(
                f"<tr><td>{e(g.group)}</td><td>{g.images}</td><td>{d['n_impostor']:,}</td>"
                f"<td>{d['false_matches']}</td><td>{pct(d['fmr'])}</td>"
                f"<td>{'–' if ci is None else f'{pct(ci[0])} – {pct(ci[1])}'}</td>"
                f"<td>{d['n_genuine']:,}</td><td>{pct(d['fnmr'])}</td>"
                f"<td>{'–' if nci is None else f'{pct(nci[0])} – {pct(nci[1])}'}</td></tr>")
        tables.append(
            f"<h2>{e(attr.attribute)}</h2><table><tr><th>group</th><th>images</th>"
            "<th>impostor pairs</th><th>false matches</th><th>FMR</th><th>FMR 95 % CI</th>"
            "<th>genuine pairs</th><th>FNMR</th><th>FNMR 95 % CI</th></tr>"
            + "".join(rows) + "</table>")
    return tables


def scan_sentences(impostor: np.ndarray, threshold: float,
                   sizes: Sequence[int] = (100, 1_000, 10_000)) -> list[str]:
    """What a threshold means in false alerts per 10,000 faces of people not on the list."""
    from openlfr.evaluation import report as rp

    if not len(impostor):
        return []
    fmr = float(np.mean(impostor >= threshold))
    parts = [f"{rp.per_10k(float(rp.fpir_model(fmr, n)))} with {n:,} people on the list"
             for n in sizes]
    return [f"In a crowd of people who are not on the watchlist, every 10,000 faces scanned at "
            f"threshold {threshold:g} would give about {'; '.join(parts)} false alerts "
            f"(estimated from {len(impostor):,} comparisons of different people, taking each "
            "comparison as independent)."]


def write_html_report(report: FairnessReport, path: Path) -> Path:
    """A self-contained HTML page: plain-language summary, per-group tables, and the figures
    (FMR per group, DET curves, FMR against threshold, FPIR against watchlist size) as base64
    PNGs."""
    from openlfr.evaluation import report as rp

    e = html.escape
    intro = (f"<p>Dataset <code>{e(report.dataset)}</code>, groups from "
             f"{e(report.groups_source)}, model {e(report.model_id)}, threshold "
             f"{report.threshold:g}. {len(report.failed_images)} of {report.images} images had "
             "no usable face and were left out. Ranges are 95 % Clopper–Pearson intervals. A "
             "<em>false match</em> is a photo of one person scoring at or above the threshold "
             "against a photo of someone else.</p>")
    summary = scan_sentences(report.overall.impostor, report.threshold)
    summary += summary_sentences(report)
    page = rp.html_page(f"Demographic differentials of {report.model_id}", intro, summary,
                        fairness_tables_html(report), report_figures(report), report.notes)
    return rp.write_page(path, page)

"""Figures and a self-contained HTML page for the fairness and calibration reports.

Figures are drawn on matplotlib's Agg canvas (no display, no pyplot) and embedded in the page
as base64 PNGs, so the report is one file that opens anywhere and needs nothing else.

* **DET curves**: false non-match rate against false-match rate on normal-deviate axes, one
  curve for all images and one per group (only groups with genuine pairs have a curve).
* **FMR against threshold**: per group, the false-match rate over its impostor pairs with a
  95 % Clopper–Pearson band, on a log scale; thresholds of interest as vertical lines.
* **FPIR against watchlist size**: the chance that a search for someone *not* on the list
  returns a candidate, for lists of 1 to 100,000 people. Curves come from the impostor score
  distribution as ``1 - (1 - FMR(t))^N`` (each comparison taken as independent); measured
  points, where given, come from searches against galleries of that size.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from openlfr.evaluation.stats import CONFIDENCE

_DET_TICKS = (1e-5, 1e-4, 1e-3, 0.01, 0.05, 0.2, 0.5)
#: Watchlist sizes of the FPIR curves.
SIZES = np.unique(np.round(np.logspace(0, 5, 61)).astype(np.int64))


@dataclass
class GroupScores:
    """The scores of one group (or of all images): impostor and genuine pair scores."""

    name: str
    impostor: np.ndarray
    genuine: np.ndarray = field(default_factory=lambda: np.empty(0))


def fmr_at(impostor: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False matches (``score >= t``) and their rate at each threshold."""
    s = np.sort(np.asarray(impostor, dtype=np.float64))
    k = len(s) - np.searchsorted(s, np.asarray(thresholds, dtype=np.float64), side="left")
    rate = k / len(s) if len(s) else np.full(len(k), np.nan)
    return k.astype(np.int64), rate


def clopper_pearson_arrays(k: np.ndarray, n: int,
                           confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised Clopper–Pearson bounds of ``k / n`` (``n > 0``)."""
    from scipy import stats as sps  # (on first use: it takes a command's start 0.6 s)

    k = np.asarray(k, dtype=np.float64)
    a = (1.0 - confidence) / 2.0
    with np.errstate(invalid="ignore"):
        lo = np.where(k > 0, sps.beta.ppf(a, np.maximum(k, 1), n - k + 1), 0.0)
        hi = np.where(k < n, sps.beta.ppf(1 - a, k + 1, np.maximum(n - k, 1)), 1.0)
    return lo, hi


def fpir_model(fmr: float | np.ndarray, size: int | np.ndarray) -> np.ndarray:
    """``1 - (1 - FMR)^N``: the chance that at least one of ``N`` independent impostor
    comparisons reaches the threshold."""
    f = np.clip(np.asarray(fmr, dtype=np.float64), 0.0, 1.0)
    return -np.expm1(np.asarray(size, dtype=np.float64) * np.log1p(-np.minimum(f, 1 - 1e-16)))


def per_10k(rate: float | None) -> str:
    """A rate as 'so many in 10,000', readable by anyone."""
    if rate is None:
        return "not measurable"
    v = rate * 10_000
    if v == 0:
        return "0"
    return f"{v:.2g}" if v < 10 else f"{v:,.0f}"


def png_base64(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _new_figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _probit(p: np.ndarray, lo: float) -> np.ndarray:
    nd = NormalDist()
    return np.array([nd.inv_cdf(float(v)) for v in np.clip(p, lo, 1 - lo)])


def det_figure(panels: Sequence[tuple[str, Sequence[GroupScores]]]) -> Figure | None:
    """One DET panel per ``(title, groups)``; ``None`` when no group has both kinds of pairs."""
    drawable = [(t, [g for g in gs if len(g.impostor) and len(g.genuine)]) for t, gs in panels]
    drawable = [(t, gs) for t, gs in drawable if gs]
    if not drawable:
        return None
    fig = _new_figure(5.0 * len(drawable), 4.6)
    axes = fig.subplots(1, len(drawable), squeeze=False)[0]
    for ax, (title, groups) in zip(axes, drawable, strict=True):
        lo = 0.5 / max(max(len(g.impostor) for g in groups), 2)
        for g in groups:
            thr = np.unique(np.r_[g.impostor, g.genuine])[::-1]
            _, fmr = fmr_at(g.impostor, thr)
            gs = np.sort(np.asarray(g.genuine, dtype=np.float64))
            fnmr = np.searchsorted(gs, thr, side="left") / len(gs)
            ax.plot(_probit(fmr, lo), _probit(fnmr, lo), lw=1.4,
                    label=f"{g.name} ({len(g.impostor):,} / {len(g.genuine):,})")
        ticks = [t for t in _DET_TICKS if lo <= t <= 0.5]
        ax.set_xticks(_probit(np.array(ticks), lo), [f"{t:g}" for t in ticks], rotation=45)
        ax.set_yticks(_probit(np.array(ticks), lo), [f"{t:g}" for t in ticks])
        lim = (float(_probit(np.array([lo]), lo)[0]), float(_probit(np.array([0.5]), lo)[0]))
        ax.set_xlim(*lim)
        ax.set_ylim(*lim)
        ax.set_xlabel("false-match rate")
        ax.set_ylabel("false non-match rate")
        ax.set_title(f"DET: {title}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, title="group (impostor / genuine pairs)", title_fontsize=7)
    fig.tight_layout()
    return fig


def fmr_threshold_figure(panels: Sequence[tuple[str, Sequence[GroupScores]]],
                         marks: Sequence[tuple[str, float]],
                         lo_t: float = -0.1, hi_t: float = 1.0) -> Figure | None:
    """Per panel, FMR against threshold for each group with a 95 % band (log scale)."""
    panels = [(t, [g for g in gs if len(g.impostor)]) for t, gs in panels]
    panels = [(t, gs) for t, gs in panels if gs]
    if not panels:
        return None
    thresholds = np.linspace(lo_t, hi_t, 221)
    fig = _new_figure(6.5, 3.2 * len(panels))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (title, groups) in zip(axes, panels, strict=True):
        floor = 0.5 / max(len(g.impostor) for g in groups)
        for g in groups:
            k, rate = fmr_at(g.impostor, thresholds)
            lo, hi = clopper_pearson_arrays(k, len(g.impostor))
            line = ax.plot(thresholds, np.maximum(rate, floor), lw=1.3,
                           label=f"{g.name} ({len(g.impostor):,} pairs)")[0]
            ax.fill_between(thresholds, np.maximum(lo, floor), np.maximum(hi, floor),
                            color=line.get_color(), alpha=0.15, lw=0)
        for label, t in marks:
            ax.axvline(t, color="0.3", ls="--", lw=0.8)
            ax.text(t, 0.98, f" {label} {t:g}", transform=ax.get_xaxis_transform(),
                    fontsize=7, va="top")
        ax.set_yscale("log")
        ax.set_ylim(floor, 1.0)
        ax.set_xlim(lo_t, hi_t)
        ax.set_xlabel("threshold (cosine)")
        ax.set_ylabel("false-match rate")
        ax.set_title(f"{title}: FMR against threshold, 95 % bands", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class MeasuredFpir:
    """FPIR measured by searches against galleries of ``size`` at one threshold."""

    size: int
    false_positives: int
    searches: int


def fpir_size_figure(curves: Sequence[tuple[str, np.ndarray, float]],
                     measured: Sequence[tuple[str, float, Sequence[MeasuredFpir]]] = (),
                     target: float | None = None) -> Figure:
    """FPIR against watchlist size: ``(label, impostor scores, threshold)`` curves from
    ``1 - (1 - FMR)^N`` and measured points with 95 % intervals."""
    fig = _new_figure(6.5, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    lowest = 1.0
    for label, impostor, t in curves:
        _, rate = fmr_at(impostor, np.array([t]))
        y = fpir_model(float(rate[0]), SIZES)
        ax.plot(SIZES, np.maximum(y, 1e-7), lw=1.4,
                label=f"{label} at {t:g} (from {len(impostor):,} impostor pairs)")
        lowest = min(lowest, float(y[y > 0].min()) if (y > 0).any() else lowest)
    for label, t, points in measured:
        pts = [p for p in points if p.searches]
        if not pts:
            continue
        x = np.array([p.size for p in pts])
        k = np.array([p.false_positives for p in pts])
        n = np.array([p.searches for p in pts])
        rate = k / n
        bounds = [clopper_pearson_arrays(np.array([kk]), int(nn)) for kk, nn in zip(k, n,
                                                                                   strict=True)]
        lo = np.array([b[0][0] for b in bounds])
        hi = np.array([b[1][0] for b in bounds])
        shown = np.maximum(rate, 1e-7)
        ax.errorbar(x, shown, yerr=[shown - np.maximum(lo, 1e-7), np.maximum(hi, 1e-7) - shown],
                    fmt="o", ms=4, capsize=3, label=f"{label} at {t:g}, measured")
        lowest = min(lowest, float(np.maximum(lo, 1e-7).min()))
    if target is not None:
        ax.axhline(target, color="0.3", ls=":", lw=0.9, label=f"target FPIR {target:.3g}")
        lowest = min(lowest, target)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(max(1e-7, lowest / 3), 1.05)
    ax.set_xlabel("watchlist size (people enrolled)")
    ax.set_ylabel("FPIR (searches of non-listed people with a candidate)")
    ax.set_title("false-positive identification rate against watchlist size", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def html_page(title: str, intro: str, summary: Sequence[str], sections: Sequence[str],
              figures: Sequence[tuple[str, Figure | None]], notes: Sequence[str]) -> str:
    """The page: ``intro`` and ``sections`` are HTML (escape their text yourself); ``summary``
    and ``notes`` are plain text; each figure is embedded as a base64 PNG."""
    e = html.escape
    items = "\n".join(f"<li>{e(s)}</li>" for s in summary)
    figs = "\n".join(
        f'<figure><img alt="{e(caption)}" src="data:image/png;base64,{png_base64(fig)}">'
        f"<figcaption>{e(caption)}</figcaption></figure>"
        for caption, fig in figures if fig is not None)
    note_items = "\n".join(f"<li>{e(n)}</li>" for n in notes) or "<li>none</li>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{e(title)}</title>
<style>body{{font-family:sans-serif;max-width:64em;margin:2em auto;line-height:1.4}}
table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #ccc;padding:.2em .5em;
text-align:right}}td:first-child{{text-align:left}}img{{max-width:100%}}
figcaption{{font-size:.9em;color:#444}}</style></head><body>
<h1>{e(title)}</h1>
{intro}
<h2>Summary</h2><ul>
{items}
</ul>
{''.join(sections)}
<h2>Figures</h2>
{figs}
<h2>Notes</h2><ul>
{note_items}
</ul>
</body></html>
"""


def write_page(path: Path, page: str) -> Path:
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path

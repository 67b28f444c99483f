"""ROC and DET curves as a PNG, drawn with matplotlib's Agg canvas (no display, no pyplot)."""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from openlfr.evaluation import metrics as m

_DET_TICKS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6)
_DET_MAX = 0.6


def _probit(p: npt.ArrayLike, lo: float) -> m.FloatArray:
    """Normal deviate of probabilities clipped into [lo, 1 - lo] (0 and 1 have none)."""
    nd = NormalDist()
    clipped = np.clip(np.asarray(p, dtype=np.float64), lo, 1.0 - lo)
    return np.array([nd.inv_cdf(float(v)) for v in clipped], dtype=np.float64)


def _percent(p: float) -> str:
    return f"{p * 100:g}%"


def plot_roc_det(
    scores: npt.ArrayLike, labels: npt.ArrayLike, path: Path, title: str = ""
) -> Path:
    """Write ROC (TAR vs FAR, log FAR axis) and DET (FRR vs FAR, normal-deviate axes) curves
    side by side to ``path`` as a PNG. Failed pairs (NaN scores) are left out."""
    path = Path(path)
    s, y = m.scored(scores, labels)
    roc = m.roc_curve(s, y)
    area = m.auc(roc.far, roc.tar)
    eer = m.eer(s, y)
    n_pos, n_neg = int(y.sum()), int((~y).sum())

    fig = Figure(figsize=(11, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax_roc, ax_det = fig.subplots(1, 2)

    floor = 0.5 / n_neg
    far_plot = np.maximum(roc.far, floor)
    ax_roc.plot(far_plot, roc.tar, lw=1.8, label=f"ROC (AUC = {area:.4f})")
    ax_roc.set_xscale("log")
    ax_roc.set_xlim(floor, 1.0)
    ax_roc.set_ylim(max(0.0, float(roc.tar[roc.far >= floor].min()) - 0.02)
                    if np.any(roc.far >= floor) else 0.0, 1.005)
    for target, style in ((0.001, ":"), (0.01, "--")):
        if target >= floor:
            ax_roc.axvline(target, color="grey", ls=style, lw=0.8,
                           label=f"FAR = {_percent(target)}")
    ax_roc.set_xlabel(f"false accept rate (FAR, {n_neg} mismatched pairs)")
    ax_roc.set_ylabel(f"true accept rate (TAR, {n_pos} matched pairs)")
    ax_roc.set_title("ROC")
    ax_roc.grid(True, which="both", alpha=0.3)
    ax_roc.legend(loc="lower right", fontsize=8)

    lo = 0.5 / max(min(n_pos, n_neg), 1)
    x = _probit(roc.far, lo)
    z = _probit(roc.frr, lo)
    ax_det.plot(x, z, lw=1.8, label="DET")
    ex = _probit([eer.far], lo)[0]
    ax_det.plot([ex], [ex], "o", ms=6, label=f"EER = {_percent(round(eer.far, 5))}")
    # Error rates above 60 % are of no interest: they would squash the useful corner.
    lim = (float(_probit([lo], lo)[0]), float(_probit([_DET_MAX], lo)[0]))
    ticks = [t for t in _DET_TICKS if lo <= t <= _DET_MAX]
    for setter, lim_setter in ((ax_det.set_xticks, ax_det.set_xlim),
                               (ax_det.set_yticks, ax_det.set_ylim)):
        setter(_probit(ticks, lo), [_percent(t) for t in ticks])
        lim_setter(*lim)
    ax_det.plot(lim, lim, color="grey", lw=0.6, ls="--")
    ax_det.set_xlabel("false accept rate (normal deviate scale)")
    ax_det.set_ylabel("false reject rate (normal deviate scale)")
    ax_det.set_title("DET")
    ax_det.grid(True, alpha=0.3)
    ax_det.legend(loc="upper right", fontsize=8)
    for label in ax_det.get_xticklabels():
        label.set_rotation(45)

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path

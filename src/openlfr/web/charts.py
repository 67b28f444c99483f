"""The public summary's chart: a matplotlib SVG rendered on the server (text as paths, so no
font is fetched by the browser)."""

from __future__ import annotations

import io

from matplotlib.figure import Figure
from matplotlib.ticker import StrMethodFormatter

from openlfr.transparency.public import YearSummary

MONTH_ABBR = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
              "Dec"]
#: Colour-blind-safe (Okabe–Ito) colours, distinct in grey too.
COLOURS = {"confirmed": "#0072B2", "false": "#D55E00", "no_action": "#999999",
           "pending": "#F0E442", "faces": "#56B4E9"}


def summary_svg(summary: YearSummary) -> bytes:
    fig = Figure(figsize=(9, 5.4), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1, 1.3])
    x = list(range(12))
    faces = [m.faces_seen for m in summary.months]
    top.bar(x, faces, color=COLOURS["faces"], edgecolor="#1f4e79",
            linewidth=[0.6 if v else 0 for v in faces])
    top.set_ylabel("faces seen")
    top.set_title(f"Live facial recognition in {summary.year}: faces seen and alerts by month",
                  loc="left", fontsize=11)
    base = [0] * 12
    for key, label, attr in (("confirmed", "confirmed", "confirmed"),
                             ("false", "false alert", "false_alerts"),
                             ("no_action", "no action", "no_action"),
                             ("pending", "not yet decided", "pending")):
        values = [getattr(m, attr) for m in summary.months]
        bottom.bar(x, values, bottom=base, color=COLOURS[key], label=label,
                   edgecolor="#333333", linewidth=[0.4 if v else 0 for v in values])
        base = [b + v for b, v in zip(base, values, strict=True)]
    bottom.set_ylabel("alerts")
    bottom.set_xticks(x, MONTH_ABBR)
    bottom.legend(loc="upper left", ncols=4, frameon=False, fontsize=9)
    bottom.set_ylim(0, max(1, max(base)) * 1.35)
    top.set_ylim(0, max(1, max(m.faces_seen for m in summary.months)) * 1.1)
    for ax in (top, bottom):
        ax.spines[["top", "right"]].set_visible(False)
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.grid(axis="y", color="#dddddd", linewidth=0.6)
        ax.set_axisbelow(True)
    top.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    fig.align_ylabels([top, bottom])
    out = io.BytesIO()
    fig.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()

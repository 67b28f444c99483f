"""The public summary's chart: a matplotlib SVG rendered on the server (text as paths, so no
font is fetched by the browser).

Drawing takes about a second of CPU, and anyone may ask for it: :class:`ChartCache` draws a
chart once per set of figures (the key is a digest of everything the chart is drawn from, so
new figures give a new drawing), keeps the last few, and draws on a single worker thread of its
own, so anonymous callers never hold more than one thread, and never the ones serving the
cameras and the console.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

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
    people = [m.people_passing for m in summary.months]
    top.bar(x, people, color=COLOURS["faces"], edgecolor="#1f4e79",
            linewidth=[0.6 if v else 0 for v in people])
    top.set_ylabel("people passing")
    top.set_title(f"Live facial recognition in {summary.year}: people passing and alerts by "
                  "month",
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
    top.set_ylim(0, max(1, max(people)) * 1.1)
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


#: The figures of a month the chart draws (hours, which grow while a deployment runs, are not).
DRAWN = ("people_passing", "confirmed", "false_alerts", "no_action", "pending")


def figures_key(summary: YearSummary) -> str:
    """A digest of everything the chart is drawn from: the year and the drawn figures."""
    data = json.dumps([summary.year, [[getattr(m, f) for f in DRAWN] for m in summary.months]])
    return hashlib.sha256(data.encode()).hexdigest()


class ChartCache:
    """Drawings by figures: the same figures are drawn once (concurrent requests share one
    drawing), on one worker thread; at most ``size`` drawings are kept."""

    def __init__(self, draw: Callable[[YearSummary], bytes] = summary_svg,
                 size: int = 16) -> None:
        self._draw = draw
        self._size = size
        self._cache: OrderedDict[str, Future[bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self.draws = 0  # how many drawings were made (for tests and figures)

    def _drawn(self, summary: YearSummary) -> bytes:
        self.draws += 1
        return self._draw(summary)

    def future(self, summary: YearSummary) -> Future[bytes]:
        key = figures_key(summary)
        with self._lock:
            fut = self._cache.get(key)
            if fut is not None and not (fut.done() and fut.exception() is not None):
                self._cache.move_to_end(key)
                return fut
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1,
                                                    thread_name_prefix="openlfr-chart")
            fut = self._executor.submit(self._drawn, summary)
            self._cache[key] = fut
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
            return fut

    async def svg(self, summary: YearSummary) -> bytes:
        """The chart of ``summary`` (drawn now on the chart thread, or from the cache)."""
        return await asyncio.wrap_future(self.future(summary))

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None

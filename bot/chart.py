"""The digest's chart: a PNG in three panels, drawn with matplotlib's headless backend.

1. The backlog: requests open at the end of each of the last 30 days (today: now).
2. Requests opened and completed each day, every bar's value written on it. The axis is scaled
   to the ordinary days: a day busier than three times the fourth-busiest is cut at that scale,
   hatched, its value written above it. One busy day then neither flattens the rest nor is
   hidden, where a log scale would make every day's height hard to read.
3. Open requests by deadline: already overdue, then each of the next 14 days.

Every bar and point is dated, today included, and the title states the on-time share as the
digest's text does.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from datetime import date

import matplotlib

matplotlib.use("Agg")  # no display: the image goes to Slack
from matplotlib.axes import Axes  # noqa: E402 - after choosing the backend
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from services.scheduled.digest import Digest  # noqa: E402

OPENED, COMPLETED, BACKLOG = "#4a7fb5", "#5aa469", "#6c5b7b"
OVERDUE, DUE_WEEK, DUE_LATER = "#c0392b", "#e08e0b", "#9aa5b1"
STANDOUT = 3  # a day counts as exceptional above this multiple of the ordinary days' peak
ORDINARY = 10  # ... where the ordinary days are all but the busiest tenth


def digest_chart(digest: Digest) -> bytes:
    png = io.BytesIO()
    digest_figure(digest).savefig(png, format="png")
    return png.getvalue()


def digest_figure(digest: Digest) -> Figure:
    # Figure, not pyplot: no global state, safe from the scheduler's threads.
    figure = Figure(figsize=(9, 8.6), dpi=100, layout="constrained")
    backlog, flow, due = figure.subplots(3, 1, height_ratios=(1, 1.4, 1))
    share = textwrap.fill(digest.on_time_summary, 110)
    figure.suptitle(f"DSR digest, {digest.day:%a %d %b %Y}\n{share}", fontsize=9)
    days = [d.day for d in digest.series]
    _backlog(backlog, digest)
    _flow(flow, digest)
    _dated(backlog, days, digest.day)
    _dated(flow, days, digest.day)
    _due(due, digest)
    return figure


def day_label(day: date) -> str:
    return f"{day:%a %d %b}"


def _dated(axes: Axes, days: Sequence[date], today: date, first: str | None = None) -> None:
    """A tick and a date under every bar or point; today's in bold."""
    labels = ([first] if first else []) + [day_label(d) for d in days]
    axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6.5)
    for tick, day in zip(axes.get_xticklabels()[len(labels) - len(days):], days, strict=True):
        if day == today:
            tick.set_fontweight("bold")
    axes.set_xlim(-0.6, len(labels) - 0.4)


def _style(axes: Axes, title: str) -> None:
    axes.set_title(title, fontsize=8.5, loc="left")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.tick_params(axis="y", labelsize=7)
    axes.spines[["top", "right"]].set_visible(False)


def _backlog(axes: Axes, digest: Digest) -> None:
    values = [d.backlog for d in digest.series]
    axes.plot(range(len(values)), values, color=BACKLOG, marker="o", markersize=2.5, linewidth=1.2)
    for index in {0, len(values) - 1}:  # where it started and where it stands today
        axes.annotate(f"{values[index]:,}", (index, values[index]), textcoords="offset points",
                      xytext=(0, 4), ha="center", fontsize=7, color=BACKLOG)
    axes.margins(y=0.25)
    _style(axes, f"Open requests at the end of each day (backlog), last {len(values)} days")


def standout_cap(peaks: Sequence[int]) -> float | None:
    """The axis top for the ordinary days, when some day stands out far above them; else None."""
    ordered = sorted(peaks, reverse=True)
    ordinary = ordered[len(ordered) // ORDINARY] if ordered else 0
    return 1.3 * ordinary if ordinary and ordered[0] > STANDOUT * ordinary else None


def _flow(axes: Axes, digest: Digest) -> None:
    opened = [d.opened for d in digest.series]
    completed = [d.completed for d in digest.series]
    cap = standout_cap([max(o, c) for o, c in zip(opened, completed, strict=True)])
    width = 0.42
    for values, shift, color, label in ((opened, -width / 2, OPENED, "opened"),
                                        (completed, width / 2, COMPLETED, "completed")):
        heights = [min(v, cap) if cap else v for v in values]
        bars = axes.bar([p + shift for p in range(len(values))], heights, width, color=color,
                        label=label)
        for bar, value in zip(bars, values, strict=True):
            if cap and value > cap:  # cut at the ordinary days' scale: hatched, value in bold
                bar.set_hatch("////")
                bar.set_edgecolor("white")
        for text in axes.bar_label(bars, labels=[_value(v, cap) for v in values], fontsize=5.5,
                                   padding=1):
            if len(text.get_text()) > 2:  # upright: side by side, longer ones would run together
                text.set_rotation(90)
    top = cap or max([*opened, *completed, 1])
    axes.set_ylim(0, top * (1.3 if top >= 100 or cap else 1.18))
    note = " (hatched: cut to keep the other days readable; value on top)" if cap else ""
    _style(axes, f"Requests opened and completed each day, today's so far{note}")
    axes.legend(frameon=False, fontsize=7, loc="upper left", ncols=2)


def _value(value: int, cap: float | None) -> str:
    if not value:
        return ""
    return f"{value:,}▲" if cap and value > cap else f"{value:,}"


def _due(axes: Axes, digest: Digest) -> None:
    days = [d for d, _ in digest.due_soon]
    values = [digest.overdue] + [n for _, n in digest.due_soon]
    week = [OVERDUE] + [DUE_WEEK if (d - digest.day).days <= 7 else DUE_LATER for d in days]
    bars = axes.bar(range(len(values)), values, 0.6, color=week)
    axes.bar_label(bars, labels=[f"{v:,}" for v in values], fontsize=6.5, padding=1)
    axes.set_ylim(0, max([*values, 1]) * 1.2)
    _dated(axes, days, digest.day, first="overdue")
    _style(axes, f"Open requests by deadline: overdue, then due each of the next {len(days)} days "
                 "(orange: within 7 days)")

"""The digest's chart: requests opened and completed per day over 30 days, with the share
completed within the deadline. A PNG, drawn with matplotlib's headless backend."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display: the image goes to Slack
from matplotlib.figure import Figure  # noqa: E402 - after choosing the backend
from matplotlib.ticker import MaxNLocator  # noqa: E402

from services.scheduled.digest import DayCounts  # noqa: E402


def opened_vs_completed(series: Sequence[DayCounts]) -> bytes:
    # Figure, not pyplot: no global state, safe from the scheduler's threads.
    figure = Figure(figsize=(8, 3.2), dpi=100)
    axes = figure.subplots()
    days = [d.day for d in series]
    width = 0.4
    positions = range(len(series))
    axes.bar([p - width / 2 for p in positions], [d.opened for d in series], width,
             label="opened", color="#4a7fb5")
    axes.bar([p + width / 2 for p in positions], [d.completed for d in series], width,
             label="completed", color="#5aa469")
    axes.set_xticks(list(positions)[::5], [f"{d:%d %b}" for d in days][::5])
    axes.set_ylabel("requests")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.spines[["top", "right"]].set_visible(False)
    completed = sum(d.completed for d in series)
    on_time = sum(d.on_time for d in series)
    share = f"{on_time / completed:.0%} completed within the deadline" if completed else "none completed"
    axes.set_title(f"Requests opened and completed, last {len(series)} days ({share})", fontsize=10)
    axes.legend(frameon=False, fontsize=8, loc="upper left")
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png")
    return png.getvalue()

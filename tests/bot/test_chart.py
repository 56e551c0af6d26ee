"""The digest's chart: every day dated, today included; a busy day does not flatten the rest; the
title states the on-time share as the digest's text does."""

from __future__ import annotations

from datetime import date, timedelta

from bot.chart import day_label, digest_chart, digest_figure, standout_cap
from services.scheduled.digest import DayCounts, Digest

TODAY = date(2026, 3, 31)


def _digest(opened=None, completed_on_time=1, overdue=1) -> Digest:
    days = [TODAY - timedelta(days=n) for n in range(29, -1, -1)]
    opened = opened or [2] * 30
    series = [DayCounts(day, o, 1, 1, 10 + n) for n, (day, o) in enumerate(zip(days, opened, strict=True))]
    return Digest(day=TODAY, open_counts={("in_progress", "access"): 39}, due_next_7_days=3,
                  overdue=overdue, completed_last_24h=1, completed_30_days=30, median_days=5.0,
                  p90_days=9.0, completed_on_time=completed_on_time, awaiting_approval=[],
                  series=series, due_soon=[(TODAY + timedelta(days=n), n % 3) for n in range(14)])


def _ticks(axes) -> list[str]:
    return [t.get_text() for t in axes.get_xticklabels()]


def test_every_bar_and_point_is_dated_today_included() -> None:
    digest = _digest()
    backlog, flow, due = digest_figure(digest).axes
    days = [day_label(d.day) for d in digest.series]
    assert _ticks(backlog) == _ticks(flow) == days
    assert days[-1] == "Tue 31 Mar"
    assert _ticks(due) == ["overdue"] + [day_label(TODAY + timedelta(days=n)) for n in range(14)]
    assert [t.get_fontweight() for t in flow.get_xticklabels()][-1] == "bold"
    # The backlog line and the due bars carry their values.
    assert [line.get_ydata().tolist() for line in backlog.get_lines()] == [[10 + n for n in range(30)]]
    assert [t.get_text() for t in due.texts][:3] == ["1", "0", "1"]


def test_the_title_states_the_share_the_text_states() -> None:
    figure = digest_figure(_digest(completed_on_time=29, overdue=2))
    title = figure.get_suptitle()
    assert "Tue 31 Mar 2026" in title
    assert "91% within the deadline: 29 of 32" in title  # 30 completed, 2 open past the deadline


def test_a_busy_day_is_cut_and_written_so_quiet_days_stay_readable() -> None:
    opened = [1, 2, 3, 4] * 7 + [120, 2]
    _, flow, _ = digest_figure(_digest(opened=opened)).axes
    top = flow.get_ylim()[1]
    assert top < 10  # the ordinary days fill the panel; a 4 reaches at least 40 % of it
    assert 4 / top > 0.4
    labels = [t.get_text() for t in flow.texts]
    assert "120▲" in labels and "4" in labels
    cut = [bar for bar in flow.patches if bar.get_hatch()]
    assert len(cut) == 1 and cut[0].get_height() < top


def test_no_day_is_cut_when_none_stands_out() -> None:
    assert standout_cap([5, 4, 6, 3, 5, 4, 6, 5, 4, 3]) is None
    assert standout_cap([0] * 30) is None
    assert standout_cap([]) is None
    assert standout_cap([100] + [3] * 29) == 3 * 1.3
    _, flow, _ = digest_figure(_digest(opened=[20, 2] * 15)).axes
    assert flow.get_ylim()[1] >= 20 and not [bar for bar in flow.patches if bar.get_hatch()]


def test_the_chart_is_a_png() -> None:
    assert digest_chart(_digest()).startswith(b"\x89PNG\r\n\x1a\n")

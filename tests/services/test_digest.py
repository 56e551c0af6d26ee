"""The digest's on-time share, backlog and local days, on both databases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from services.scheduled import digest
from services.vocabulary import RequestStatus
from tests.services.test_scheduled import UTC_ZONE, make, move, set_due

S = RequestStatus
NOW = datetime(2026, 3, 31, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def _build(session_factory, now=NOW, zone=UTC_ZONE) -> digest.Digest:
    with session_factory() as session:
        return digest.build(session, now=now, zone=zone)


def _completed(session_factory, received: datetime, closed: datetime) -> int:
    request_id = make(session_factory, received, S.PENDING_APPROVAL, S.APPROVED, S.IN_PROGRESS)
    move(session_factory, request_id, closed, S.COMPLETED)
    return request_id


def test_late_and_overdue_requests_count_against_the_on_time_share(session_factory) -> None:
    _completed(session_factory, NOW - 10 * DAY, NOW - 5 * DAY)  # GDPR: due in a month
    assert _build(session_factory).on_time_share == 1.0

    overdue = make(session_factory, NOW - 40 * DAY, S.PENDING_APPROVAL)
    set_due(session_factory, overdue, NOW.date() - 2 * DAY)
    figures = _build(session_factory)
    assert (figures.completed_on_time, figures.completed_30_days, figures.overdue) == (1, 1, 1)
    assert figures.on_time_share == 0.5
    assert figures.on_time_summary == (
        "50% within the deadline: 1 of 2 (completed on time, out of the 1 completed in the last "
        "30 days and the 1 open past the deadline)")

    late = _completed(session_factory, NOW - 45 * DAY, NOW - 3 * DAY)
    set_due(session_factory, late, NOW.date() - 4 * DAY)
    assert _build(session_factory).on_time_share == pytest.approx(1 / 3)


def test_nothing_to_count_says_so(session_factory) -> None:
    figures = _build(session_factory)
    assert figures.on_time_share is None
    assert figures.on_time_summary == "none completed in the last 30 days, and none open past its deadline"
    assert [d.day for d in figures.series] == [NOW.date() - n * DAY for n in range(29, -1, -1)]
    assert {d.backlog for d in figures.series} == {0}
    assert figures.due_soon == [(NOW.date() + n * DAY, 0) for n in range(14)]


def test_days_are_the_teams_local_days_across_a_clock_change(session_factory) -> None:
    """Berlin moves to summer time on 29 March 2026: the days are counted at local midnights."""
    berlin = ZoneInfo("Europe/Berlin")
    make(session_factory, datetime(2026, 3, 28, 23, 30, tzinfo=UTC))  # 00:30 CET on the 29th
    make(session_factory, datetime(2026, 3, 29, 21, 30, tzinfo=UTC))  # 23:30 CEST on the 29th
    make(session_factory, datetime(2026, 3, 29, 22, 30, tzinfo=UTC))  # 00:30 CEST on the 30th
    # Completed at 00:15 on the 31st in Berlin (still the 30th in UTC), a day after its deadline.
    late = _completed(session_factory, datetime(2026, 3, 20, 10, 0, tzinfo=UTC),
                      datetime(2026, 3, 30, 22, 15, tzinfo=UTC))
    set_due(session_factory, late, date(2026, 3, 30))
    figures = _build(session_factory, now=datetime(2026, 3, 31, 8, 0, tzinfo=UTC), zone=berlin)
    by_day = {d.day: d for d in figures.series}
    assert [by_day[date(2026, 3, n)].opened for n in (28, 29, 30, 31)] == [0, 2, 1, 0]
    assert (by_day[date(2026, 3, 31)].completed, by_day[date(2026, 3, 31)].on_time) == (1, 0)
    assert by_day[date(2026, 3, 20)].opened == 1
    assert figures.completed_on_time == 0
    # The backlog: the completed one was open from the 20th to the 30th, the others since theirs.
    assert [by_day[date(2026, 3, n)].backlog for n in (19, 20, 28, 29, 30, 31)] == [0, 1, 1, 3, 4, 3]


def test_the_digest_counts_from_indexes_alone(engine, session_factory) -> None:
    """Every figure over the requests reads an index, not the table (the requests pending
    approval aside: they are joined with the audit trail), so it stays fast at millions."""
    executed: list[tuple[str, object]] = []

    def record(_conn, _cursor, statement, params, _context, _executemany) -> None:
        executed.append((statement, params))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        _build(session_factory)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    counted = [(s, p) for s, p in executed if "dsr_request" in s and "audit_event" not in s]
    assert len(counted) == 5
    postgres = engine.dialect.name == "postgresql"
    used = set()
    with engine.connect() as conn:
        if postgres:  # an empty table would be scanned
            conn.exec_driver_sql("SET enable_seqscan = off")
        for statement, params in counted:
            plan = [str(row[0] if postgres else row[3]) for row in conn.exec_driver_sql(
                f"{'EXPLAIN' if postgres else 'EXPLAIN QUERY PLAN'} {statement}", params)]
            reads = [line for line in plan if "dsr_request" in line]
            assert reads, plan
            if not postgres:
                assert all("USING COVERING INDEX" in line for line in reads), plan
            used |= {word for line in reads for word in line.split() if word.startswith("ix_")}
    assert {"ix_dsr_request_open_due", "ix_dsr_request_closed", "ix_dsr_request_received_at"} <= used

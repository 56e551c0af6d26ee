"""The managers' daily digest. Every figure is a SQL aggregate (counts grouped by day, by
deadline, by hours taken), so neither time nor memory grows with the requests closed long ago.

Local days are worked out in SQL by comparing with the window's local midnights, computed here
with zoneinfo: exact across daylight-saving changes, and the same SQL on SQLite and PostgreSQL,
whose time-zone functions differ.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, select

from services import audit_anchor
from storage.models import (
    IS_OPEN,
    OPEN_STATUSES,
    AuditEvent,
    DsrRequest,
    RequestStatus,
    format_reference,
)
from storage.queries import EFFECTIVE_DUE

WINDOW_DAYS = 30
DUE_SOON_DAYS = 14  # the chart's look ahead; the text counts the next 7 days
CLOSED_STATUSES = tuple(s.value for s in RequestStatus if s.value not in OPEN_STATUSES)


@dataclass(frozen=True)
class DayCounts:
    day: date
    opened: int
    completed: int
    on_time: int  # of those completed that day, by their (extended) deadline
    backlog: int = 0  # open at the end of the day (today: now)


@dataclass(frozen=True)
class Digest:
    day: date
    open_counts: dict[tuple[str, str], int]  # (status, type) -> open requests
    due_next_7_days: int
    overdue: int  # open past their (extended) deadline
    completed_last_24h: int
    completed_30_days: int
    median_days: float | None  # time to complete, requests completed in the last 30 days
    p90_days: float | None
    completed_on_time: int  # of those, completed by their (extended) deadline
    awaiting_approval: list[tuple[str, float]]  # (reference, days waiting), over a day
    series: list[DayCounts] = field(default_factory=list)  # the last 30 days, oldest first
    due_soon: list[tuple[date, int]] = field(default_factory=list)  # open, due each of the next 14 days
    # The audit chain's head, (seq, hash): posted daily, the team's Slack history holds anchors
    # that no one with only database access can rewrite (see services/audit_anchor.py).
    chain_head: tuple[int, str] | None = None

    @property
    def open_total(self) -> int:
        return sum(self.open_counts.values())

    @property
    def on_time_base(self) -> int:
        """What the on-time share counts against: every request completed in the last 30 days
        and every open one already past its deadline (a late one counts against it either way)."""
        return self.completed_30_days + self.overdue

    @property
    def on_time_share(self) -> float | None:
        return self.completed_on_time / self.on_time_base if self.on_time_base else None

    @property
    def on_time_summary(self) -> str:
        """The share and what it counts, in words (the digest's text and its chart say the same)."""
        if not self.on_time_base:
            return "none completed in the last 30 days, and none open past its deadline"
        return (f"{self.on_time_share:.0%} within the deadline: {self.completed_on_time:,} of "
                f"{self.on_time_base:,} (completed on time, out of the {self.completed_30_days:,} "
                f"completed in the last 30 days and the {self.overdue:,} open past the deadline)")


def local_day_due(now: datetime, zone: ZoneInfo, at: time) -> date | None:
    """Today's date in `zone` once its local time has reached `at`, else None."""
    local = now.astimezone(zone)
    return local.date() if local.time() >= at else None


def build(session: Session, *, now: datetime, zone: ZoneInfo) -> Digest:
    today = now.astimezone(zone).date()
    days = [today - timedelta(days=n) for n in range(WINDOW_DAYS - 1, -1, -1)]
    since = datetime.combine(days[0], time(), zone)
    open_counts = {(str(status), str(kind)): count for status, kind, count in session.exec(
        select(DsrRequest.status, DsrRequest.type, sa.func.count())
        .where(IS_OPEN).group_by(DsrRequest.status, DsrRequest.type))}
    opened = _opened(session, days, zone, since)
    closed, completed, on_time = _closed(session, days, zone, since)
    due = _due(session, today)
    hours = _hours_to_complete(session, since)
    head = audit_anchor.head(session)
    return Digest(
        day=today,
        open_counts=open_counts,
        due_next_7_days=sum(n for day, n in due.items() if today <= day <= today + timedelta(days=7)),
        overdue=sum(n for day, n in due.items() if day < today),
        completed_last_24h=session.exec(
            select(sa.func.count()).select_from(DsrRequest)
            .where(DsrRequest.status == RequestStatus.COMPLETED,
                   DsrRequest.closed_at >= now - timedelta(hours=24))).one(),
        completed_30_days=sum(completed.values()),
        median_days=_percentile_days(hours, 0.5),
        p90_days=_percentile_days(hours, 0.9),
        completed_on_time=sum(on_time.values()),
        awaiting_approval=_awaiting_approval(session, now),
        series=_series(days, opened, closed, completed, on_time, sum(open_counts.values())),
        due_soon=[(day, due.get(day, 0))
                  for day in (today + timedelta(days=n) for n in range(DUE_SOON_DAYS))],
        chain_head=(head.seq, head.hash) if head else None,
    )


def _local_day(column: sa.ColumnElement[datetime], days: list[date],
               zone: ZoneInfo) -> sa.ColumnElement[date]:
    """The local day of `column` within `days` (NULL outside), in SQL."""
    return sa.case(*((column < datetime.combine(day + timedelta(days=1), time(), zone),
                      sa.literal(day, sa.Date)) for day in days), else_=sa.null())


def _opened(session: Session, days: list[date], zone: ZoneInfo, since: datetime) -> Counter[date]:
    received = (select(_local_day(DsrRequest.received_at, days, zone).label("day"))
                .where(DsrRequest.received_at >= since).subquery())
    return Counter(dict(session.exec(select(received.c.day, sa.func.count())
                                     .group_by(received.c.day)).all()))


def _closed(session: Session, days: list[date], zone: ZoneInfo,
            since: datetime) -> tuple[Counter[date], Counter[date], Counter[date]]:
    """Per local day: requests closed (completed, rejected or canceled: they leave the backlog),
    those completed, and those completed on or before their deadline day."""
    rows = (select(_local_day(DsrRequest.closed_at, days, zone).label("day"),
                   DsrRequest.status, EFFECTIVE_DUE.label("due"))
            # status first: the (status, closed_at) index
            .where(DsrRequest.status.in_(CLOSED_STATUSES), DsrRequest.closed_at >= since).subquery())
    is_completed = rows.c.status == RequestStatus.COMPLETED
    closed, completed, on_time = Counter(), Counter(), Counter()
    for day, all_, done, in_time in session.exec(
        select(rows.c.day, sa.func.count(), sa.func.sum(sa.case((is_completed, 1), else_=0)),
               sa.func.sum(sa.case((sa.and_(is_completed, rows.c.due >= rows.c.day), 1), else_=0)))
        .group_by(rows.c.day)
    ):
        closed[day], completed[day], on_time[day] = all_, done, in_time
    return closed, completed, on_time


def _due(session: Session, today: date) -> dict[date, int]:
    """Open requests by (extended) deadline: those already past it, and the next 14 days'."""
    return dict(session.exec(
        select(EFFECTIVE_DUE, sa.func.count()).select_from(DsrRequest)
        .where(IS_OPEN, today + timedelta(days=DUE_SOON_DAYS) > EFFECTIVE_DUE)
        .group_by(EFFECTIVE_DUE)).all())


def _series(days: list[date], opened: Counter[date], closed: Counter[date], completed: Counter[date],
            on_time: Counter[date], open_now: int) -> list[DayCounts]:
    """The window's days, oldest first. The backlog walks back from today's open count: at the
    end of the day before, it held what was open, less what that day opened, plus what it closed."""
    backlog, series = open_now, []
    for day in reversed(days):
        series.append(DayCounts(day, opened[day], completed[day], on_time[day], backlog))
        backlog += closed[day] - opened[day]
    return series[::-1]


def _seconds_between(session: Session, start: sa.ColumnElement[datetime],
                     end: sa.ColumnElement[datetime]) -> sa.ColumnElement[int]:
    if session.get_bind().dialect.name == "sqlite":  # UTC text: julianday is its fastest reading
        return sa.cast(sa.func.round((sa.func.julianday(end) - sa.func.julianday(start)) * 86400),
                       sa.Integer)
    return sa.cast(sa.func.floor(sa.extract("epoch", end - start)), sa.BigInteger)


def _hours_to_complete(session: Session, since: datetime) -> Counter[int]:
    """Time to complete, in whole hours, of the requests completed since `since`: a bounded
    histogram, grouped in SQL."""
    taken = (_seconds_between(session, DsrRequest.received_at, DsrRequest.closed_at) // 3600)
    rows = (select(taken.label("hours")).where(DsrRequest.status == RequestStatus.COMPLETED,
                                               DsrRequest.closed_at >= since).subquery())
    return Counter(dict(session.exec(select(rows.c.hours, sa.func.count())
                                     .group_by(rows.c.hours)).all()))


def _percentile_days(hours: Counter[int], share: float) -> float | None:
    """The nearest-rank percentile of the histogram, in days (hour resolution)."""
    total = sum(hours.values())
    if not total:
        return None
    rank = max(1, -(-total * share // 1))  # ceil(total * share)
    seen = 0
    for hour in sorted(hours):
        seen += hours[hour]
        if seen >= rank:
            return round(hour / 24, 1)
    raise AssertionError("unreachable: rank <= total")


def _awaiting_approval(session: Session, now: datetime, limit: int = 20) -> list[tuple[str, float]]:
    """Requests pending approval for more than a day, longest first: since when is the time of
    their last status change in the audit trail."""
    since = sa.func.max(AuditEvent.occurred_at).label("since")
    rows = session.exec(
        select(DsrRequest.id, since)
        .join(AuditEvent, AuditEvent.request_id == DsrRequest.id)
        .where(DsrRequest.status == RequestStatus.PENDING_APPROVAL,
               AuditEvent.action == "request.status_changed")
        .group_by(DsrRequest.id)
        .having(since < now - timedelta(days=1))
        .order_by(since).limit(limit))
    return [(format_reference(request_id), round((now - at).total_seconds() / 86400, 1))
            for request_id, at in rows]

"""The managers' daily digest. Every figure is computed by the database (counts by day, by
deadline, by status and type; the percentiles of hours taken over their histogram), read from
indexes alone (storage.models: the open requests' partial index, the closed requests' index), so
neither time nor memory grows with the requests closed long ago.

Local days are the window's local midnights, computed here with zoneinfo and bound as a table of
days: each day's count is an index range between two midnights, exact across daylight-saving
changes, and the same SQL on SQLite and PostgreSQL, whose time-zone functions differ.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, select

from services import audit_anchor
from services.vocabulary import OPEN_STATUSES, RequestStatus, format_reference
from storage.models import IS_OPEN, AuditEvent, DsrRequest
from storage.queries import EFFECTIVE_DUE
from storage.types import UTCDateTime

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
    """The figures as of `now`, days counted in `zone`: six statements, each built once (per
    dialect) and bound here to the window's dates, none reading more than bounded rows back."""
    today = now.astimezone(zone).date()
    days = [today - timedelta(days=n) for n in range(WINDOW_DAYS - 1, -1, -1)]
    midnights = [datetime.combine(day, time(), zone) for day in (*days, today + timedelta(days=1))]
    params = {"day_ago": now - timedelta(days=1), "soon": today + timedelta(days=DUE_SOON_DAYS),
              **{f"day{n}": day for n, day in enumerate(days)},
              **{f"midnight{n}": midnight for n, midnight in enumerate(midnights)}}
    dialect = session.get_bind().dialect.name

    def run(statement: sa.Select[Any]) -> sa.CursorResult[Any]:
        return session.connection().execute(statement, params)

    open_counts = {(str(status), str(kind)): n for status, kind, n in run(_open_counts())}
    counts = [_Counts(*row) for row in run(_day_counts())]
    due: dict[date, int] = dict(run(_due()).all())
    median_hours, p90_hours = run(_percentile_hours(dialect)).one()
    head = audit_anchor.head(session)
    return Digest(
        day=today,
        open_counts=open_counts,
        due_next_7_days=sum(n for day, n in due.items() if today <= day <= today + timedelta(days=7)),
        overdue=sum(n for day, n in due.items() if day < today),
        completed_last_24h=run(_completed_since()).scalar_one(),
        completed_30_days=sum(c.completed for c in counts),
        median_days=None if median_hours is None else round(median_hours / 24, 1),
        p90_days=None if p90_hours is None else round(p90_hours / 24, 1),
        completed_on_time=sum(c.on_time for c in counts),
        awaiting_approval=[(format_reference(request_id), round((now - at).total_seconds() / 86400, 1))
                           for request_id, at in run(_awaiting_approval())],
        series=_series(counts, sum(open_counts.values())),
        due_soon=[(day, due.get(day, 0))
                  for day in (today + timedelta(days=n) for n in range(DUE_SOON_DAYS))],
        chain_head=(head.seq, head.hash) if head else None,
    )


def _on(name: str) -> sa.BindParameter[date]:
    return sa.bindparam(name, type_=sa.Date)


def _at(name: str) -> sa.BindParameter[datetime]:
    return sa.bindparam(name, type_=UTCDateTime)


@functools.cache
def _open_counts() -> sa.Select[Any]:
    """Open requests by (status, type), counted in the open requests' partial index."""
    return (select(DsrRequest.status, DsrRequest.type, sa.func.count())
            .where(IS_OPEN).group_by(DsrRequest.status, DsrRequest.type))


@dataclass(frozen=True)
class _Counts:
    day: date
    opened: int
    closed: int  # completed, rejected or canceled: they leave the backlog
    completed: int
    on_time: int  # completed on or before their (extended) deadline day


@functools.cache
def _day_counts() -> sa.Select[Any]:
    """Each local day's counts, oldest first: a table of the days (:day<n>) and their bounds
    (:midnight<n>, local midnights in UTC), each count an index range of its day."""
    window = sa.union_all(*(
        select(_on(f"day{n}").label("day"), _at(f"midnight{n}").label("start"),
               _at(f"midnight{n + 1}").label("end"))
        for n in range(WINDOW_DAYS))).cte("window")

    def count(*where: sa.ColumnElement[bool]) -> sa.ScalarSelect[int]:
        return select(sa.func.count()).select_from(DsrRequest).where(*where).scalar_subquery()

    def closed_that_day(*statuses: str) -> tuple[sa.ColumnElement[bool], ...]:
        # status first, then the day's range: the (status, closed_at, ...) index
        return (DsrRequest.status.in_(statuses), DsrRequest.closed_at >= window.c.start,
                DsrRequest.closed_at < window.c.end)

    completed = closed_that_day(RequestStatus.COMPLETED)
    return select(
        window.c.day,
        count(DsrRequest.received_at >= window.c.start, DsrRequest.received_at < window.c.end),
        count(*closed_that_day(*CLOSED_STATUSES)),
        count(*completed),
        count(*completed, window.c.day <= EFFECTIVE_DUE),
    ).order_by(window.c.day)


@functools.cache
def _due() -> sa.Select[Any]:
    """Open requests by (extended) deadline: those already past it, and those before :soon."""
    return (select(EFFECTIVE_DUE, sa.func.count()).select_from(DsrRequest)
            .where(IS_OPEN, _on("soon") > EFFECTIVE_DUE).group_by(EFFECTIVE_DUE))


def _series(counts: list[_Counts], open_now: int) -> list[DayCounts]:
    """The window's days, oldest first. The backlog walks back from today's open count: at the
    end of the day before, it held what was open, less what that day opened, plus what it closed."""
    backlog, series = open_now, []
    for c in reversed(counts):
        series.append(DayCounts(c.day, c.opened, c.completed, c.on_time, backlog))
        backlog += c.closed - c.opened
    return series[::-1]


def _seconds_between(dialect: str, start: sa.ColumnElement[datetime],
                     end: sa.ColumnElement[datetime]) -> sa.ColumnElement[int]:
    if dialect == "sqlite":  # UTC text: julianday is its fastest reading
        return sa.cast(sa.func.round((sa.func.julianday(end) - sa.func.julianday(start)) * 86400),
                       sa.Integer)
    return sa.cast(sa.func.floor(sa.extract("epoch", end - start)), sa.BigInteger)


@functools.cache
def _percentile_hours(dialect: str) -> sa.Select[Any]:
    """The median and the 90th percentile (nearest rank) of the whole hours taken to complete
    the requests completed in the window: a histogram of hours and its running count, in SQL."""
    hours = (_seconds_between(dialect, DsrRequest.received_at, DsrRequest.closed_at) // 3600
             ).label("hours")
    histogram = (select(hours, sa.func.count().label("n"))
                 .where(DsrRequest.status == RequestStatus.COMPLETED,
                        DsrRequest.closed_at >= _at("midnight0"))
                 .group_by(hours).subquery())
    running = select(histogram.c.hours,
                     sa.func.sum(histogram.c.n).over(order_by=histogram.c.hours).label("seen"),
                     sa.func.sum(histogram.c.n).over().label("total")).subquery()

    def nearest_rank(part: int, whole: int) -> sa.ColumnElement[int]:
        """The first hour at which the running count reaches part/whole of the total."""
        return sa.func.min(sa.case((running.c.seen * whole >= running.c.total * part,
                                    running.c.hours)))

    return select(nearest_rank(1, 2), nearest_rank(9, 10))


@functools.cache
def _completed_since() -> sa.Select[Any]:
    return (select(sa.func.count()).select_from(DsrRequest)
            .where(DsrRequest.status == RequestStatus.COMPLETED,
                   DsrRequest.closed_at >= _at("day_ago")))


@functools.cache
def _awaiting_approval(limit: int = 20) -> sa.Select[Any]:
    """Requests pending approval since before :day_ago, longest first: since when is the time
    of their last status change in the audit trail."""
    since = sa.func.max(AuditEvent.occurred_at).label("since")
    return (select(DsrRequest.id, since)
            .join(AuditEvent, AuditEvent.request_id == DsrRequest.id)
            .where(DsrRequest.status == RequestStatus.PENDING_APPROVAL,
                   AuditEvent.action == "request.status_changed")
            .group_by(DsrRequest.id)
            .having(since < _at("day_ago"))
            .order_by(since, DsrRequest.id).limit(limit))

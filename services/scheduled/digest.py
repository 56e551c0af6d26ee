"""The managers' daily digest: figures computed in the database or streamed through bounded
counters, so neither time nor memory grows with the requests closed long ago."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, select

from services import audit_anchor
from storage.models import IS_OPEN, AuditEvent, DsrRequest, RequestStatus, format_reference
from storage.queries import EFFECTIVE_DUE

WINDOW_DAYS = 30


@dataclass(frozen=True)
class DayCounts:
    day: date
    opened: int
    completed: int
    on_time: int


@dataclass(frozen=True)
class Digest:
    day: date
    open_counts: dict[tuple[str, str], int]  # (status, type) -> open requests
    due_next_7_days: int
    overdue: int
    completed_last_24h: int
    completed_30_days: int
    median_days: float | None  # time to complete, requests completed in the last 30 days
    p90_days: float | None
    on_time_share: float | None  # of those, completed by their (extended) deadline
    awaiting_approval: list[tuple[str, float]]  # (reference, days waiting), over a day
    series: list[DayCounts] = field(default_factory=list)  # the last 30 days, oldest first
    # The audit chain's head, (seq, hash): posted daily, the team's Slack history holds anchors
    # that no one with only database access can rewrite (see services/audit_anchor.py).
    chain_head: tuple[int, str] | None = None

    @property
    def open_total(self) -> int:
        return sum(self.open_counts.values())


def local_day_due(now: datetime, zone: ZoneInfo, at: time) -> date | None:
    """Today's date in `zone` once its local time has reached `at`, else None."""
    local = now.astimezone(zone)
    return local.date() if local.time() >= at else None


def build(session: Session, *, now: datetime, zone: ZoneInfo) -> Digest:
    today = now.astimezone(zone).date()
    since = datetime.combine(today - timedelta(days=WINDOW_DAYS - 1), time(), zone)
    open_counts = {(str(status), str(kind)): count for status, kind, count in session.exec(
        select(DsrRequest.status, DsrRequest.type, sa.func.count())
        .where(IS_OPEN).group_by(DsrRequest.status, DsrRequest.type))}

    def count_open(*where: sa.ColumnElement[bool]) -> int:
        return session.exec(select(sa.func.count()).select_from(DsrRequest)
                            .where(IS_OPEN, *where)).one()

    opened: Counter[date] = Counter()
    for received_at in session.exec(select(DsrRequest.received_at)
                                      .where(DsrRequest.received_at >= since)
                                      .execution_options(yield_per=500)):
        opened[received_at.astimezone(zone).date()] += 1

    completed: Counter[date] = Counter()
    on_time: Counter[date] = Counter()
    hours: Counter[int] = Counter()  # time to complete, in whole hours: a bounded histogram
    last_24h = 0
    for received_at, closed_at, due_on in session.exec(
        select(DsrRequest.received_at, DsrRequest.closed_at, EFFECTIVE_DUE)
        .where(DsrRequest.status == RequestStatus.COMPLETED, DsrRequest.closed_at >= since)
        .execution_options(yield_per=500)
    ):
        closed_day = closed_at.astimezone(zone).date()
        completed[closed_day] += 1
        on_time[closed_day] += closed_day <= due_on
        hours[int((closed_at - received_at).total_seconds() // 3600)] += 1
        last_24h += closed_at >= now - timedelta(hours=24)

    series = [DayCounts(day, opened[day], completed[day], on_time[day])
              for day in (today - timedelta(days=n) for n in range(WINDOW_DAYS - 1, -1, -1))]
    done = sum(completed.values())
    head = audit_anchor.head(session)
    return Digest(
        day=today,
        open_counts=open_counts,
        due_next_7_days=count_open(today <= EFFECTIVE_DUE, today + timedelta(days=7) >= EFFECTIVE_DUE),
        overdue=count_open(today > EFFECTIVE_DUE),
        completed_last_24h=last_24h,
        completed_30_days=done,
        median_days=_percentile_days(hours, 0.5),
        p90_days=_percentile_days(hours, 0.9),
        on_time_share=sum(on_time.values()) / done if done else None,
        awaiting_approval=_awaiting_approval(session, now),
        series=series,
        chain_head=(head.seq, head.hash) if head else None,
    )


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


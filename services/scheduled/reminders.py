"""Deadline reminders and the daily overdue escalation.

A request due within the largest offset (default 7, 3, 1 days) is reminded once per offset: at
each sweep it is owed the tightest offset it has reached, so a sweep that missed days (the bot
was down) sends one late reminder rather than a burst. CCPA-type rules also get one reminder
before the acknowledgement deadline while receipt is not yet confirmed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Row, Select
from sqlmodel import Session, select

from services.notify import Event
from services.scheduled import dispatch
from services.vocabulary import RequestStatus, format_reference
from storage.db import SessionFactory
from storage.models import IS_OPEN, IS_UNACKNOWLEDGED, Dispatch, DsrRequest
from storage.queries import EFFECTIVE_DUE

BATCH = 100  # owed reminders read at a time
ACK_PREFIX = "ack:"
STATUS_WORDS = {status: status.value.replace("_", " ") for status in RequestStatus}


@dataclass(frozen=True)
class Reminder:
    key: str
    event: Event


def owed_reminders(session: Session, *, today: date, offsets: Sequence[int], ack_days: int,
                   claims_live_since: datetime) -> Iterator[Reminder]:
    """The reminders open requests are owed today that are neither sent nor claimed since
    `claims_live_since` (an older claim's process died mid-send: `dispatch.once` takes it over),
    BATCH at a time in request order (memory stays flat however many are owed)."""
    ordered = tuple(sorted(set(offsets)))
    dates = {"today": today, "ack_last": today + timedelta(days=ack_days),
             **{f"within{k}": today + timedelta(days=k) for k in ordered}}
    after: tuple[int, str] = (0, "")
    statement, batch = _owed_statement(ordered, BATCH), BATCH
    while True:
        rows = session.connection().execute(
            statement, {**dates, "after_id": after[0], "after_prefix": after[1],
                        "live_since": claims_live_since}).all()
        for row in rows:
            yield _reminder(row, today)
        if len(rows) < batch:
            return
        after = (rows[-1].id, rows[-1].prefix)


@functools.cache
def _owed_statement(offsets: tuple[int, ...], batch: int) -> Select[Any]:
    """A batch of the owed reminders neither sent nor claimed since :live_since, after
    (:after_id, :after_prefix), the dates as parameters: built once, a sweep only binds them.

    The sent and the claimed are left out in the database: a reminder's key is its kind's prefix
    (`due:3d:`, `ack:`) and the request's reference, and a request's claims are few, found by
    request_id. So a steady-state sweep reads no row it would not send, however many are due.
    """
    def on(name: str) -> sa.BindParameter[date]:
        return sa.bindparam(name, type_=sa.Date)

    # the tightest offset a deadline has reached: due in `days` <= k days
    tighter = [(on(f"within{k}") >= EFFECTIVE_DUE, f"due:{k}d:") for k in offsets[:-1]]
    widest = sa.literal(f"due:{offsets[-1]}d:")
    due_prefix = sa.case(*tighter, else_=widest) if tighter else widest
    columns = (DsrRequest.id, DsrRequest.type, DsrRequest.jurisdiction_code, DsrRequest.status,
               DsrRequest.simulation)
    owed = sa.union_all(
        select(*columns, due_prefix.label("prefix"), EFFECTIVE_DUE.label("due_on")).where(
            IS_OPEN, on("today") <= EFFECTIVE_DUE, on(f"within{offsets[-1]}") >= EFFECTIVE_DUE),
        select(*columns, sa.literal(ACK_PREFIX).label("prefix"), DsrRequest.ack_due_on).where(
            IS_UNACKNOWLEDGED, DsrRequest.ack_due_on >= on("today"),
            DsrRequest.ack_due_on <= on("ack_last")),
    ).subquery("owed")
    order = (owed.c.id, owed.c.prefix)
    return (select(owed)
            .where(sa.tuple_(*order) > sa.tuple_(sa.bindparam("after_id", type_=sa.Integer),
                                                 sa.bindparam("after_prefix", type_=sa.String)),
                   ~sa.exists().where(
                       Dispatch.request_id == owed.c.id, Dispatch.key.startswith(owed.c.prefix),
                       sa.or_(Dispatch.sent_at.is_not(None), Dispatch.claimed_at >= sa.bindparam(
                           "live_since", type_=Dispatch.__table__.c.claimed_at.type))))
            .order_by(*order).limit(batch))


def _reminder(row: Row[Any], today: date) -> Reminder:
    reference = format_reference(row.id)
    if row.prefix == ACK_PREFIX:
        return Reminder(f"{ACK_PREFIX}{reference}", Event(
            kind="reminder.ack", request_id=row.id, reference=reference, simulation=row.simulation,
            text=f"{reference} ({row.type}, {row.jurisdiction_code}): confirm receipt to the "
                 f"subject by {row.due_on:%a %d %b %Y}, then record it with `/dsr ack {reference}`."))
    days = (row.due_on - today).days
    when = "today" if days == 0 else f"in {days} day{'s' if days != 1 else ''}"
    return Reminder(f"{row.prefix}{reference}", Event(
        kind="reminder.due", request_id=row.id, reference=reference, simulation=row.simulation,
        text=f"{reference} ({row.type}, {row.jurisdiction_code}) is due {when}, on "
             f"{row.due_on:%a %d %b %Y}. Status: {STATUS_WORDS[row.status]}."))


def sweep(sessions: SessionFactory, send: Callable[[Event], object], *, today: date,
          offsets: Sequence[int], ack_days: int, owner: str, now: datetime,
          lease: timedelta = dispatch.LEASE) -> int:
    """Send each owed reminder neither sent nor claimed within `lease`; returns how many this call
    sent. Read in batches, so memory does not grow with the requests due; a reminder another
    replica claims meanwhile is left to it (`dispatch.once`)."""
    with sessions() as session:  # a read snapshot; the claims commit on their own connections
        return sum(dispatch.once(sessions, r.key, lambda r=r: send(r.event), owner=owner, now=now,
                                 request_id=r.event.request_id, lease=lease)
                   for r in owed_reminders(session, today=today, offsets=offsets, ack_days=ack_days,
                                           claims_live_since=now - lease))


@dataclass(frozen=True)
class Overdue:
    reference: str
    type: str
    jurisdiction: str
    status: str
    requester: str
    days_overdue: int


def overdue(session: Session, *, today: date, limit: int = 40) -> tuple[int, list[Overdue]]:
    """How many open requests are past their deadline, and the `limit` most overdue."""
    where = (IS_OPEN, today > EFFECTIVE_DUE)
    count = session.exec(select(sa.func.count()).select_from(DsrRequest).where(*where)).one()
    rows = session.exec(
        select(DsrRequest.id, DsrRequest.type, DsrRequest.jurisdiction_code, DsrRequest.status,
               DsrRequest.requester_slack_id, EFFECTIVE_DUE)
        .where(*where).order_by(EFFECTIVE_DUE, DsrRequest.id).limit(limit))
    return count, [Overdue(format_reference(i), kind, law, STATUS_WORDS[status], requester,
                           (today - due_on).days)
                   for i, kind, law, status, requester, due_on in rows]

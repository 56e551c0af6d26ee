"""Deadline reminders and the daily overdue escalation.

A request due within the largest offset (default 7, 3, 1 days) is reminded once per offset: at
each sweep it is owed the tightest offset it has reached, so a sweep that missed days (the bot
was down) sends one late reminder rather than a burst. CCPA-type rules also get one reminder
before the acknowledgement deadline while receipt is not yet confirmed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import islice

from sqlalchemy import func
from sqlmodel import Session, select

from services.notify import Event
from services.scheduled import dispatch
from storage.db import SessionFactory
from storage.models import IS_OPEN, IS_UNACKNOWLEDGED, DsrRequest, RequestStatus, format_reference
from storage.queries import EFFECTIVE_DUE

BATCH = 100  # owed reminders read, checked and sent at a time
STATUS_WORDS = {status: status.value.replace("_", " ") for status in RequestStatus}


@dataclass(frozen=True)
class Reminder:
    key: str
    event: Event


def owed_reminders(session: Session, *, today: date, offsets: Sequence[int],
                   ack_days: int) -> Iterator[Reminder]:
    """Every reminder open requests are owed today, sent or not (`sweep` filters the sent)."""
    last = today + timedelta(days=max(offsets))
    columns = (DsrRequest.id, DsrRequest.type, DsrRequest.jurisdiction_code, DsrRequest.status,
               DsrRequest.simulation)
    due = (select(*columns, EFFECTIVE_DUE).where(IS_OPEN, today <= EFFECTIVE_DUE, last >= EFFECTIVE_DUE)
           .execution_options(yield_per=BATCH))
    for request_id, kind, law, status, simulation, due_on in session.exec(due):
        days = (due_on - today).days
        offset = min(k for k in offsets if k >= days)
        reference = format_reference(request_id)
        when = "today" if days == 0 else f"in {days} day{'s' if days != 1 else ''}"
        yield Reminder(f"due:{offset}d:{reference}", Event(
            kind="reminder.due", request_id=request_id, reference=reference, simulation=simulation,
            text=f"{reference} ({kind}, {law}) is due {when}, on {due_on:%a %d %b %Y}. "
                 f"Status: {STATUS_WORDS[status]}."))
    acks = select(*columns, DsrRequest.ack_due_on).where(
        IS_UNACKNOWLEDGED, DsrRequest.ack_due_on >= today,
        DsrRequest.ack_due_on <= today + timedelta(days=ack_days)).execution_options(yield_per=BATCH)
    for request_id, kind, law, _status, simulation, ack_due_on in session.exec(acks):
        reference = format_reference(request_id)
        yield Reminder(f"ack:{reference}", Event(
            kind="reminder.ack", request_id=request_id, reference=reference, simulation=simulation,
            text=f"{reference} ({kind}, {law}): confirm receipt to the subject by "
                 f"{ack_due_on:%a %d %b %Y}, then record it with `/dsr ack {reference}`."))


def sweep(sessions: SessionFactory, send: Callable[[Event], object], *, today: date,
          offsets: Sequence[int], ack_days: int, owner: str, now: datetime,
          lease: timedelta = dispatch.LEASE) -> int:
    """Send each owed reminder not sent yet; returns how many this call sent. Streamed in
    batches, so memory does not grow with the requests due."""
    sent = 0
    with sessions() as session:  # a read snapshot; the claims commit on their own connections
        owed = owed_reminders(session, today=today, offsets=offsets, ack_days=ack_days)
        while batch := list(islice(owed, BATCH)):
            done = dispatch.sent_keys(sessions, (r.key for r in batch))
            sent += sum(dispatch.once(sessions, r.key, lambda r=r: send(r.event), owner=owner,
                                      now=now, request_id=r.event.request_id, lease=lease)
                        for r in batch if r.key not in done)
    return sent


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
    count = session.exec(select(func.count()).select_from(DsrRequest).where(*where)).one()
    rows = session.exec(
        select(DsrRequest.id, DsrRequest.type, DsrRequest.jurisdiction_code, DsrRequest.status,
               DsrRequest.requester_slack_id, EFFECTIVE_DUE)
        .where(*where).order_by(EFFECTIVE_DUE, DsrRequest.id).limit(limit))
    return count, [Overdue(format_reference(i), kind, law, STATUS_WORDS[status], requester,
                           (today - due_on).days)
                   for i, kind, law, status, requester, due_on in rows]

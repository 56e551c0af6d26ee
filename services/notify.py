"""How services tell people what happened, without knowing about Slack.

Progress is written as `Notice` rows in the transaction of the change it reports (`enqueue`), and
the status-update job (`deliver`) posts them: all of a request's pending notices in one batch,
so a long erasure makes a few thread messages, not one per call, and a crash loses none.
`bot/` implements Notifier with slack_sdk; tests use a recorder. Event texts never hold a
subject's personal data: they name the request, the system and what was done.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any, Protocol

import sqlalchemy as sa
from sqlmodel import Session, select

from services.vocabulary import format_reference
from storage.db import SessionFactory, transaction
from storage.models import DsrRequest, Notice

log = logging.getLogger(__name__)

# Kinds that change what the request's own message shows (its status).
STATUS_KINDS = frozenset({"request.started", "request.completed", "request.needs_attention"})


@dataclass(frozen=True)
class Event:
    # request.started, step.done, step.waiting, request.completed, request.needs_attention,
    # reminder.due, reminder.ack
    kind: str
    request_id: int
    reference: str
    simulation: bool
    text: str
    step_id: int | None = None


class Notifier(Protocol):
    def publish(self, events: Sequence[Event]) -> None:
        """Tell people about `events`, all of one request, oldest first."""
        ...


class RecordingNotifier:
    """Keeps every batch: for tests, the offline demo and the command line."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []

    def publish(self, events: Sequence[Event]) -> None:
        self.batches.append(list(events))

    @property
    def events(self) -> list[Event]:
        return [event for batch in self.batches for event in batch]


class LoggingNotifier:
    """Writes each event to the log: for a worker without Slack."""

    def __init__(self) -> None:
        self.log = logging.getLogger("dsr_desk.events")

    def publish(self, events: Sequence[Event]) -> None:
        for event in events:
            marker = " [simulation]" if event.simulation else ""
            self.log.info("%s %s%s: %s", event.reference, event.kind, marker, event.text)


def enqueue(session: Session, request_id: int, kind: str, text: str, at: datetime,
            step_id: int | None = None) -> None:
    """Queue a notice for the request's thread, in the transaction that made the change it
    reports (the status-update job posts it)."""
    session.add(Notice(request_id=request_id, kind=kind, text=text[:2000], step_id=step_id,
                       created_at=at))


def deliver(sessions: SessionFactory, notifier: Notifier, *, owner: str, now: datetime,
            lease_seconds: float = 300.0, limit: int = 500) -> int:
    """Post pending notices, a batch per request; returns how many were posted.

    Notices are claimed first (a replica's claim is respected until it expires), marked sent
    after the post, and released when the post fails, so a later run tries again.
    """
    stale = now - timedelta(seconds=lease_seconds)
    claimable = sa.and_(Notice.sent_at.is_(None),
                        sa.or_(Notice.claimed_at.is_(None), Notice.claimed_at < stale))
    with transaction(sessions) as session:
        busy = select(Notice.request_id).where(Notice.sent_at.is_(None),
                                               Notice.claimed_at >= stale)
        query = (select(Notice.id).where(claimable, Notice.request_id.not_in(busy))
                 .order_by(Notice.id).limit(limit))
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = list(session.exec(query))
        if not ids:
            return 0
        session.execute(sa.update(Notice).where(Notice.id.in_(ids), claimable)
                        .values(claimed_by=owner, claimed_at=now)
                        .execution_options(synchronize_session=False))
    with sessions() as session:
        claimed = list(session.exec(
            select(Notice, DsrRequest.simulation).join(DsrRequest)
            .where(Notice.id.in_(ids), Notice.claimed_by == owner, Notice.claimed_at == now,
                   Notice.sent_at.is_(None)).order_by(Notice.request_id, Notice.id)))
    posted = 0
    for request_id, rows in groupby(claimed, key=lambda row: row[0].request_id):
        pairs = list(rows)
        batch = [notice for notice, _ in pairs]
        events = [Event(kind=n.kind, request_id=request_id, reference=format_reference(request_id),
                        simulation=simulation, text=n.text, step_id=n.step_id)
                  for n, simulation in pairs]
        try:
            notifier.publish(events)
        except Exception as exc:  # noqa: BLE001 - released for a later run; logged without data
            log.error("could not post %d notice(s) for %s: %s", len(batch),
                      format_reference(request_id), type(exc).__name__)
            _settle(sessions, batch, owner, sent_at=None)
            continue
        _settle(sessions, batch, owner, sent_at=now)
        posted += len(batch)
    return posted


def _settle(sessions: SessionFactory, batch: list[Notice], owner: str,
            sent_at: datetime | None) -> None:
    values: dict[str, Any] = {"sent_at": sent_at} if sent_at else {"claimed_by": None,
                                                                   "claimed_at": None}
    with transaction(sessions) as session:
        session.execute(sa.update(Notice)
                        .where(Notice.id.in_([n.id for n in batch]), Notice.claimed_by == owner)
                        .values(**values).execution_options(synchronize_session=False))

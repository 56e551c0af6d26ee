"""The audit trail: append-only, hash-chained.

Each event's hash covers its own content and the previous event's hash, so altering, deleting or
reordering an event breaks the chain from that point on; `verify()` finds the first break. The
chain head row is locked by every appender, so concurrent writers (threads, replicas) queue
instead of forking the chain, and it records the tail, so that cutting events off the end is
caught too. Details must never hold a subject's personal data: they describe what happened.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, select

from storage.models import AuditChainHead, AuditEvent

GENESIS_HASH = "0" * 64


def event_hash(event: AuditEvent) -> str:
    """SHA-256 of the event's content and the previous event's hash, canonically serialised."""
    canonical = json.dumps(
        {
            "seq": event.seq,
            "occurred_at": event.occurred_at.isoformat(),
            "actor": event.actor,
            "action": event.action,
            "request_id": event.request_id,
            "details": event.details,
            "prev_hash": event.prev_hash,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def record(
    session: Session,
    *,
    action: str,
    actor: str,
    at: datetime,
    request_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction (it commits or rolls back with the change)."""
    if at.tzinfo is None:
        raise ValueError("naive datetime: audit times must be timezone-aware")
    at = at.astimezone(UTC)  # hashed as stored: in UTC
    # Round-trip through JSON so that what we hash is exactly what the database gives back.
    clean_details = json.loads(json.dumps(details or {}, default=str))
    head = session.exec(
        select(AuditChainHead)
        .where(AuditChainHead.id == 1)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    event = AuditEvent(
        seq=head.last_seq + 1,
        occurred_at=at,
        actor=actor,
        action=action,
        request_id=request_id,
        details=clean_details,
        prev_hash=head.last_hash,
        hash="",
    )
    event.hash = event_hash(event)
    head.last_seq, head.last_hash, head.updated_at = event.seq, event.hash, at
    session.add(event)
    session.add(head)
    session.flush()
    return event


@dataclass(frozen=True)
class Verification:
    checked: int
    last_hash: str
    problem: str | None = None  # names the first bad event

    @property
    def ok(self) -> bool:
        return self.problem is None


def _describe(event: AuditEvent) -> str:
    return f"audit event #{event.seq} ({event.action} at {event.occurred_at.isoformat()})"


def verify_events(events: Iterable[AuditEvent], head: AuditChainHead | None) -> Verification:
    """Walk the chain in order; report the first event that does not fit."""
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    for event in events:
        if event.seq != expected_seq:
            return Verification(checked, prev_hash, f"audit event #{expected_seq} is missing (deleted)")
        if event.prev_hash != prev_hash:
            return Verification(
                checked, prev_hash,
                f"{_describe(event)}: does not follow event #{event.seq - 1} "
                "(events were reordered, deleted or inserted)",
            )
        if event_hash(event) != event.hash:
            return Verification(checked, prev_hash, f"{_describe(event)}: content was altered")
        prev_hash, expected_seq, checked = event.hash, expected_seq + 1, checked + 1
    if head is None:
        return Verification(checked, prev_hash, "the audit chain head row is missing")
    if (head.last_seq, head.last_hash) != (checked, prev_hash):
        return Verification(
            checked, prev_hash,
            f"audit event #{checked + 1} is missing: the chain head records {head.last_seq} "
            "events (events were deleted from the end)",
        )
    return Verification(checked, prev_hash)


def verify(session: Session) -> Verification:
    events = session.exec(
        select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=1000)
    )
    head = session.get(AuditChainHead, 1)
    return verify_events(events, head)

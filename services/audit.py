"""The audit trail: append-only, hash-chained.

Each event's hash covers its own content and the previous event's hash, so altering, deleting or
reordering an event breaks the chain from that point on; `verify()` finds the first break. The
chain head row is locked by every appender, so concurrent writers (threads, replicas) queue
instead of forking the chain, and it records the tail, so that cutting events off the end is
caught too. An event is chained when its transaction commits, not when it is recorded: the head
is then the last row the transaction locks, so a transaction that records an event, then locks a
request row, cannot deadlock with one that locked that row, then records (PostgreSQL aborted one
of two workers that way); and the lock is held for the commit only. Whoever can delete events
can also rewind that row, so the head is published outside the database as well
(`services.audit_anchor`), and the trail is checked against it.
Details must never hold a subject's personal data: they describe what happened.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from sqlalchemy import event as orm_event
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session, select

from services.vocabulary import format_reference
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


PENDING = "dsr_audit_pending"  # session.info: the events recorded, chained at commit


def record(
    session: Session,
    *,
    action: str,
    actor: str,
    at: datetime,
    request_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one event in the caller's transaction: it is chained when the transaction commits,
    and dropped with it if it rolls back."""
    if at.tzinfo is None:
        raise ValueError("naive datetime: audit times must be timezone-aware")
    # Round-trip through JSON so that what we hash is exactly what the database gives back.
    clean_details = json.loads(json.dumps(details or {}, default=str))
    session.info.setdefault(PENDING, []).append(AuditEvent(
        occurred_at=at.astimezone(UTC),  # hashed as stored: in UTC
        actor=actor, action=action, request_id=request_id, details=clean_details,
        prev_hash="", hash=""))


@orm_event.listens_for(OrmSession, "before_commit")
def _chain_pending(session: OrmSession) -> None:
    """Chains the transaction's events in the order they were recorded, under the head's lock."""
    events = session.info.pop(PENDING, None)
    if not events:
        return
    head = session.execute(
        select(AuditChainHead)
        .where(AuditChainHead.id == 1)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()
    for event in events:
        event.seq, event.prev_hash = head.last_seq + 1, head.last_hash
        event.hash = event_hash(event)
        head.last_seq, head.last_hash, head.updated_at = event.seq, event.hash, event.occurred_at
        session.add(event)
    session.add(head)
    session.flush()


@orm_event.listens_for(OrmSession, "after_transaction_end")
def _drop_pending(session: OrmSession, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # rolled back or closed: its events go with it
        session.info.pop(PENDING, None)


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


EXPORT_FORMAT = "dsr-desk.audit-export"
EXPORT_VERSION = 1
EXPORT_FIELDS = ("seq", "occurred_at", "actor", "action", "reference", "request_id", "details",
                 "prev_hash", "hash")


def iso_z(moment: datetime) -> str:
    """ISO 8601 in UTC with a trailing Z; `datetime.fromisoformat` reads it back."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def compact_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def export_rows(
    session: Session, *, since: datetime, until: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """The events that occurred in [since, until), in chain (seq) order, read 1,000 at a time.

    Each row keeps its prev_hash and hash, so a window cut from the middle of the chain can still
    be checked: every row's prev_hash is the previous row's hash, and `event_hash` recomputes it.
    """
    if since.tzinfo is None or (until is not None and until.tzinfo is None):
        raise ValueError("naive datetime: export bounds must be timezone-aware")
    query = select(
        AuditEvent.seq, AuditEvent.occurred_at, AuditEvent.actor, AuditEvent.action,
        AuditEvent.request_id, AuditEvent.details, AuditEvent.prev_hash, AuditEvent.hash,
    ).where(AuditEvent.occurred_at >= since)
    if until is not None:
        query = query.where(AuditEvent.occurred_at < until)
    # Plain rows, not entities: nothing is kept in the session, so memory stays flat.
    for seq, occurred_at, actor, action, request_id, details, prev_hash, hash_ in session.exec(
        query.order_by(AuditEvent.seq).execution_options(yield_per=1000)
    ):
        yield {
            "seq": seq,
            "occurred_at": iso_z(occurred_at),
            "actor": actor,
            "action": action,
            "reference": "" if request_id is None else format_reference(request_id),
            "request_id": request_id,
            "details": details,
            "prev_hash": prev_hash,
            "hash": hash_,
        }


@dataclass(frozen=True)
class ExportSummary:
    exported: int
    first_seq: int | None
    last_seq: int | None
    verification: Verification  # of the whole chain, not only the exported window
    head_seq: int | None  # as the chain head row records it
    head_hash: str | None

    def chain(self) -> dict[str, Any]:
        return {
            "verified": self.verification.ok,
            "problem": self.verification.problem,
            "checked": self.verification.checked,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "exported": self.exported,
        }


def write_export(
    session: Session, out: TextIO, *, fmt: str, since: datetime, until: datetime | None,
    generated_at: datetime,
) -> ExportSummary:
    """Write the events of [since, until) as CSV or as one JSON document, a row at a time, then
    verify the whole chain: JSON states the result after the events; for CSV the caller does.

    Give it a session that reads one snapshot, so that the events and the check agree.
    """
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(EXPORT_FIELDS)

        def write(row: dict[str, Any]) -> None:
            row["details"] = compact_json(row["details"])
            writer.writerow([row[field] for field in EXPORT_FIELDS])
    elif fmt == "json":
        header = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "since": iso_z(since),
            "until": iso_z(until) if until else None,
            "generated_at": iso_z(generated_at),
        }
        # One document, written piece by piece: the events are never all in memory.
        out.write("{" + "".join(f"{json.dumps(k)}: {json.dumps(v)}, " for k, v in header.items()))
        out.write('"events": [')

        def write(row: dict[str, Any]) -> None:
            out.write(("\n" if exported == 0 else ",\n") + json.dumps(row, ensure_ascii=False))
    else:
        raise ValueError(f"unknown export format {fmt!r}: csv or json")

    exported, first_seq, last_seq = 0, None, None
    for row in export_rows(session, since=since, until=until):
        write(row)
        if first_seq is None:
            first_seq = row["seq"]
        exported, last_seq = exported + 1, row["seq"]
    verification = verify(session)
    head = session.get(AuditChainHead, 1)
    summary = ExportSummary(exported, first_seq, last_seq, verification,
                            head.last_seq if head else None, head.last_hash if head else None)
    if fmt == "json":
        out.write(("\n" if exported else "") + '], "chain": ' + json.dumps(summary.chain()) + "}\n")
    return summary

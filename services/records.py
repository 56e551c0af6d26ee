"""The compliance record of a finished request: what was asked, by whom, who decided, what was
done where and when, and the audit-chain hash that anchors it all in the trail.

`build_record` reads it from the database once the request is completed, rejected or canceled;
`record_json` serialises it (stable key order, ISO 8601 UTC times) and `services.record_pdf`
lays it out for people. The record goes to Slack threads and auditors, so the subject appears
only masked: identifiers through `services.subjects.mask`, and free text (identity
verification, reasons) with any of the subject's values or anything shaped like an email
address or a phone number replaced. `check_anchor` later tells whether the trail still holds
the record's anchor event unchanged and the whole chain verifies.

People (the requester, approvers, whoever extended, changed a plan line or acted in the trail)
keep their Slack ids in the fields that name them, as the audit trail holds them; `people` maps
those ids to the names Slack showed when the record was made (`services.labels.People`), so an
auditor outside Slack can read them, and a later rename does not change a made record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlmodel import Session, select

from services import audit
from services.errors import InvalidRequest
from services.export_store import ExportStore
from services.exports import ExportFile, read_package
from services.labels import People, is_user_id, person
from services.lifecycle import TERMINAL
from services.requests import find_request
from services.subjects import Identifier, mask
from services.vocabulary import IdentifierKind, RequestStatus
from storage.models import (
    Approval,
    AuditChainHead,
    AuditEvent,
    ComplianceRecordRow,
    DsrRequest,
    ExecutionStep,
    PlanItem,
    RequestSystem,
    StepAttempt,
    SubjectIdentifier,
)
from storage.queries import get_jurisdiction

RECORD_FORMAT = "dsr-desk.compliance-record"
RECORD_VERSION = 2  # 2: `people`, the names of the people the record names
RECORD_ACTOR = "dsr-desk"


@dataclass(frozen=True)
class JurisdictionInfo:
    code: str
    name: str
    legal_basis: str


@dataclass(frozen=True)
class Extension:
    due_on: date
    reason: str
    extended_at: datetime | None
    extended_by: str | None


@dataclass(frozen=True)
class MaskedIdentifier:
    kind: str
    purpose: str
    value: str  # masked: never the clear value
    system: str | None


@dataclass(frozen=True)
class SystemScope:
    system: str
    confirmed_records: tuple[str, ...]  # the vendors' record ids, without labels
    confirmed_at: datetime | None


@dataclass(frozen=True)
class Decision:
    approver: str
    decision: str  # approve or reject
    decided_at: datetime
    reason: str | None
    plan_sha256: str | None = None  # an erasure: the reviewed plan this decision saw


@dataclass(frozen=True)
class PlanLine:
    """One line of an erasure's approved plan and what reading the vendor back showed."""

    system: str
    kind: str
    record_id: str
    how_found: tuple[str, ...]  # masked
    proposed: str
    action: str
    changed_by: str | None
    done_at: datetime | None
    verified: str | None  # None: not done, or not shown by the vendor (never claimed)


@dataclass(frozen=True)
class Attempt:
    worker: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    note: str | None


@dataclass(frozen=True)
class Step:
    position: int
    system: str
    action: str
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: str | None
    attempts: tuple[Attempt, ...]


@dataclass(frozen=True)
class TrailEvent:
    seq: int
    occurred_at: datetime
    actor: str
    action: str
    hash: str


@dataclass(frozen=True)
class ChainPoint:
    seq: int
    hash: str


@dataclass(frozen=True)
class ComplianceRecord:
    reference: str
    request_id: int
    type: str
    outcome: str  # completed, rejected or canceled
    simulation: bool
    jurisdiction: JurisdictionInfo
    received_at: datetime
    ack_due_on: date | None
    acknowledged_at: datetime | None
    due_on: date
    extension: Extension | None
    closed_at: datetime
    closed_by: str
    close_reason: str | None
    requester: str  # Slack user id
    identity_verification: str  # redacted
    subject: tuple[MaskedIdentifier, ...]
    systems: tuple[SystemScope, ...]
    decisions: tuple[Decision, ...]
    steps: tuple[Step, ...]
    export_manifest: tuple[ExportFile, ...]
    export_archive_sha256: str | None  # of the zip the subject receives
    exports_purged_at: datetime | None
    trail: tuple[TrailEvent, ...]  # the request's own audit events, in chain order
    anchor: TrailEvent  # the event that closed the request
    chain_head: ChainPoint  # the chain's last event when the record was built
    generated_at: datetime
    plan_sha256: str | None = None  # an erasure: the plan that was approved
    plan: tuple[PlanLine, ...] = ()
    # Slack user id -> the name Slack showed when the record was made (records of version 1
    # have none: they name people by id alone).
    people: dict[str, str] = field(default_factory=dict)

    def who(self, user_id: str | None) -> str:
        """`Display Name (U123)` as the record names them; other actors as they are."""
        return person(user_id, self.people)

    @property
    def effective_due_on(self) -> date:
        return self.extension.due_on if self.extension else self.due_on

    @property
    def on_time(self) -> bool:
        return self.closed_at.date() <= self.effective_due_on


def build_record(session: Session, request_id: int | str, *, exports: ExportStore,
                 now: datetime | None = None, people: People | None = None) -> ComplianceRecord:
    """The record of a finished request. `exports` is the export store, where the manifest of an
    access request's archive is read; `people` names the people in it (without, they keep their
    bare ids). NotFound for an unknown request, InvalidRequest for one that is still open."""
    request = find_request(session, request_id)
    status = RequestStatus(request.status)
    if status not in TERMINAL or request.closed_at is None:
        raise InvalidRequest(
            f"{request.reference} is {status}: a compliance record is made once a request is "
            "completed, rejected or canceled.")
    jurisdiction = get_jurisdiction(session=session, code=request.jurisdiction_code)
    identifiers = _identifiers(session, request)
    known = [i.identifier for i in identifiers]

    events = list(session.exec(select(AuditEvent).where(AuditEvent.request_id == request.id)
                               .order_by(AuditEvent.seq)))
    closing = [e for e in events if e.action == "request.status_changed"
               and (e.details or {}).get("to") in {s.value for s in TERMINAL}]
    if not closing:
        raise InvalidRequest(f"{request.reference} is {status} but the audit trail has no event "
                             "closing it: run `dsr-desk audit verify`.")
    anchor = closing[-1]
    head = session.get(AuditChainHead, 1)
    package = read_package(exports, request.reference)

    record = ComplianceRecord(
        reference=request.reference,
        request_id=request.id,
        type=str(request.type),
        outcome=status.value,
        simulation=request.simulation,
        jurisdiction=JurisdictionInfo(jurisdiction.code, jurisdiction.name, jurisdiction.legal_basis),
        received_at=request.received_at,
        ack_due_on=request.ack_due_on,
        acknowledged_at=request.acknowledged_at,
        due_on=request.due_on,
        extension=Extension(request.extended_due_on, redact(request.extension_reason or "", known),
                            request.extended_at, request.extended_by)
        if request.extended_due_on else None,
        closed_at=request.closed_at,
        closed_by=anchor.actor,
        close_reason=redact(anchor.details.get("reason") or "", known) or None,
        requester=request.requester_slack_id,
        identity_verification=redact(request.identity_verification, known),
        subject=tuple(MaskedIdentifier(str(i.kind), str(i.purpose), mask(i.identifier), i.system)
                      for i in identifiers),
        systems=_systems(session, request),
        decisions=_decisions(session, request, known),
        steps=_steps(session, request),
        export_manifest=package.files if package else (),
        export_archive_sha256=package.sha256 if package else None,
        exports_purged_at=request.exports_purged_at,
        trail=tuple(_trail_event(e) for e in events),
        anchor=_trail_event(anchor),
        chain_head=ChainPoint(head.last_seq, head.last_hash),
        generated_at=(now or datetime.now(UTC)).astimezone(UTC),
        plan_sha256=request.plan_sha256,
        plan=_plan(session, request),
    )
    return dataclasses.replace(record, people=_names(people, _people_in(record)))


@dataclass(frozen=True)
class _StoredIdentifier:
    kind: str
    purpose: str
    value: str
    system: str | None

    @property
    def identifier(self) -> Identifier:
        return Identifier(IdentifierKind(self.kind), self.value, self.system)


def _identifiers(session: Session, request: DsrRequest) -> list[_StoredIdentifier]:
    rows = session.exec(select(SubjectIdentifier).where(SubjectIdentifier.request_id == request.id)
                        .order_by(SubjectIdentifier.id))
    return [_StoredIdentifier(str(r.kind), str(r.purpose), r.value, r.system) for r in rows]


def _systems(session: Session, request: DsrRequest) -> tuple[SystemScope, ...]:
    rows = session.exec(select(RequestSystem).where(RequestSystem.request_id == request.id)
                        .order_by(RequestSystem.id))
    return tuple(SystemScope(r.system, tuple(str(c.get("record_id")) for c in r.confirmed_records or ()),
                             r.confirmed_at) for r in rows)


def _decisions(session: Session, request: DsrRequest, known: list[Identifier]) -> tuple[Decision, ...]:
    rows = session.exec(select(Approval).where(Approval.request_id == request.id).order_by(Approval.id))
    return tuple(Decision(r.approver_slack_id, str(r.decision), r.decided_at,
                          redact(r.reason or "", known) or None, r.plan_sha256) for r in rows)


def _plan(session: Session, request: DsrRequest) -> tuple[PlanLine, ...]:
    rows = session.exec(select(PlanItem).where(PlanItem.request_id == request.id)
                        .order_by(PlanItem.system, PlanItem.kind.desc(), PlanItem.id))
    return tuple(PlanLine(r.system, r.kind, r.record_id, tuple(r.found), str(r.proposed),
                          str(r.action), r.changed_by, r.done_at, r.verified) for r in rows)


def _steps(session: Session, request: DsrRequest) -> tuple[Step, ...]:
    steps = list(session.exec(select(ExecutionStep).where(ExecutionStep.request_id == request.id)
                              .order_by(ExecutionStep.position)))
    attempts: dict[int, list[Attempt]] = {s.id: [] for s in steps}
    if steps:
        for a in session.exec(select(StepAttempt).where(StepAttempt.step_id.in_(list(attempts)))
                              .order_by(StepAttempt.id)):
            attempts[a.step_id].append(Attempt(a.worker, a.started_at, a.finished_at, a.outcome, a.note))
    return tuple(Step(s.position, s.system, s.action, str(s.status), s.started_at, s.finished_at,
                      dict(s.result) if s.result is not None else None, s.error,
                      tuple(attempts[s.id])) for s in steps)


def _people_in(record: ComplianceRecord) -> list[str]:
    """The Slack users the record names, each once, in a stable order."""
    ids = [record.requester, record.closed_by, record.extension and record.extension.extended_by,
           *(d.approver for d in record.decisions), *(p.changed_by for p in record.plan),
           *(e.actor for e in record.trail)]
    return sorted({i for i in ids if is_user_id(i)})


def _names(people: People | None, ids: list[str]) -> dict[str, str]:
    """What `people` can name of `ids`; asked only when there is someone to name."""
    found = people.names(ids) if people is not None and ids else {}
    return {i: found[i] for i in ids if found.get(i)}


def _trail_event(event: AuditEvent) -> TrailEvent:
    return TrailEvent(event.seq, event.occurred_at, event.actor, event.action, event.hash)


_EMAIL = re.compile(r"[^\s@<>()\[\],;:\"']+@[^\s@<>()\[\],;:\"']+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"\+?\d[\d\s().-]{6,}\d")


def redact(text: str, identifiers: list[Identifier]) -> str:
    """Free text fit for the record: the subject's own identifiers, and anything that looks like
    an email address or a phone number, replaced by their masks."""
    for identifier in sorted(identifiers, key=lambda i: len(i.value), reverse=True):
        if len(identifier.value.strip()) >= 3:
            text = re.sub(re.escape(identifier.value.strip()), mask(identifier), text,
                          flags=re.IGNORECASE)
    text = _EMAIL.sub(lambda m: mask(Identifier(IdentifierKind.EMAIL, m.group())), text)
    return _PHONE.sub(lambda m: mask(Identifier(IdentifierKind.PHONE, re.sub(r"[^\d+]", "", m.group()))),
                      text)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def utc_iso(moment: datetime) -> str:
    """`2026-03-02T09:30:00Z`: ISO 8601 in UTC (fractions of a second kept when there are some)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime in a compliance record")
    return audit.iso_z(moment)


def record_dict(record: ComplianceRecord) -> dict[str, Any]:
    body = _plain(dataclasses.asdict(record))
    body.update(format=RECORD_FORMAT, version=RECORD_VERSION,
                effective_due_on=record.effective_due_on.isoformat(), on_time=record.on_time)
    return body


def record_json(record: ComplianceRecord) -> str:
    """The record as JSON: sorted keys, two-space indent, ISO 8601 UTC times; the same record
    always gives the same text."""
    return json.dumps(record_dict(record), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def check_anchor(session: Session, record: ComplianceRecord) -> bool:
    """True if the trail still holds the record's anchor event, and the chain head it saw, with
    the same hashes, and the whole chain verifies."""
    for point in (record.anchor, record.chain_head):
        event = session.get(AuditEvent, point.seq)
        if event is None or event.hash != point.hash:
            return False
    anchor = session.get(AuditEvent, record.anchor.seq)
    if anchor.request_id != record.request_id or audit.event_hash(anchor) != anchor.hash:
        return False
    return audit.verify(session).ok


_EXTRAS = ("format", "version", "effective_due_on", "on_time")


def parse_record(text: str) -> ComplianceRecord:
    """A record from its JSON (a stored one, or a file an auditor hands back)."""
    body = json.loads(text)
    if not isinstance(body, dict) or body.get("format") != RECORD_FORMAT:
        raise InvalidRequest(f"Not a DSR Desk compliance record (expected format {RECORD_FORMAT!r}).")
    try:
        return TypeAdapter(ComplianceRecord).validate_python(
            {k: v for k, v in body.items() if k not in _EXTRAS})
    except ValidationError as exc:
        raise InvalidRequest(f"The compliance record does not parse: {exc.errors()[0]['msg']} "
                             f"at {'.'.join(map(str, exc.errors()[0]['loc']))}.") from None


def store_record(session: Session, record: ComplianceRecord) -> ComplianceRecordRow:
    """Keep the record as made at closing (retention later deletes what it describes)."""
    body = record_json(record)
    row = ComplianceRecordRow(request_id=record.request_id, built_at=record.generated_at,
                              body=body, sha256=hashlib.sha256(body.encode()).hexdigest())
    session.add(row)
    request = session.get(DsrRequest, record.request_id)
    request.recorded_at = record.generated_at
    session.add(request)
    audit.record(session, action="record.made", actor=RECORD_ACTOR, at=record.generated_at,
                 request_id=record.request_id,
                 details={"sha256": row.sha256, "anchor_seq": record.anchor.seq})
    return row


def ensure_record(session: Session, request_id: int | str, *, exports: ExportStore,
                  now: datetime, people: People | None = None) -> ComplianceRecord:
    """The stored record of a finished request, made now if it was not yet (caller commits). A
    stored one is returned as it was made: its names are those of that day."""
    row = session.get(ComplianceRecordRow, find_request(session, request_id).id)
    if row is not None:
        return parse_record(row.body)
    record = build_record(session, request_id, exports=exports, now=now, people=people)
    store_record(session, record)
    return record

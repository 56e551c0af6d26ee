"""Recording a new request: identifiers, systems and deadlines, audited in one transaction."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from services import audit, deadlines
from services.connectors.base import SubjectMatch
from services.errors import InvalidRequest, UnknownJurisdiction
from services.lookup import IdentifierLookup
from services.subjects import Identifier
from services.vocabulary import IdentifierKind, IdentifierPurpose, RequestStatus, RequestType
from storage.models import DsrRequest, RequestSystem, SubjectIdentifier
from storage.queries import get_jurisdiction


@dataclass(frozen=True)
class NewRequest:
    type: RequestType
    jurisdiction: str
    requester: str  # Slack user id
    systems: tuple[str, ...]
    identifiers: tuple[Identifier, ...]
    simulation: bool = True
    new_values: tuple[Identifier, ...] = ()  # rectification
    search_terms: tuple[str, ...] = ()  # erasure: more terms to find the subject in tickets
    identity_verification: str = ""
    notes: str = ""
    received_at: datetime | None = None  # when it reached us, if before it was entered
    channel_id: str | None = None
    intake_key: str | None = None  # what filed it (the modal's view id): filed once, however often sent


def create_request(
    session: Session, new: NewRequest, *, at: datetime, zone: ZoneInfo,
    lookup: IdentifierLookup | None = None,
) -> DsrRequest:
    """The request recorded; `lookup` hashes the subject's identifiers so it can be found by them
    (services.lookup)."""
    if not new.identifiers:
        raise InvalidRequest("Give at least one identifier of the subject (name, email, phone, id).")
    if not new.systems:
        raise InvalidRequest("Choose at least one system the request covers.")
    if new.type is RequestType.RECTIFICATION and not new.new_values:
        raise InvalidRequest("A rectification needs the corrected values.")
    jurisdiction = get_jurisdiction(session=session, code=new.jurisdiction)
    if jurisdiction is None:
        raise UnknownJurisdiction(
            f"No deadline rules for {new.jurisdiction!r}: add a row to the jurisdiction table."
        )
    received_at = new.received_at or at
    due = deadlines.compute(jurisdiction, deadlines.received_on(received_at, zone))
    request = DsrRequest(
        type=new.type,
        status=RequestStatus.RECEIVED,
        jurisdiction_code=jurisdiction.code,
        received_at=received_at,
        due_on=due.due_on,
        ack_due_on=due.ack_due_on,
        simulation=new.simulation,
        requester_slack_id=new.requester,
        identity_verification=new.identity_verification,
        notes=new.notes,
        channel_id=new.channel_id,
        intake_key=new.intake_key,
        created_at=at,
        updated_at=at,
    )
    session.add(request)
    session.flush()
    assert request.id is not None
    rows = [(i, IdentifierPurpose.IDENTIFIES) for i in new.identifiers]
    rows += [(i, IdentifierPurpose.NEW_VALUE) for i in new.new_values]
    rows += [(Identifier(IdentifierKind.TEXT, t), IdentifierPurpose.SEARCH_TERM) for t in new.search_terms]
    for identifier, purpose in rows:
        session.add(
            SubjectIdentifier(
                request_id=request.id,
                kind=identifier.kind,
                purpose=purpose,
                value=identifier.value,
                system=identifier.system,
                lookup=lookup.digest(identifier)
                if lookup and purpose is IdentifierPurpose.IDENTIFIES else None,
            )
        )
    for system in dict.fromkeys(new.systems):
        session.add(RequestSystem(request_id=request.id, system=system))
    # The audit says what kind of data identifies the subject, never the data itself.
    kinds = Counter(f"{purpose.value}:{identifier.kind.value}" for identifier, purpose in rows)
    audit.record(
        session,
        action="request.received",
        actor=new.requester,
        at=at,
        request_id=request.id,
        details={
            "type": new.type.value,
            "jurisdiction": jurisdiction.code,
            "systems": sorted(set(new.systems)),
            "simulation": new.simulation,
            "received_at": received_at.isoformat(),
            "due_on": due.due_on.isoformat(),
            "ack_due_on": due.ack_due_on.isoformat() if due.ack_due_on else None,
            "identifiers": dict(sorted(kinds.items())),
        },
    )
    session.flush()
    return request


def confirm_records(
    session: Session,
    request: DsrRequest,
    system: str,
    matches: Sequence[SubjectMatch],
    *,
    actor: str,
    at: datetime,
) -> None:
    """Record which records in `system` the requester confirmed as the subject's."""
    covered = session.exec(
        select(RequestSystem).where(RequestSystem.request_id == request.id,
                                    RequestSystem.system == system)
    ).first()
    if covered is None:
        raise InvalidRequest(f"{request.reference} does not cover {system}.")
    covered.confirmed_records = [
        {"record_id": m.record_id, "label": m.label, "details": m.details} for m in matches
    ]
    covered.confirmed_at = at
    session.add(covered)
    audit.record(session, action="request.records_confirmed", actor=actor, at=at,
                 request_id=request.id,
                 details={"system": system, "records": [m.record_id for m in matches]})

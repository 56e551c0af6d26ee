from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from sqlmodel import select

from services.errors import InvalidRequest, UnknownJurisdiction
from services.subjects import Identifier
from services.vocabulary import IdentifierKind, IdentifierPurpose, RequestStatus, RequestType
from storage.db import transaction
from storage.models import AuditEvent, RequestSystem, SubjectIdentifier
from tests.factories import add_request

AT = datetime(2026, 1, 31, 15, tzinfo=UTC)


def test_records_request_identifiers_systems_and_deadline(session_factory) -> None:
    with transaction(session_factory) as session:
        request = add_request(
            session, AT, type=RequestType.RECTIFICATION, systems=("zendesk", "genesys", "zendesk"),
            new_values=(Identifier(IdentifierKind.EMAIL, "jane@new.example"),),
            identifiers=(Identifier(IdentifierKind.EMAIL, "jane.doe@example.com"),
                         Identifier(IdentifierKind.VENDOR_USER_ID, "12345", system="zendesk")),
        )
        request_id = request.id
    assert request.reference == f"DSR-{request_id:06d}"

    with session_factory() as session:
        identifiers = session.exec(
            select(SubjectIdentifier).where(SubjectIdentifier.request_id == request_id)
            .order_by(SubjectIdentifier.id)
        ).all()
        systems = session.exec(
            select(RequestSystem.system).where(RequestSystem.request_id == request_id)
        ).all()
        event = session.exec(select(AuditEvent).where(AuditEvent.request_id == request_id)).one()

    assert request.status == RequestStatus.RECEIVED
    assert request.due_on == date(2026, 2, 28)
    assert [(i.kind, i.purpose, i.value, i.system) for i in identifiers] == [
        (IdentifierKind.EMAIL, IdentifierPurpose.IDENTIFIES, "jane.doe@example.com", None),
        (IdentifierKind.VENDOR_USER_ID, IdentifierPurpose.IDENTIFIES, "12345", "zendesk"),
        (IdentifierKind.EMAIL, IdentifierPurpose.NEW_VALUE, "jane@new.example", None),
    ]
    assert sorted(systems) == ["genesys", "zendesk"]
    assert event.action == "request.received"
    assert event.details["identifiers"] == {
        "identifies:email": 1, "identifies:vendor_user_id": 1, "new_value:email": 1,
    }
    # The audit trail never holds the subject's data.
    assert "jane" not in json.dumps(event.details)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"identifiers": ()}, "at least one identifier"),
        ({"systems": ()}, "at least one system"),
        ({"type": RequestType.RECTIFICATION}, "corrected values"),
    ],
)
def test_incomplete_intake_is_refused(session_factory, overrides, message) -> None:
    with pytest.raises(InvalidRequest, match=message), transaction(session_factory) as session:
        add_request(session, AT, **overrides)


def test_unknown_jurisdiction_is_refused(session_factory) -> None:
    with pytest.raises(UnknownJurisdiction, match="add a row"), transaction(session_factory) as session:
        add_request(session, AT, jurisdiction="MARS")

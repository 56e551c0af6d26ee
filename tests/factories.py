"""Builders for test data, going through the same services as the product."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session

from services.intake import NewRequest, create_request
from services.subjects import Identifier
from storage.models import DsrRequest, IdentifierKind, RequestType

UTC_ZONE = ZoneInfo("UTC")


def new_request(**overrides: object) -> NewRequest:
    values: dict[str, object] = {
        "type": RequestType.ACCESS,
        "jurisdiction": "GDPR",
        "requester": "U_REQUESTER",
        "systems": ("zendesk",),
        "identifiers": (
            Identifier(IdentifierKind.NAME, "Jane Doe"),
            Identifier(IdentifierKind.EMAIL, "jane.doe@example.com"),
        ),
        "identity_verification": "Replied from the address on file",
    }
    values.update(overrides)
    return NewRequest(**values)  # type: ignore[arg-type]


def add_request(session: Session, at: datetime, **overrides: object) -> DsrRequest:
    return create_request(session, new_request(**overrides), at=at, zone=UTC_ZONE)

"""Builders for test data, going through the same services as the product."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session

from services.intake import NewRequest, create_request
from services.subjects import Identifier
from services.vocabulary import IdentifierKind, RequestType
from storage.models import DsrRequest

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


def tamper_with_audit(engine: sa.Engine, *statements: str) -> None:
    """What someone with direct database access could do: drop the guard, then edit history."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER audit_event_no_update")
            conn.exec_driver_sql("DROP TRIGGER audit_event_no_delete")
        else:
            conn.exec_driver_sql("ALTER TABLE audit_event DISABLE TRIGGER USER")
        for statement in statements:
            conn.exec_driver_sql(statement)

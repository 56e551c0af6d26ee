"""Look-ups shared by the services. Keyword-only, one session passed in."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlmodel import Session, select

from services.vocabulary import MAX_REQUEST_ID
from storage.models import DsrRequest, Jurisdiction

_REFERENCE = re.compile(r"^\s*(?:DSR-?)?0*(\d{1,12})\s*$", re.IGNORECASE)


def parse_reference(text: str) -> int | None:
    """`DSR-000042`, `dsr-42` or `42` -> 42; anything else -> None."""
    match = _REFERENCE.match(text)
    return int(match.group(1)) if match else None


def get_request(*, session: Session, ref: str | int) -> DsrRequest | None:
    request_id = ref if isinstance(ref, int) else parse_reference(ref)
    if not request_id or request_id > MAX_REQUEST_ID:  # no such id, on either database
        return None
    return session.get(DsrRequest, request_id)


def get_jurisdiction(*, session: Session, code: str) -> Jurisdiction | None:
    return session.get(Jurisdiction, code.upper())


def list_jurisdictions(*, session: Session) -> list[Jurisdiction]:
    return list(session.exec(select(Jurisdiction).order_by(Jurisdiction.code)))


# The deadline that counts: the extended one if the request was extended.
EFFECTIVE_DUE = sa.func.coalesce(DsrRequest.extended_due_on, DsrRequest.due_on)

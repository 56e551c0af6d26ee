"""Finding requests by their subject without a search in clear text: each identifying value is
stored with a keyed hash (HMAC-SHA-256) of its normalised form, and a search hashes what was
typed the same way. The hash outlives retention, which masks the value itself, so a repeated
request from the same person is still found; without the key it reveals nothing."""

from __future__ import annotations

import hashlib
import hmac

from sqlmodel import select

from services.errors import InvalidRequest
from services.subjects import Identifier, normalise_email, normalise_phone, typed_identifier
from services.vocabulary import IdentifierKind, IdentifierPurpose
from storage.db import SessionFactory, transaction
from storage.models import DsrRequest, SubjectIdentifier

# The kinds a person is looked up by; free search terms and addresses are not identifiers.
LOOKED_UP = (IdentifierKind.EMAIL, IdentifierKind.PHONE, IdentifierKind.NAME,
             IdentifierKind.VENDOR_USER_ID, IdentifierKind.EXTERNAL_ID)


class IdentifierLookup:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def digest(self, identifier: Identifier) -> str | None:
        """The stored hash of `identifier`, or None for a kind nobody is looked up by."""
        if identifier.kind not in LOOKED_UP:
            return None
        canonical = _canonical(identifier)
        return hmac.new(self._key, f"{identifier.kind.value}:{canonical}".encode(),
                        hashlib.sha256).hexdigest()

    def digests_of(self, typed: str) -> list[str]:
        """The hashes a typed value is searched by: an email, a phone number (with its country
        code), or else a name. InvalidRequest for what cannot be one."""
        if not typed.strip():
            raise InvalidRequest("Give an email, a phone number or a name to search for.")
        return [self.digest(typed_identifier(typed))]  # type: ignore[list-item]


def _canonical(identifier: Identifier) -> str:
    value = identifier.value.strip()
    if identifier.kind is IdentifierKind.EMAIL:
        return normalise_email(value).casefold()  # mailboxes are matched case-blind in practice
    if identifier.kind is IdentifierKind.PHONE:
        return normalise_phone(value)
    if identifier.kind in (IdentifierKind.VENDOR_USER_ID, IdentifierKind.EXTERNAL_ID):
        return f"{identifier.system or ''}:{value}"
    return " ".join(value.casefold().split())  # a name: case and spacing do not matter


def backfill_lookups(sessions: SessionFactory, lookup: IdentifierLookup) -> int:
    """Hashes the identifiers of requests filed before lookups existed, while their values are
    still there (retention masks them: those stay unfindable). Returns how many."""
    with transaction(sessions) as session:
        rows = session.exec(
            select(SubjectIdentifier).join(DsrRequest, DsrRequest.id == SubjectIdentifier.request_id)
            .where(SubjectIdentifier.lookup.is_(None),
                   SubjectIdentifier.purpose == IdentifierPurpose.IDENTIFIES,
                   SubjectIdentifier.kind.in_(LOOKED_UP),
                   DsrRequest.identifiers_reduced_at.is_(None))).all()
        for row in rows:
            try:
                row.lookup = lookup.digest(Identifier(row.kind, row.value, row.system))
            except InvalidRequest:
                continue  # a value no longer accepted as typed: not findable by it
        return len(rows)

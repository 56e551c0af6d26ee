"""A data subject's identifiers: the one type the intake, the connectors and the views share."""

from __future__ import annotations

from dataclasses import dataclass

from storage.models import IdentifierKind


@dataclass(frozen=True)
class Identifier:
    kind: IdentifierKind
    value: str
    system: str | None = None  # for vendor user ids: which vendor

"""The match picker's store: what a subject search found, kept while the requester picks.

A search can find hundreds of records in a system (namesakes, shared mailboxes), more than a
modal can show at once; they are stored here in the vendor's order, paged and filtered from
the database, and each page's ticks are saved as the requester moves on. They may be other
people's records: they are deleted once the request is confirmed or closed (services.lifecycle).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, select

from services.connectors.base import SubjectMatch
from storage.models import MatchCandidate

FACTS = ("email", "phone", "external_id", "role")  # what tells two namesakes apart


@dataclass(frozen=True)
class MatchPage:
    system: str
    candidates: list[MatchCandidate]
    total: int  # matches the filter
    found: int  # all the search found in the system
    picked: int  # ticked, on any page
    offset: int
    filter: str


def facts(details: Mapping[str, object]) -> str:
    return ", ".join(str(details[k]) for k in FACTS if details.get(k))


def store(session: Session, request_id: int, found: Mapping[str, Sequence[SubjectMatch]]) -> None:
    """Replaces what an earlier search of the request found (a repeated search, the same
    records: ticks on records found again are kept)."""
    kept = {(c.system, c.record_id) for c in session.exec(select(MatchCandidate).where(
        MatchCandidate.request_id == request_id, MatchCandidate.picked))}
    discard(session, request_id)
    for system, matches in found.items():
        for position, match in enumerate(matches):
            session.add(MatchCandidate(
                request_id=request_id, system=system, position=position,
                record_id=match.record_id[:255], label=match.label[:500], details=match.details,
                haystack=f"{match.label} {facts(match.details)}".casefold()[:2000],
                picked=(system, match.record_id[:255]) in kept))


def discard(session: Session, request_id: int) -> None:
    session.execute(sa.delete(MatchCandidate).where(MatchCandidate.request_id == request_id))


def page(session: Session, request_id: int, system: str, *, offset: int, limit: int,
         filter: str = "") -> MatchPage:  # noqa: A002 - the modal calls it a filter
    of_system = (MatchCandidate.request_id == request_id, MatchCandidate.system == system)
    narrowed = [*of_system]
    if filter.strip():
        # Escaped for LIKE: what the requester typed is matched literally.
        typed = filter.strip().casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        narrowed.append(MatchCandidate.haystack.like(f"%{typed}%", escape="\\"))
    count = sa.select(sa.func.count()).select_from(MatchCandidate)
    total = session.execute(count.where(*narrowed)).scalar_one()
    found = session.execute(count.where(*of_system)).scalar_one()
    picked = session.execute(count.where(*of_system, MatchCandidate.picked)).scalar_one()
    offset = min(offset, max(total - 1, 0) // limit * limit)  # a filter may leave fewer pages
    rows = list(session.exec(select(MatchCandidate).where(*narrowed)
                             .order_by(MatchCandidate.position).offset(offset).limit(limit)))
    return MatchPage(system, rows, total, found, picked, offset, filter.strip())


def set_picks(session: Session, request_id: int, shown: set[int], ticked: set[int]) -> None:
    """The ticks of the rows a page showed: those ticked are picked, the others not. Ids not of
    this request are ignored (a forged payload changes nothing)."""
    if not shown:
        return
    mine = (MatchCandidate.request_id == request_id, MatchCandidate.id.in_(shown))
    session.execute(sa.update(MatchCandidate).where(*mine).values(
        picked=MatchCandidate.id.in_(ticked & shown)).execution_options(synchronize_session=False))


def picked(session: Session, request_id: int) -> dict[str, list[SubjectMatch]]:
    """The records ticked, by system, in the vendor's order."""
    chosen: dict[str, list[SubjectMatch]] = {}
    for c in session.exec(select(MatchCandidate).where(
            MatchCandidate.request_id == request_id, MatchCandidate.picked)
            .order_by(MatchCandidate.system, MatchCandidate.position)):
        chosen.setdefault(c.system, []).append(SubjectMatch(c.system, c.record_id, c.label,
                                                            c.details))
    return chosen

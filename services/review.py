"""An erasure's plan: what would be destroyed, reviewed line by line before anyone approves it.

Discovery steps (read-only) store their candidates here as plan items. The requester confirms
or changes each line (one at a time, or every line of a group at once) and sends the plan for
approval; its SHA-256 is then fixed on the request, and an approval counts only for the plan it
saw. A change while the plan awaits approval takes the request back to review: the approvals so
far no longer count. Once approved, the plan cannot change; execution does exactly its lines.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, select

from services import audit
from services.connectors.base import Candidate, PlanEntry, Verified
from services.errors import InvalidRequest, NotFound, PermissionDenied
from services.lifecycle import transition
from services.vocabulary import PlanAction, RequestStatus, StepPhase, StepStatus
from storage.models import DsrRequest, ExecutionStep, PlanItem, RequestSystem

# How the subject relates to a record: the review shows them in this order and applies bulk
# choices per group.
GROUPS = {
    "subject": "the subject's own records",
    "own_closed": "tickets the subject requested, closed or archived",
    "own_open": "tickets the subject requested, not closed",
    "others": "someone else's tickets the subject is on",
    "term_only": "someone else's tickets that hold the subject's identifiers",
    "name_only": "tickets that match the subject's name only (namesakes?)",
}
ACTION_LABELS = {PlanAction.DELETE: "delete", PlanAction.REDACT: "redact",
                 PlanAction.REDACT_CLOSE: "redact, then close", PlanAction.LEAVE: "leave"}
EDITABLE = (RequestStatus.IN_REVIEW, RequestStatus.PENDING_APPROVAL)


@dataclass(frozen=True)
class PlanPage:
    items: list[PlanItem]
    total: int
    offset: int


def store_candidates(session: Session, request: DsrRequest, system: str,
                     candidates: Sequence[Candidate], *, at: datetime) -> None:
    """A discovery's findings become the system's plan lines. A discovery run again (a review
    again) keeps what was done and what the reviewer chose: a line done stays as it is and can
    no longer change; a line not done keeps its action; a new record gets a new line; a record
    no longer found loses its line, unless it was done."""
    earlier = {(i.kind, i.record_id): i for i in session.exec(select(PlanItem).where(
        PlanItem.request_id == request.id, PlanItem.system == system))}
    found = {(c.kind, c.record_id) for c in candidates}
    for key, item in earlier.items():
        if item.done_at is not None:
            item.allowed = [item.action]
            session.add(item)
        elif key not in found:
            session.delete(item)
    for c in candidates:
        item = earlier.get((c.kind, c.record_id))
        if item is not None and item.done_at is not None:
            continue
        line = item or PlanItem(request_id=request.id, system=system, kind=c.kind,
                                record_id=c.record_id, action=c.proposed)
        line.group, line.vendor_status, line.found = c.group, c.vendor_status[:32], list(c.found)[:12]
        line.proposed, line.allowed, line.warning = c.proposed, [a.value for a in c.allowed], c.warning[:300]
        if str(line.action) not in line.allowed:
            line.action = c.proposed
        session.add(line)
    counts = Counter(f"{c.kind}:{c.proposed.value}" for c in candidates)
    audit.record(session, action="plan.found", actor="dsr-desk", at=at, request_id=request.id,
                 details={"system": system, "proposed": dict(sorted(counts.items()))})


def store_confirmed(session: Session, request: DsrRequest, system: RequestSystem, *,
                    at: datetime) -> None:
    """A system without discovery: each confirmed record is one line (its data deleted)."""
    store_candidates(session, request, system.system, [
        Candidate("subject", str(record["record_id"])[:64], "subject", "",
                  (f"confirmed record {record.get('record_id')}",), PlanAction.DELETE,
                  (PlanAction.DELETE, PlanAction.LEAVE))
        for record in system.confirmed_records or ()], at=at)


def mark_verified(session: Session, request_id: int, system: str, verified: Sequence[Verified], *,
                  at: datetime) -> None:
    """What reading the vendor back showed, on each plan line it concerns: one UPDATE run for
    every line at once (executemany; a statement a line took seconds for a thousand lines)."""
    if not verified:
        return
    line = PlanItem.__table__.c
    session.connection().execute(
        PlanItem.__table__.update().where(
            line.request_id == request_id, line.system == system,
            line.kind == sa.bindparam("line_kind"), line.record_id == sa.bindparam("line_record"),
        ).values(done_at=at, verified=sa.bindparam("line_note")),
        [{"line_kind": e.kind, "line_record": e.record_id, "line_note": e.note[:300]}
         for e in verified])


def approved_entries(session: Session, request_id: int, system: str) -> list[PlanEntry]:
    """The approved plan's lines still to carry out (a review again leaves done lines done)."""
    return [PlanEntry(item.kind, item.record_id, PlanAction(item.action)) for item in session.exec(
        select(PlanItem).where(PlanItem.request_id == request_id, PlanItem.system == system,
                               PlanItem.done_at.is_(None))
        .order_by(PlanItem.id))]


def has_lines(session: Session, request_id: int, system: str) -> bool:
    return session.exec(select(PlanItem.id).where(PlanItem.request_id == request_id,
                                                  PlanItem.system == system)).first() is not None


def plan_sha256(session: Session, request_id: int) -> str:
    lines = session.exec(select(PlanItem.system, PlanItem.kind, PlanItem.record_id, PlanItem.action)
                         .where(PlanItem.request_id == request_id)
                         .order_by(PlanItem.system, PlanItem.kind, PlanItem.record_id)).all()
    return hashlib.sha256(json.dumps([list(line) for line in lines]).encode()).hexdigest()


def discovery_state(session: Session, request_id: int) -> tuple[int, int, list[str]]:
    """Discovery steps (done, all) and the errors of failed ones."""
    steps = session.exec(select(ExecutionStep).where(
        ExecutionStep.request_id == request_id, ExecutionStep.phase == StepPhase.DISCOVERY)).all()
    done = sum(s.status == StepStatus.DONE for s in steps)
    return done, len(steps), [s.error or "" for s in steps if s.status == StepStatus.FAILED]


def page(session: Session, request_id: int, *, offset: int, limit: int,
         group: str | None = None) -> PlanPage:
    where = [PlanItem.request_id == request_id]
    if group:
        where.append(PlanItem.group == group)
    total = session.exec(select(sa.func.count()).select_from(PlanItem).where(*where)).one()
    items = session.exec(select(PlanItem).where(*where)
                         .order_by(PlanItem.system, PlanItem.kind.desc(), PlanItem.id)
                         .offset(offset).limit(limit)).all()
    return PlanPage(list(items), total, offset)


def summary(session: Session, request_id: int) -> Counter[tuple[str, str, str]]:
    """(system, group, action) -> lines."""
    rows = session.exec(select(PlanItem.system, PlanItem.group, PlanItem.action, sa.func.count())
                        .where(PlanItem.request_id == request_id)
                        .group_by(PlanItem.system, PlanItem.group, PlanItem.action)).all()
    return Counter({(system, group, str(action)): n for system, group, action, n in rows})


def _check_editable(request: DsrRequest, actor: str) -> None:
    if actor != request.requester_slack_id:
        raise PermissionDenied("Only the person who filed the request reviews its plan.")
    if request.status not in EDITABLE:
        raise InvalidRequest(f"{request.reference} is {request.status}: its plan can no longer "
                             "change" + (" (it was approved as it is)." if request.status in (
                                 RequestStatus.APPROVED, RequestStatus.IN_PROGRESS,
                                 RequestStatus.NEEDS_ATTENTION, RequestStatus.COMPLETED) else "."))


def _reopen(session: Session, request: DsrRequest, actor: str, at: datetime) -> None:
    if request.status == RequestStatus.PENDING_APPROVAL:
        # The approvals so far were for the plan as it was: it goes back to review.
        transition(session, request, RequestStatus.IN_REVIEW, actor=actor, at=at,
                   reason="plan changed while awaiting approval")
        request.status = RequestStatus.IN_REVIEW


def set_action(session: Session, request: DsrRequest, item_id: int, action: PlanAction, *,
               actor: str, at: datetime) -> PlanItem:
    _check_editable(request, actor)
    item = session.get(PlanItem, item_id)
    if item is None or item.request_id != request.id:
        raise NotFound(f"That line is not in {request.reference}'s plan any more (the review "
                       "you used is out of date): open the review again.")
    if action.value not in item.allowed:
        raise InvalidRequest(f"{ACTION_LABELS[action].capitalize()} is not offered for "
                             f"{item.kind} #{item.record_id}.")
    if item.action != action:
        _reopen(session, request, actor, at)
        audit.record(session, action="plan.changed", actor=actor, at=at, request_id=request.id,
                     details={"system": item.system, "kind": item.kind, "record": item.record_id,
                              "from": item.action, "to": action.value})
        item.action, item.changed_by, item.changed_at = action, actor, at
        session.add(item)
    return item


def set_group(session: Session, request: DsrRequest, group: str, action: PlanAction, *,
              actor: str, at: datetime) -> int:
    """Every line of `group` that offers `action` gets it; returns how many changed."""
    _check_editable(request, actor)
    if group not in GROUPS:
        raise InvalidRequest(f"No group {group!r} in a plan.")
    offering = [i for i in session.exec(select(PlanItem).where(
        PlanItem.request_id == request.id, PlanItem.group == group)) if action.value in i.allowed]
    if not offering:  # e.g. "delete" for someone else's tickets: say so, do not pass in silence
        raise InvalidRequest(f"No line of {GROUPS[group]} can be set to "
                             f"{ACTION_LABELS[action]}.")
    items = [i for i in offering if i.action != action]
    if not items:
        return 0
    _reopen(session, request, actor, at)
    for item in items:
        item.action, item.changed_by, item.changed_at = action, actor, at
        session.add(item)
    audit.record(session, action="plan.changed", actor=actor, at=at, request_id=request.id,
                 details={"group": group, "to": action.value, "lines": len(items)})
    return len(items)


def submit(session: Session, request: DsrRequest, *, actor: str, at: datetime) -> str:
    """The reviewed plan goes to the approvers; returns its SHA-256."""
    if actor != request.requester_slack_id:
        raise PermissionDenied("Only the person who filed the request sends its plan for approval.")
    if request.status != RequestStatus.IN_REVIEW:
        raise InvalidRequest(f"{request.reference} is {request.status}, not in review.")
    done, total, failed = discovery_state(session, request.id)
    if failed or done < total:
        raise InvalidRequest(f"{request.reference}: the search for the subject's data is not "
                             "finished" + (f" ({failed[0][:200]})" if failed else "") + ".")
    digest = plan_sha256(session, request.id)
    request.plan_sha256 = digest
    session.add(request)
    counts = summary(session, request.id)
    audit.record(session, action="plan.submitted", actor=actor, at=at, request_id=request.id,
                 details={"plan_sha256": digest, "lines": {f"{s}:{g}:{a}": n for (s, g, a), n
                                                           in sorted(counts.items())}})
    transition(session, request, RequestStatus.PENDING_APPROVAL, actor=actor, at=at)
    return digest

"""The request lifecycle: statuses, the allowed transitions, and the one function that moves them.

    received -> pending_approval -> approved -> in_progress -> completed
                               \\-> rejected            \\-> needs_attention -> in_progress (retry)
    An erasure is reviewed first: received -> in_review -> pending_approval; while it awaits
    approval the requester may take its plan back to in_review (the approvals so far then no
    longer count: they approved another plan); one that needs attention may go back to in_review
    (review again: what is done stays done, what is new is added, the plan is approved again).
    canceled: from received, in_review, pending_approval, approved and needs_attention.
    A request that is executing (in_progress) cannot be canceled half-way: it either completes or
    stops in needs_attention, where the team decides.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, update

from services import audit, matching
from services.errors import ConcurrentUpdate, TransitionNotAllowed
from services.vocabulary import RequestStatus
from storage.models import DsrRequest

S = RequestStatus
ALLOWED_TRANSITIONS: dict[RequestStatus, frozenset[RequestStatus]] = {
    S.RECEIVED: frozenset({S.PENDING_APPROVAL, S.IN_REVIEW, S.CANCELED}),
    S.IN_REVIEW: frozenset({S.PENDING_APPROVAL, S.CANCELED}),
    S.PENDING_APPROVAL: frozenset({S.APPROVED, S.REJECTED, S.IN_REVIEW, S.CANCELED}),
    S.APPROVED: frozenset({S.IN_PROGRESS, S.CANCELED}),
    S.IN_PROGRESS: frozenset({S.COMPLETED, S.NEEDS_ATTENTION}),
    S.NEEDS_ATTENTION: frozenset({S.IN_PROGRESS, S.IN_REVIEW, S.CANCELED}),
    S.COMPLETED: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELED: frozenset(),
}
TERMINAL = frozenset(status for status, targets in ALLOWED_TRANSITIONS.items() if not targets)


def transition(
    session: Session,
    request: DsrRequest,
    to: RequestStatus,
    *,
    actor: str,
    at: datetime,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Move `request` to `to` and audit it, in the caller's transaction.

    The UPDATE is conditional on the status we read, so two racing callers cannot both move the
    same request: the second gets ConcurrentUpdate.
    """
    current = RequestStatus(request.status)
    if to not in ALLOWED_TRANSITIONS[current]:
        allowed = ", ".join(sorted(ALLOWED_TRANSITIONS[current])) or "nothing (it is final)"
        raise TransitionNotAllowed(
            f"{request.reference} is {current}; it cannot become {to}. From {current} it can "
            f"become: {allowed}."
        )
    values: dict[str, Any] = {"status": to, "updated_at": at}
    if to in TERMINAL:
        values["closed_at"] = at
    result = session.execute(
        update(DsrRequest)
        .where(DsrRequest.id == request.id, DsrRequest.status == current)
        .values(**values)
    )
    if result.rowcount != 1:
        raise ConcurrentUpdate(
            f"{request.reference} was changed by someone else meanwhile; look at it again."
        )
    if current is RequestStatus.RECEIVED:  # its records are picked: the rest of what was found goes
        matching.discard(session, request.id)
    audit.record(
        session,
        action="request.status_changed",
        actor=actor,
        at=at,
        request_id=request.id,
        details={"from": current.value, "to": to.value, "reason": reason, **(details or {})},
    )

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlmodel import select

from services.errors import ConcurrentUpdate, TransitionNotAllowed
from services.lifecycle import ALLOWED_TRANSITIONS, TERMINAL, transition
from services.vocabulary import RequestStatus
from storage.db import transaction
from storage.models import AuditEvent, DsrRequest
from storage.queries import get_request
from tests.factories import add_request

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
S = RequestStatus

EXPECTED = {  # the lifecycle as the product promises it; the table in services must match
    (S.RECEIVED, S.PENDING_APPROVAL), (S.RECEIVED, S.CANCELED),
    (S.RECEIVED, S.IN_REVIEW), (S.IN_REVIEW, S.PENDING_APPROVAL), (S.IN_REVIEW, S.CANCELED),
    (S.PENDING_APPROVAL, S.APPROVED), (S.PENDING_APPROVAL, S.REJECTED),
    (S.PENDING_APPROVAL, S.IN_REVIEW), (S.PENDING_APPROVAL, S.CANCELED),
    (S.APPROVED, S.IN_PROGRESS), (S.APPROVED, S.CANCELED),
    (S.IN_PROGRESS, S.COMPLETED), (S.IN_PROGRESS, S.NEEDS_ATTENTION),
    (S.NEEDS_ATTENTION, S.IN_PROGRESS), (S.NEEDS_ATTENTION, S.CANCELED),
    (S.NEEDS_ATTENTION, S.IN_REVIEW),
}
ALL_PAIRS = list(itertools.product(RequestStatus, RequestStatus))


def test_table_is_the_promised_lifecycle() -> None:
    table = {(a, b) for a, targets in ALLOWED_TRANSITIONS.items() for b in targets}
    assert table == EXPECTED
    assert set(ALLOWED_TRANSITIONS) == set(RequestStatus)
    assert {S.COMPLETED, S.REJECTED, S.CANCELED} == TERMINAL


def _request_in(session_factory, status: RequestStatus) -> int:
    with transaction(session_factory) as session:
        request = add_request(session, AT)
        session.execute(sa.update(DsrRequest).where(DsrRequest.id == request.id).values(status=status))
        return request.id


def _status_events(session, request_id: int) -> list[dict]:
    return [
        e.details
        for e in session.exec(
            select(AuditEvent)
            .where(AuditEvent.request_id == request_id, AuditEvent.action == "request.status_changed")
            .order_by(AuditEvent.seq)
        )
    ]


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_every_transition(session_factory, current: RequestStatus, target: RequestStatus) -> None:
    request_id = _request_in(session_factory, current)
    allowed = (current, target) in EXPECTED
    later = AT.replace(hour=11)

    with transaction(session_factory) as session:
        request = get_request(session=session, ref=request_id)
        if allowed:
            transition(session, request, target, actor="U_APPROVER", at=later, reason="because")
        else:
            with pytest.raises(TransitionNotAllowed, match=f"is {current}; it cannot become {target}"):
                transition(session, request, target, actor="U_APPROVER", at=later)

    with session_factory() as session:
        request = get_request(session=session, ref=request_id)
        events = _status_events(session, request_id)
        if allowed:
            assert request.status == target
            assert request.updated_at == later
            assert request.closed_at == (later if target in TERMINAL else None)
            assert events == [{"from": current.value, "to": target.value, "reason": "because"}]
        else:
            assert request.status == current
            assert events == []


def test_transition_and_its_audit_event_roll_back_together(session_factory) -> None:
    request_id = _request_in(session_factory, S.RECEIVED)
    with pytest.raises(RuntimeError), transaction(session_factory) as session:
        request = get_request(session=session, ref=request_id)
        transition(session, request, S.PENDING_APPROVAL, actor="U_REQUESTER", at=AT)
        raise RuntimeError("the process died before commit")
    with session_factory() as session:
        assert get_request(session=session, ref=request_id).status == S.RECEIVED
        assert _status_events(session, request_id) == []


def test_a_stale_read_cannot_override_a_decision(session_factory) -> None:
    """Two approvers decide at once: the second, who read the old status, is refused."""
    request_id = _request_in(session_factory, S.PENDING_APPROVAL)
    with session_factory() as stale_session:
        stale = get_request(session=stale_session, ref=request_id)
        stale_session.expunge(stale)  # what the second approver read, before the first decided

    with transaction(session_factory) as session:
        transition(session, get_request(session=session, ref=request_id), S.APPROVED,
                   actor="U_FIRST", at=AT)

    with pytest.raises(ConcurrentUpdate, match="changed by someone else"), \
            transaction(session_factory) as session:
        transition(session, session.merge(stale, load=False), S.REJECTED, actor="U_SECOND", at=AT)

    with session_factory() as session:
        assert get_request(session=session, ref=request_id).status == S.APPROVED
        assert [e["to"] for e in _status_events(session, request_id)] == ["approved"]

"""RequestService: policy (roles, four-eyes, erasure approvals) and racing decisions."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from services.connectors.base import SubjectMatch
from services.errors import (
    AlreadyDecided,
    AlreadyFiled,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    TransitionNotAllowed,
)
from services.lookup import IdentifierLookup
from services.policy import Policy
from services.request_lists import RequestFilter
from services.requests import RequestService
from services.subjects import Identifier
from services.vocabulary import OPEN_STATUSES, IdentifierKind, RequestStatus, RequestType
from storage.models import AuditEvent, DsrRequest, ExecutionStep, MatchCandidate, SubjectIdentifier
from tests.conftest import ManualClock
from tests.factories import new_request
from tests.fakes import ScriptedConnector

APPROVERS = frozenset({f"U_APPROVER{n}" for n in range(20)} | {"S_LEADS"})


class Groups:
    def groups_of(self, user_id):
        return ["S_LEADS"] if user_id == "U_GROUPIE" else []


@pytest.fixture
def service(session_factory):
    connector = ScriptedConnector("zendesk", ["export"])
    connector.supported_types = frozenset({RequestType.ACCESS, RequestType.ERASURE})
    policy = Policy(requesters=frozenset({"U_REQUESTER"}), approvers=APPROVERS,
                    managers=frozenset({"U_MANAGER"}), erasure_approvals=2, directory=Groups())
    return RequestService(session_factory, lambda system, sim: connector, policy,
                          ManualClock(datetime(2026, 3, 2, 9, tzinfo=UTC)), ZoneInfo("UTC"),
                          lookup=IdentifierLookup(b"a test key"))


MATCH = SubjectMatch("zendesk", "1001", "Jane Doe", {"id": 1001})


def pending(service, **overrides) -> str:
    request = service.create(new_request(**overrides))
    confirmed = service.confirm(request.reference, {"zendesk": [MATCH]},
                                actor=request.requester_slack_id)
    if confirmed.status == RequestStatus.IN_REVIEW:  # an erasure: its plan is reviewed first
        service.submit_plan(request.reference, actor=request.requester_slack_id)
    return request.reference


def test_only_requesters_file_and_only_supported_types(service) -> None:
    with pytest.raises(PermissionDenied, match="not allowed to file"):
        service.create(new_request(requester="U_STRANGER"))
    with pytest.raises(InvalidRequest, match="cannot carry out objection"):
        service.create(new_request(type=RequestType.OBJECTION))


def test_confirmation_sends_to_approval(service) -> None:
    request = service.create(new_request())
    with pytest.raises(PermissionDenied, match="Only the person who filed"):
        service.confirm(request.reference, {"zendesk": [MATCH]}, actor="U_APPROVER1")
    with pytest.raises(InvalidRequest, match="at least one record"):
        service.confirm(request.reference, {"zendesk": []}, actor="U_REQUESTER")
    confirmed = service.confirm(request.reference, {"zendesk": [MATCH]}, actor="U_REQUESTER")
    assert confirmed.status == RequestStatus.PENDING_APPROVAL
    detail = service.detail(request.reference, viewer="U_REQUESTER")
    assert detail.systems[0].confirmed_records == [
        {"record_id": "1001", "label": "Jane Doe", "details": {"id": 1001}}]


def test_four_eyes_and_roles(service) -> None:
    ref = pending(service, requester="U_APPROVER1")
    with pytest.raises(PermissionDenied, match="someone else must decide"):
        service.decide(ref, approver="U_APPROVER1", approve=True)
    with pytest.raises(PermissionDenied, match="not allowed to approve"):
        service.decide(ref, approver="U_REQUESTER", approve=True)
    with pytest.raises(InvalidRequest, match="needs a reason"):
        service.decide(ref, approver="U_APPROVER2", approve=False, reason=" ")
    decision = service.decide(ref, approver="U_GROUPIE", approve=True)  # approver by user group
    assert decision.decided and decision.request.status == RequestStatus.APPROVED


def test_rejection_is_final_and_says_who(service) -> None:
    ref = pending(service)
    service.decide(ref, approver="U_APPROVER2", approve=False, reason="Identity not verified")
    with pytest.raises(AlreadyDecided, match=r"already rejected by <@U_APPROVER2> at 2026-03-02"):
        service.decide(ref, approver="U_APPROVER3", approve=True)


def test_someone_who_may_not_decide_learns_nothing_of_the_request(service) -> None:
    ref = pending(service)
    service.decide(ref, approver="U_APPROVER2", approve=False, reason="Identity not verified")
    for stranger in ("U_STRANGER", "U_REQUESTER"):  # no role; a role that does not decide
        with pytest.raises(PermissionDenied) as refused:
            service.decide(ref, approver=stranger, approve=True)
        assert "rejected" not in str(refused.value) and "U_APPROVER2" not in str(refused.value)
    with pytest.raises(PermissionDenied):  # nor whether a reference exists
        service.decide("DSR-999999", approver="U_STRANGER", approve=True)
    for act in (lambda r: service.cancel(r, actor="U_STRANGER", reason="x"),
                lambda r: service.extend(r, actor="U_STRANGER", reason="x"),
                lambda r: service.acknowledge(r, actor="U_STRANGER"),
                lambda r: service.retry(r, actor="U_STRANGER")):
        for reference in (ref, "DSR-999999"):  # the same answer, whether it exists or not
            with pytest.raises(PermissionDenied) as refused:
                act(reference)
            assert reference not in str(refused.value)


def test_erasure_needs_two_distinct_approvers(service, session_factory) -> None:
    ref = pending(service, type=RequestType.ERASURE)
    first = service.decide(ref, approver="U_APPROVER1", approve=True)
    assert (first.decided, first.approvals, first.required) == (False, 1, 2)
    assert first.request.status == RequestStatus.PENDING_APPROVAL
    with pytest.raises(AlreadyDecided, match="already approved"):
        service.decide(ref, approver="U_APPROVER1", approve=True)
    second = service.decide(ref, approver="U_APPROVER2", approve=True)
    assert second.decided and second.request.status == RequestStatus.APPROVED
    with session_factory() as session:
        assert len(session.exec(select(ExecutionStep)).all()) == 1


@pytest.mark.parametrize("same_person", [False, True])
def test_twenty_racing_clicks_give_one_decision_and_one_plan(service, session_factory,
                                                           same_person) -> None:
    ref = pending(service)
    results, errors = [], []
    start = threading.Barrier(20)

    def click(n: int) -> None:
        start.wait()
        try:
            results.append(service.decide(ref, approver="U_APPROVER1" if same_person
                                          else f"U_APPROVER{n}", approve=True))
        except AlreadyDecided as exc:
            errors.append(exc)

    threads = [threading.Thread(target=click, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1 and results[0].decided
    assert len(errors) == 19
    with session_factory() as session:
        assert len(session.exec(select(ExecutionStep)).all()) == 1
        planned = session.exec(select(AuditEvent).where(AuditEvent.action == "request.planned"))
        assert len(planned.all()) == 1


def test_cancel_extend_retry_permissions(service) -> None:
    ref = pending(service)
    with pytest.raises(PermissionDenied):
        service.extend(ref, actor="U_REQUESTER", reason="complex")
    assert service.extend(ref, actor="U_MANAGER", reason="complex") == date(2026, 6, 2)  # 3 months
    with pytest.raises(PermissionDenied):
        service.cancel(ref, actor="U_STRANGER", reason="")
    assert service.cancel(ref, actor="U_REQUESTER", reason="duplicate").status == "canceled"
    with pytest.raises(TransitionNotAllowed):
        service.retry(ref, actor="U_REQUESTER")


def refs(service, viewer: str = "U_REQUESTER", **filters) -> list[str]:
    return [r.reference for r in service.page(RequestFilter(**filters), viewer=viewer).requests]


def test_list_filters_and_awaiting(service) -> None:
    access = pending(service)
    erasure = pending(service, type=RequestType.ERASURE)
    received = service.create(new_request()).reference  # an access request, still received
    assert refs(service, statuses=[RequestStatus.PENDING_APPROVAL]) == [erasure, access]
    assert refs(service, types=[RequestType.ERASURE]) == [erasure]
    assert refs(service, received_from=date(2026, 3, 3)) == []
    assert len(refs(service, "U_MANAGER", received_to=date(2026, 3, 2))) == 3
    service.decide(erasure, approver="U_APPROVER1", approve=True)
    assert refs(service, awaiting="U_APPROVER1") == [access]
    assert set(refs(service, awaiting="U_APPROVER2")) == {access, erasure}
    assert refs(service, awaiting="U_REQUESTER") == []  # no approver: nothing awaits them
    assert [r.reference for r in service.each(RequestFilter(awaiting="U_APPROVER1"),
                                              viewer="U_REQUESTER")] == [access]
    assert len(refs(service, requester="U_REQUESTER")) == 3
    assert refs(service, requester="U_MANAGER") == []
    # Received on 2 March 2026 (the service's clock), due a month later, on 2 April.
    assert len(refs(service, due_before=date(2026, 4, 3))) == 3
    assert refs(service, due_before=date(2026, 4, 2)) == []
    assert refs(service, due_from=date(2026, 4, 2), types=[RequestType.ERASURE]) == [erasure]
    assert refs(service, due_from=date(2026, 4, 3)) == []
    service.cancel(access, actor="U_REQUESTER", reason="duplicate")
    assert len(refs(service, due_before=date(2026, 4, 3))) == 2  # open ones only
    assert refs(service, statuses=list(OPEN_STATUSES), types=[RequestType.ACCESS]) == [received]


def test_a_list_pages_with_its_total(service) -> None:
    filed = [service.create(new_request()).reference for _ in range(7)]
    pages = [service.page(RequestFilter(), viewer="U_REQUESTER", offset=offset, limit=3)
             for offset in (0, 3, 6)]
    assert [p.total for p in pages] == [7, 7, 7]
    assert [r.reference for p in pages for r in p.requests] == filed[::-1]  # newest first
    assert [r.reference for r in service.each(RequestFilter(), viewer="U_REQUESTER")] == filed[::-1]
    with pytest.raises(PermissionDenied):
        service.page(RequestFilter(), viewer="U_STRANGER")


def test_requests_are_found_by_their_subject_with_no_clear_text_stored_for_it(service) -> None:
    jane = service.create(new_request()).reference
    service.create(new_request(identifiers=(Identifier(IdentifierKind.EMAIL, "bob@example.com"),
                                            Identifier(IdentifierKind.PHONE, "+46701234567"))))
    found = lambda typed: refs(service, subject=service.subject_lookups(typed))  # noqa: E731
    assert found("Jane.Doe@EXAMPLE.com") == [jane]  # the address in any case
    assert found("  jane   DOE ") == [jane]  # a name, however spaced
    assert found("+46 70 123 45 67") != [] and found("+46 70 123 45 67") != [jane]
    assert found("nobody@example.com") == []
    with service.sessions() as session:  # only a keyed hash is stored to find it by
        lookups = [i.lookup for i in session.exec(select(SubjectIdentifier))]
    assert all(lookup and len(lookup) == 64 and "jane" not in lookup for lookup in lookups)
    other_key = IdentifierLookup(b"another key").digests_of("jane.doe@example.com")
    assert refs(service, subject=other_key) == []  # without the key, the hash finds nothing


def test_open_requests_by_deadline_window(service) -> None:
    first = pending(service)  # received 2 March: due 2 April
    service.clock.advance(days=20)
    second = pending(service)  # due 22 April
    service.cancel(pending(service), actor="U_REQUESTER", reason="duplicate")
    assert refs(service, due_from=date(2026, 1, 1)) == [first, second]  # by deadline
    assert refs(service, due_before=date(2026, 4, 3)) == [first]
    assert refs(service, due_from=date(2026, 4, 3)) == [second]
    assert refs(service, due_from=date(2026, 1, 1), requester="U_OTHER") == []


def test_an_erasure_plan_is_reviewed_and_an_approval_covers_only_the_plan_it_saw(
        service, session_factory) -> None:
    request = service.create(new_request(type=RequestType.ERASURE))
    ref = request.reference
    reviewing = service.confirm(ref, {"zendesk": [MATCH]}, actor="U_REQUESTER")
    assert reviewing.status == RequestStatus.IN_REVIEW  # nothing goes to approvers unreviewed
    with pytest.raises(InvalidRequest, match="plan is in review"):
        service.decide(ref, approver="U_APPROVER1", approve=True)
    _, page = service.plan_page(ref, viewer="U_APPROVER1")
    line = page.items[0]
    assert (line.kind, line.record_id, line.action) == ("subject", "1001", "delete")
    with pytest.raises(PermissionDenied, match="Only the person who filed"):
        service.set_plan_action(ref, line.id, "leave", actor="U_APPROVER1")
    with pytest.raises(InvalidRequest, match="not offered"):
        service.set_plan_action(ref, line.id, "redact", actor="U_REQUESTER")
    with pytest.raises(InvalidRequest, match="not an action"):
        service.set_plan_action(ref, line.id, "obliterate", actor="U_REQUESTER")
    with pytest.raises(NotFound, match="out of date"):
        service.set_plan_action(ref, line.id + 999, "leave", actor="U_REQUESTER")
    with pytest.raises(InvalidRequest, match="can be set to redact"):
        service.set_plan_group(ref, "subject", "redact", actor="U_REQUESTER")

    service.submit_plan(ref, actor="U_REQUESTER")
    first = service.decide(ref, approver="U_APPROVER1", approve=True)
    assert (first.approvals, first.required) == (1, 2)
    # The requester changes the plan while it awaits approval: back to review, and the first
    # approval, given to another plan, no longer counts.
    changed = service.set_plan_action(ref, line.id, "leave", actor="U_REQUESTER")
    assert changed.status == RequestStatus.IN_REVIEW
    service.submit_plan(ref, actor="U_REQUESTER")
    second = service.decide(ref, approver="U_APPROVER2", approve=True)
    assert (second.decided, second.approvals) == (False, 1)
    third = service.decide(ref, approver="U_APPROVER1", approve=True)  # again, for this plan
    assert third.decided and third.request.status == RequestStatus.APPROVED
    with pytest.raises(InvalidRequest, match="approved as it is"):
        service.set_plan_action(ref, line.id, "delete", actor="U_REQUESTER")
    with session_factory() as session:
        actions = [e.action for e in session.exec(select(AuditEvent).where(
            AuditEvent.action.startswith("plan.")).order_by(AuditEvent.seq))]
    assert actions == ["plan.found", "plan.submitted", "plan.changed", "plan.submitted"]


def test_racing_submissions_of_one_intake_file_one_request(service, session_factory) -> None:
    """Replicas receiving the same submission at once: the database's unique key decides."""
    outcomes: list[str] = []

    def submit() -> None:
        try:
            outcomes.append(service.create(new_request(intake_key="view:V0RACE")).reference)
        except AlreadyFiled as exc:
            outcomes.append(f"already {exc.reference}")

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    filed = [o for o in outcomes if not o.startswith("already")]
    assert len(filed) == 1 and outcomes.count(f"already {filed[0]}") == 7
    with session_factory() as session:
        assert len(session.exec(select(DsrRequest)).all()) == 1
    other = service.create(new_request(intake_key="view:V0OTHER"))  # another form files anew
    assert other.reference != filed[0]


def test_the_match_picker_pages_filters_and_keeps_ticks_until_the_request_is_confirmed(
        service, session_factory) -> None:
    many = [SubjectMatch("zendesk", str(n), f"Jane Doe {n}", {"email": f"jane{n}@example.com"})
            for n in range(205)]
    service.connectors("zendesk", True).search_subjects = lambda identifiers: many
    ref = service.create(new_request()).reference
    assert service.find_matches(ref) == {"zendesk": 205}
    pages = [service.match_page(ref, "zendesk", viewer="U_REQUESTER", offset=o, limit=10)
             for o in range(0, 210, 10)]
    assert [p.total for p in pages] == [205] * 21
    assert [c.record_id for p in pages for c in p.candidates] == [str(n) for n in range(205)]
    sixth = pages[5].candidates
    service.pick_matches(ref, actor="U_REQUESTER", shown={c.id for c in sixth},
                         ticked={sixth[3].id})
    assert service.picked_matches(ref) == {"zendesk": [many[53]]}
    # A filter: literal text (a `%` is no wildcard), in the label or the facts.
    assert service.match_page(ref, "zendesk", viewer="U_REQUESTER", limit=10,
                              filter="JANE20").total == 6  # 20 and 200-204
    assert service.match_page(ref, "zendesk", viewer="U_REQUESTER", limit=10,
                              filter="%").total == 0
    with pytest.raises(PermissionDenied):
        service.match_page(ref, "zendesk", viewer="U_APPROVER1")
    with pytest.raises(PermissionDenied):
        service.pick_matches(ref, actor="U_APPROVER1", shown={sixth[0].id}, ticked={sixth[0].id})
    service.find_matches(ref)  # searched again: the tick on a record found again is kept
    assert service.picked_matches(ref) == {"zendesk": [many[53]]}
    service.confirm(ref, service.picked_matches(ref), actor="U_REQUESTER")
    with session_factory() as session:  # the rest may be other people's: gone once confirmed
        assert session.exec(select(MatchCandidate)).all() == []

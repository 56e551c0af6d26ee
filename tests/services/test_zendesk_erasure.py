"""Zendesk erasure through the engine, the review and the stand-in over a socket: only the
approved plan happens, nothing of another person is deleted, nothing of the subject's is left,
and nothing is reported done that the vendor's state does not show."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from services import review
from services.policy import Policy
from services.requests import RequestService
from services.vocabulary import PlanAction, RequestStatus, RequestType
from storage.db import transaction
from storage.models import DsrRequest, ExecutionStep, PlanItem
from tests.conftest import ManualClock
from tests.workflow import file_request, registry, run_discovery, run_until_settled

ADA = "ada.lovelace@example.org"
ADA_PHONE = "+15557770001"
BOB = "bob.babbage@example.net"


@pytest.fixture
def world(session_factory, tmp_path):
    connectors = registry(tmp_path)
    connectors.sandboxes.url("zendesk")
    sandbox = connectors.sandboxes.instances["zendesk"]
    return connectors, sandbox, ManualClock(datetime(2026, 3, 2, 9, tzinfo=UTC))


def people(sandbox) -> dict:
    """The subject, a namesake, and Bob, with the tickets the issue lists."""
    ada = sandbox.add_user("Ada Lovelace", email=ADA, phone=ADA_PHONE)
    namesake = sandbox.add_user("Ada Lovelace", email="other.ada@example.com")
    bob = sandbox.add_user("Bob Babbage", email=BOB)
    t = {}
    t["namesake"] = sandbox.add_ticket(namesake["id"], subject="Broken kettle",
                                       description="Hello, Ada Lovelace here, my kettle broke.")
    t["cc"] = sandbox.add_ticket(bob["id"], subject="Shared order", collaborator_ids=[ada["id"]],
                                 description=f"Bob here. Ada is in copy. My mail is {BOB}.",
                                 comments=[f"Ada: call me on {ADA_PHONE} please"])
    t["image"] = sandbox.add_ticket(ada["id"], subject="Photo of the damage",
                                    description=f"See the photo. Reach me at {ADA}.",
                                    inline_image=True)
    t["archived"] = sandbox.add_ticket(ada["id"], subject="Old order", status="closed",
                                       description=f"My phone is {ADA_PHONE}", archived=True)
    t["subject_line"] = sandbox.add_ticket(ada["id"], subject=f"Account of {ADA}",
                                           description="Please look at my account.")
    t["unclosed"] = sandbox.add_ticket(ada["id"], subject="Refund", status="pending",
                                       description=f"Refund to {ADA} please")
    return {"ada": ada, "namesake": namesake, "bob": bob, "tickets": t}


def plan_of(session_factory, request_id) -> dict[tuple[str, str], PlanItem]:
    with session_factory() as session:
        return {(i.kind, i.record_id): i for i in session.exec(
            select(PlanItem).where(PlanItem.request_id == request_id))}


def test_review_then_exactly_the_approved_plan(world, session_factory) -> None:
    connectors, sandbox, clock = world
    cast = people(sandbox)
    tickets = {name: str(t["id"]) for name, t in cast["tickets"].items()}

    def reviewer(session, request) -> None:
        items = {i.record_id: i for i in session.exec(select(PlanItem).where(
            PlanItem.request_id == request.id, PlanItem.kind == "ticket"))}
        # What discovery proposed, before anyone changed it:
        assert items[tickets["namesake"]].action == PlanAction.LEAVE  # a name only
        assert items[tickets["namesake"]].group == "name_only"
        assert items[tickets["cc"]].action == PlanAction.REDACT  # someone else's: never delete
        assert PlanAction.DELETE.value not in items[tickets["cc"]].allowed
        assert items[tickets["archived"]].action == PlanAction.DELETE
        assert items[tickets["image"]].action == PlanAction.DELETE  # an image of the subject's
        assert items[tickets["subject_line"]].action == PlanAction.REDACT_CLOSE
        assert items[tickets["unclosed"]].action == PlanAction.REDACT_CLOSE
        shown = json.dumps([i.found for i in items.values()])
        assert ADA not in shown and ADA_PHONE not in shown and BOB not in shown  # masked
        assert "phone in comment 2" in shown
        # The requester keeps the ticket with the image and has it redacted instead.
        review.set_action(session, request, items[tickets["image"]].id, PlanAction.REDACT_CLOSE,
                          actor="U_REQUESTER", at=clock.now())

    request_id = file_request(session_factory, connectors, clock, RequestType.ERASURE, ADA,
                              systems=("zendesk",), review=reviewer)
    run_until_settled(session_factory, connectors, clock, [request_id])

    with session_factory() as session:
        assert session.get(DsrRequest, request_id).status == RequestStatus.COMPLETED
    state = sandbox.state
    # Nothing of another person was deleted.
    assert int(tickets["namesake"]) in state.tickets and int(tickets["cc"]) in state.tickets
    assert "Ada Lovelace here" in json.dumps(state.comments[int(tickets["namesake"])])
    assert BOB in json.dumps(state.comments[int(tickets["cc"])])  # Bob's own words stay
    assert cast["namesake"]["id"] not in state.deleted_user_ids | state.purged_user_ids
    # Nothing of the subject's is left.
    everything = json.dumps(sandbox.snapshot())
    assert ADA not in everything and ADA_PHONE not in everything
    assert int(tickets["archived"]) not in state.tickets  # deleted permanently
    image = state.comments[int(tickets["image"])][0]
    assert all(a.get("file_name") == "redacted.txt" for a in image["attachments"])
    for name in ("image", "subject_line", "unclosed"):
        assert state.tickets[int(tickets[name])]["status"] == "closed"
    assert cast["ada"]["id"] in state.purged_user_ids
    # Every line that was acted on says what reading it back showed.
    plan = plan_of(session_factory, request_id)
    acted = [i for i in plan.values() if i.action != PlanAction.LEAVE]
    assert acted and all(i.verified and i.done_at for i in acted)
    assert plan[("ticket", tickets["namesake"])].verified is None


def test_a_redaction_answered_but_not_applied_is_never_reported_done(world, session_factory) -> None:
    connectors, sandbox, clock = world
    cast = people(sandbox)
    sandbox.lose_writes({"comment_redaction", "redact_comment", "redact_attachment"})
    request_id = file_request(session_factory, connectors, clock, RequestType.ERASURE, ADA,
                              systems=("zendesk",))
    run_until_settled(session_factory, connectors, clock, [request_id])
    with session_factory() as session:
        request = session.get(DsrRequest, request_id)
        assert request.status == RequestStatus.NEEDS_ATTENTION
        failed = session.exec(select(ExecutionStep).where(
            ExecutionStep.request_id == request_id, ExecutionStep.status == "failed")).one()
    assert failed.action == "redact_tickets"
    assert "answered but not applied" in failed.error and ADA not in failed.error
    redacted = plan_of(session_factory, request_id)[("ticket", str(cast["tickets"]["cc"]["id"]))]
    assert redacted.verified is None  # the record can never claim it
    assert cast["ada"]["id"] not in sandbox.state.purged_user_ids  # nothing after it ran


def test_a_403_mid_erasure_stops_it_with_the_reason_and_a_retry_finishes_it_once(
        world, session_factory) -> None:
    from services import engine as eng

    connectors, sandbox, clock = world
    cast = people(sandbox)
    sandbox.settings.can_delete_tickets = False  # the API token's agent may not delete tickets
    request_id = file_request(session_factory, connectors, clock, RequestType.ERASURE, ADA,
                              systems=("zendesk",))
    run_until_settled(session_factory, connectors, clock, [request_id])
    with session_factory() as session:
        assert session.get(DsrRequest, request_id).status == RequestStatus.NEEDS_ATTENTION
        failed = session.exec(select(ExecutionStep).where(
            ExecutionStep.request_id == request_id, ExecutionStep.status == "failed")).one()
        done_before = {s.id for s in session.exec(select(ExecutionStep).where(
            ExecutionStep.request_id == request_id, ExecutionStep.status == "done"))}
    # Zendesk asks for the delete permission to redact too: the first redaction stops it.
    assert failed.action == "redact_tickets" and "403" in failed.error
    assert "lacks a permission" in failed.error and ADA not in failed.error
    assert int(cast["tickets"]["archived"]["id"]) in sandbox.state.tickets  # nothing deleted
    redactions = sandbox.traffic.stats.calls.copy()

    sandbox.settings.can_delete_tickets = True  # an admin grants it; the team retries
    with transaction(session_factory) as session:
        eng.retry(session, session.get(DsrRequest, request_id), actor="U_REQUESTER",
                  at=clock.now())
    run_until_settled(session_factory, connectors, clock, [request_id])
    with session_factory() as session:
        assert session.get(DsrRequest, request_id).status == RequestStatus.COMPLETED
        assert done_before <= {s.id for s in session.exec(select(ExecutionStep).where(
            ExecutionStep.request_id == request_id, ExecutionStep.status == "done"))}
    # Nothing was done twice: one bulk deletion, one purge, one user deletion.
    calls = sandbox.traffic.stats.calls
    assert calls["DELETE /api/v2/tickets/destroy_many"] == 1
    assert calls["DELETE /api/v2/deleted_tickets/destroy_many"] == 1
    assert calls[f"DELETE /api/v2/users/{cast['ada']['id']}"] == 1
    assert not any("destroy_many" in k or "/users/" in k and k.startswith("DELETE")
                   for k in redactions)  # none of them before the failure
    assert cast["ada"]["id"] in sandbox.state.purged_user_ids


def test_without_the_agent_workspace_open_tickets_fall_back_and_closed_ones_ask(
        world, session_factory) -> None:
    connectors, sandbox, clock = world
    cast = people(sandbox)
    sandbox.settings.agent_workspace = False  # no comment_redactions: the old endpoint only
    closed_cc = sandbox.add_ticket(cast["bob"]["id"], subject="Closed matter", status="closed",
                                   collaborator_ids=[cast["ada"]["id"]],
                                   description=f"Bob again; Ada's number is {ADA_PHONE}")
    request_id = file_request(session_factory, connectors, clock, RequestType.ERASURE, ADA,
                              systems=("zendesk",))
    run_until_settled(session_factory, connectors, clock, [request_id])
    with session_factory() as session:
        step = session.exec(select(ExecutionStep).where(
            ExecutionStep.request_id == request_id, ExecutionStep.status == "failed")).one()
    assert step.action == "redact_tickets"
    assert f"#{closed_cc['id']} is closed and this account has no comment redaction" in step.error
    # The open ticket someone else requested was redacted with the old endpoint meanwhile.
    assert ADA_PHONE not in json.dumps(sandbox.state.comments[int(cast["tickets"]["cc"]["id"])])
    assert closed_cc["id"] in sandbox.state.tickets  # never deleted: it is Bob's


def test_a_plan_that_leaves_everything_completes_without_a_vendor_write(world, session_factory) -> None:
    connectors, sandbox, clock = world
    people(sandbox)
    before = sandbox.snapshot()

    def leave_all(session, request) -> None:
        for item in session.exec(select(PlanItem).where(PlanItem.request_id == request.id)):
            review.set_action(session, request, item.id, PlanAction.LEAVE, actor="U_REQUESTER",
                              at=clock.now())

    request_id = file_request(session_factory, connectors, clock, RequestType.ERASURE, ADA,
                              systems=("zendesk",), review=leave_all)
    with session_factory() as session:
        assert session.get(DsrRequest, request_id).status == RequestStatus.COMPLETED
        assert not session.exec(select(ExecutionStep).where(
            ExecutionStep.request_id == request_id, ExecutionStep.phase == "execution")).all()
    assert sandbox.snapshot() == before


def test_a_ticket_filed_after_the_review_is_added_by_a_review_again(world, session_factory) -> None:

    connectors, sandbox, clock = world
    cast = people(sandbox)
    late = {}

    def subject_writes_again(session, request) -> None:  # after discovery, before approval
        late["ticket"] = sandbox.add_ticket(cast["ada"]["id"], subject="One more thing",
                                            status="open", description=f"Call {ADA_PHONE}")

    request_id = file_request(session_factory, connectors, clock, RequestType.ERASURE, ADA,
                              systems=("zendesk",), review=subject_writes_again)
    run_until_settled(session_factory, connectors, clock, [request_id])
    with session_factory() as session:
        assert session.get(DsrRequest, request_id).status == RequestStatus.NEEDS_ATTENTION
        failed = session.exec(select(ExecutionStep).where(
            ExecutionStep.request_id == request_id, ExecutionStep.status == "failed")).one()
    assert failed.action == "delete_users" and f"#{late['ticket']['id']}" in failed.error
    done_before = {k: v.done_at for k, v in plan_of(session_factory, request_id).items()}
    destroyed = sandbox.traffic.stats.calls["DELETE /api/v2/tickets/destroy_many"]

    policy = Policy(requesters=frozenset({"U_REQUESTER"}), approvers=frozenset({"U_APPROVER"}),
                    managers=frozenset(), erasure_approvals=1)
    service = RequestService(session_factory, connectors, policy, clock, ZoneInfo("UTC"))
    reference = service.get(request_id).reference
    assert service.review_again(reference, actor="U_REQUESTER").status == RequestStatus.IN_REVIEW
    run_discovery(session_factory, connectors, clock, request_id)
    plan = plan_of(session_factory, request_id)
    new_line = plan[("ticket", str(late["ticket"]["id"]))]
    assert new_line.action == PlanAction.REDACT_CLOSE and new_line.done_at is None
    for key, done_at in done_before.items():  # what was done stays done, and cannot change
        if done_at is not None:
            assert plan[key].done_at == done_at and plan[key].allowed == [plan[key].action]
    service.submit_plan(reference, actor="U_REQUESTER")
    assert service.decide(reference, approver="U_APPROVER", approve=True).decided
    run_until_settled(session_factory, connectors, clock, [request_id])
    with session_factory() as session:
        assert session.get(DsrRequest, request_id).status == RequestStatus.COMPLETED
    assert sandbox.traffic.stats.calls["DELETE /api/v2/tickets/destroy_many"] == destroyed
    assert cast["ada"]["id"] in sandbox.state.purged_user_ids
    assert ADA_PHONE not in json.dumps(sandbox.snapshot())


class WorkerDied(BaseException):
    """The worker process ends where it stands (not an error any step handles)."""


def test_a_worker_dying_after_a_bulk_submission_never_submits_that_batch_again(
        world, session_factory) -> None:
    """Each bulk job is in the step's recorded checkpoint before the next vendor call: a worker
    that dies at that call leaves the jobs it submitted to the next worker, which reads them
    instead of sending their batches again."""
    connectors, sandbox, clock = world
    ada = sandbox.add_user("Ada Lovelace", email=ADA, phone=ADA_PHONE)
    for n in range(250):  # three batches of at most 100
        sandbox.add_ticket(ada["id"], subject=f"Order {n}", description="x", status="closed")
    request_id = file_request(session_factory, connectors, clock, RequestType.ERASURE, ADA,
                              systems=("zendesk",))
    http = connectors("zendesk", True).http
    call = http.call

    def dies_after_the_second_submission(method, path, **kwargs):
        if sandbox.traffic.stats.calls["DELETE /api/v2/tickets/destroy_many"] == 2:
            raise WorkerDied
        return call(method, path, **kwargs)

    http.call = dies_after_the_second_submission
    with pytest.raises(WorkerDied):
        run_until_settled(session_factory, connectors, clock, [request_id])
    del http.call
    with session_factory() as session:
        step = session.exec(select(ExecutionStep).where(
            ExecutionStep.request_id == request_id,
            ExecutionStep.action == "delete_tickets")).one()
    assert step.status == "running" and len(step.checkpoint["jobs"]) == 2  # both recorded

    clock.advance(seconds=121)  # its lease runs out: another worker takes the step over
    run_until_settled(session_factory, connectors, clock, [request_id])
    with session_factory() as session:
        assert session.get(DsrRequest, request_id).status == RequestStatus.COMPLETED
    assert sandbox.traffic.stats.calls["DELETE /api/v2/tickets/destroy_many"] == 3
    assert sandbox.traffic.stats.calls["DELETE /api/v2/deleted_tickets/destroy_many"] == 3
    assert ada["id"] in sandbox.state.purged_user_ids
    assert ADA_PHONE not in json.dumps(sandbox.snapshot())

"""A lost answer never doubles a vendor action.

Each test loses the answer of one write (the stand-in processes the call, then drops the
connection, as a proxy that times out does) and drives a whole request through the real engine
and connector over a socket. The vendor must end exactly as after a fault-free run of the same
request, the request must complete, and the call counts must show the write took effect once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlmodel import select

from bot.settings import Settings
from bot.wiring import ConnectorRegistry, Sandboxes
from services import engine as eng
from services import review
from services.sandbox.traffic import FaultPlan, LoseAnswers
from services.subjects import Identifier
from services.vocabulary import IdentifierKind, PlanAction, RequestStatus, RequestType
from storage.models import DsrRequest, ExecutionStep, PlanItem
from tests.conftest import ManualClock
from tests.connector_driver import MemorySink
from tests.workflow import FAST, file_request, registry, run_until_settled

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ADA = "ada.lovelace@example.org"
ADA_PHONE = "+15557770001"
BOB = "bob.babbage@example.net"
GDPR_REQUESTS = "/api/v2/gdpr/requests"
API = "/api/v2"


@dataclass
class World:
    connectors: ConnectorRegistry
    clock: ManualClock

    def sandbox(self, system: str) -> Any:
        self.connectors.sandboxes.url(system)
        return self.connectors.sandboxes.instances[system]


@pytest.fixture
def worlds(tmp_path):
    """A fault-free world and a faulty one: the same seed, the same subjects. The stand-ins,
    the connectors and the engine share one driven clock: nothing waits on the wall clock."""
    made: list[World] = []

    def make(name: str, system: str = "genesys") -> World:
        clock = ManualClock(T0)
        if system == "zendesk":  # its connector keeps no time
            made.append(World(registry(tmp_path / name), clock))
            return made[-1]
        epoch = lambda: clock.now().timestamp()  # noqa: E731
        settings = Settings(_env_file=None, DSR_DATA_DIR=str(tmp_path / name),
                            DSR_SANDBOX_PEOPLE=6, DSR_POLL_SECONDS=1)
        made.append(World(ConnectorRegistry(settings, Sandboxes(settings, clock=epoch),
                                            sleep=lambda s: None, limits=FAST, clock=epoch),
                          clock))
        return made[-1]

    yield make
    for world in made:
        world.connectors.sandboxes.stop()


def lose(sandbox: Any, *targets: LoseAnswers, **plan: Any) -> None:
    sandbox.traffic.set_faults(FaultPlan(lose=targets, **plan))


def status(session_factory, request_id: int) -> RequestStatus:
    with session_factory() as session:
        return session.get(DsrRequest, request_id).status


# Genesys Cloud: POST /api/v2/gdpr/requests is the one call that is not safe to repeat.

GENESYS_KINDS = {
    RequestType.ACCESS: {},
    RequestType.ERASURE: {},
    RequestType.RECTIFICATION: {"new_values": (Identifier(IdentifierKind.EMAIL,
                                                          "ada.new@example.org"),)},
}


def genesys_request(world: World, session_factory, kind: RequestType) -> int:
    genesys = world.sandbox("genesys")
    if not genesys.state.search("EMAIL", ADA):
        genesys.add_subject("Ada Lovelace", emails=[ADA], phones=[ADA_PHONE])
    return file_request(session_factory, world.connectors, world.clock, kind, ADA,
                        systems=("genesys",), **GENESYS_KINDS[kind])


def fault_free_genesys(worlds, session_factory, kind: RequestType) -> dict:
    clean = worlds("clean")
    request_id = genesys_request(clean, session_factory, kind)
    run_until_settled(session_factory, clean.connectors, clean.clock, [request_id])
    assert status(session_factory, request_id) == RequestStatus.COMPLETED
    return clean.sandbox("genesys").snapshot()


def assert_posted_once(genesys: Any, lost: int = 1) -> None:
    assert genesys.traffic.stats.lost[f"POST {GDPR_REQUESTS}"] == lost
    assert genesys.traffic.stats.calls[f"POST {GDPR_REQUESTS}"] == 1  # never sent again
    assert len(genesys.state.requests) == 1  # one GDPR request for the one step


@pytest.mark.parametrize("kind", list(GENESYS_KINDS), ids=lambda k: k.value)
@pytest.mark.parametrize("names_kept", [True, False], ids=["names-kept", "names-dropped"])
def test_genesys_post_whose_answer_is_lost_is_adopted_not_posted_again(
        worlds, session_factory, kind, names_kept) -> None:
    expected = fault_free_genesys(worlds, session_factory, kind)
    world = worlds("faulty")
    genesys = world.sandbox("genesys")
    # Whether Genesys keeps a client-supplied name is not documented: found either way.
    genesys.state.keep_names = names_kept
    request_id = genesys_request(world, session_factory, kind)
    lose(genesys, LoseAnswers("POST", GDPR_REQUESTS))
    run_until_settled(session_factory, world.connectors, world.clock, [request_id])

    assert status(session_factory, request_id) == RequestStatus.COMPLETED
    assert_posted_once(genesys)
    assert genesys.snapshot() == expected


def test_genesys_lost_answer_found_by_the_step_run_again(worlds, session_factory) -> None:
    """The lookup right after the lost answer fails too (every inline try): the step goes back
    to the engine with its `posting` checkpoint, and the next run adopts the request."""
    expected = fault_free_genesys(worlds, session_factory, RequestType.ERASURE)
    world = worlds("faulty")
    genesys = world.sandbox("genesys")
    request_id = genesys_request(world, session_factory, RequestType.ERASURE)
    lose(genesys, LoseAnswers("POST", GDPR_REQUESTS),
         # the listing before posting passes; the listings after the lost answer are lost too
         LoseAnswers("GET", GDPR_REQUESTS, count=FAST.attempts, skip=1))
    run_until_settled(session_factory, world.connectors, world.clock, [request_id])

    assert status(session_factory, request_id) == RequestStatus.COMPLETED
    assert genesys.traffic.stats.lost[f"GET {GDPR_REQUESTS}"] == FAST.attempts
    assert_posted_once(genesys)
    assert genesys.snapshot() == expected


def test_genesys_lost_answer_survives_a_restart(worlds, session_factory) -> None:
    """The process dies after the lost answer (before anything but `posting` was saved): a new
    process, with new connectors, finds the request Genesys created and adopts it."""
    expected = fault_free_genesys(worlds, session_factory, RequestType.ACCESS)
    world = worlds("faulty")
    genesys = world.sandbox("genesys")
    request_id = genesys_request(world, session_factory, RequestType.ACCESS)
    lose(genesys, LoseAnswers("POST", GDPR_REQUESTS),
         LoseAnswers("GET", GDPR_REQUESTS, count=FAST.attempts, skip=1))
    first = eng.Worker(session_factory, world.connectors, lambda r, s: MemorySink(), world.clock,
                       worker_id="before-restart")
    while not genesys.traffic.stats.calls[f"POST {GDPR_REQUESTS}"]:
        assert first.run_once(10)
    assert genesys.state.requests and status(session_factory, request_id) == \
        RequestStatus.IN_PROGRESS

    restarted = ConnectorRegistry(world.connectors.settings, world.connectors.sandboxes,
                                  **world.connectors.overrides)
    run_until_settled(session_factory, restarted, world.clock, [request_id])
    assert status(session_factory, request_id) == RequestStatus.COMPLETED
    assert_posted_once(genesys)
    assert genesys.snapshot() == expected


def test_genesys_504_after_processing_is_not_posted_again(worlds, session_factory) -> None:
    """A gateway that answers 504 once the vendor has acted is as ambiguous as a drop."""
    expected = fault_free_genesys(worlds, session_factory, RequestType.ERASURE)
    world = worlds("faulty")
    genesys = world.sandbox("genesys")
    request_id = genesys_request(world, session_factory, RequestType.ERASURE)
    lose(genesys, LoseAnswers("POST", GDPR_REQUESTS), lost_answer_status=504)
    run_until_settled(session_factory, world.connectors, world.clock, [request_id])

    assert status(session_factory, request_id) == RequestStatus.COMPLETED
    assert_posted_once(genesys)
    assert genesys.snapshot() == expected


def test_genesys_does_not_adopt_an_older_request_for_the_same_subject(
        worlds, session_factory) -> None:
    """A request for the same subject, by the same client, posted before this step began is
    not ours (names dropped, only the time tells them apart): the lost answer's own request
    is adopted, and the older one is left alone."""
    world = worlds("faulty")
    genesys = world.sandbox("genesys")
    genesys.state.keep_names = False
    earlier = genesys_request(world, session_factory, RequestType.ACCESS)
    run_until_settled(session_factory, world.connectors, world.clock, [earlier])
    [older] = genesys.state.requests
    world.clock.advance(hours=2)
    request_id = genesys_request(world, session_factory, RequestType.ACCESS)
    lose(genesys, LoseAnswers("POST", GDPR_REQUESTS))
    run_until_settled(session_factory, world.connectors, world.clock, [request_id])

    assert status(session_factory, request_id) == RequestStatus.COMPLETED
    assert len(genesys.state.requests) == 2  # one per request: the lost one was adopted
    assert genesys.traffic.stats.calls[f"POST {GDPR_REQUESTS}"] == 2
    assert genesys.traffic.stats.lost[f"POST {GDPR_REQUESTS}"] == 1
    with session_factory() as session:
        [step] = session.exec(select(ExecutionStep).where(
            ExecutionStep.request_id == request_id)).all()
    assert step.result["genesys_request"] != older


# Zendesk Support: every write the connector makes, its answer lost once.

def zendesk_cast(sandbox: Any) -> dict[str, Any]:
    """Ada (the subject) and Bob, with a ticket for each kind of write an erasure makes."""
    ada = sandbox.add_user("Ada Lovelace", email=ADA, phone=ADA_PHONE)
    bob = sandbox.add_user("Bob Babbage", email=BOB)
    tickets = {
        # deleted (bulk job), then permanently deleted (bulk job)
        "closed": sandbox.add_ticket(ada["id"], subject="Old order", status="closed",
                                     description=f"My phone is {ADA_PHONE}"),
        # subject line redacted and the ticket closed: PUT /tickets/{id}
        "subject_line": sandbox.add_ticket(ada["id"], subject=f"Account of {ADA}",
                                           description="Please look at my account."),
        # someone else's ticket: the subject's words redacted in a comment
        "cc": sandbox.add_ticket(bob["id"], subject="Shared order", collaborator_ids=[ada["id"]],
                                 description="Bob here. Ada is in copy.",
                                 comments=[f"Ada: call me on {ADA_PHONE} please"]),
        # the subject's file redacted (the review keeps the ticket), then closed
        "file": sandbox.add_ticket(ada["id"], subject="Invoice", attachment=True,
                                   description="Here is the invoice you asked for."),
    }
    return {"ada": ada, "bob": bob, "tickets": tickets}


def keep_the_file_ticket(cast: dict[str, Any], clock: ManualClock):
    def reviewer(session, request) -> None:
        item = session.exec(select(PlanItem).where(
            PlanItem.request_id == request.id,
            PlanItem.record_id == str(cast["tickets"]["file"]["id"]))).one()
        review.set_action(session, request, item.id, PlanAction.REDACT_CLOSE,
                          actor="U_REQUESTER", at=clock.now())
    return reviewer


def zendesk_request(world: World, session_factory, kind: RequestType,
                    agent_workspace: bool) -> tuple[int, dict[str, Any]]:
    sandbox = world.sandbox("zendesk")
    sandbox.settings.agent_workspace = agent_workspace
    cast = zendesk_cast(sandbox)
    extra: dict[str, Any] = {}
    if kind is RequestType.ERASURE:
        extra["review"] = keep_the_file_ticket(cast, world.clock)
    if kind is RequestType.RECTIFICATION:
        extra["new_values"] = (Identifier(IdentifierKind.NAME, "Ada King"),
                               Identifier(IdentifierKind.PHONE, "+15557770009"),
                               Identifier(IdentifierKind.EMAIL, "ada.king@example.org"))
    request_id = file_request(session_factory, world.connectors, world.clock, kind, ADA,
                              systems=("zendesk",), **extra)
    return request_id, cast


@dataclass(frozen=True)
class Write:
    kind: RequestType
    method: str
    path: Any  # (cast) -> the path prefix of the write whose answer is lost
    agent_workspace: bool = True

    exact: bool = True  # the path itself, not the paths under it

    def target(self, cast: dict[str, Any]) -> LoseAnswers:
        return LoseAnswers(self.method, API + self.path(cast), exact=self.exact)


def ticket(name: str) -> Any:
    return lambda cast: cast["tickets"][name]["id"]


ZENDESK_WRITES = {
    "bulk-delete-tickets": Write(RequestType.ERASURE, "DELETE", lambda c: "/tickets/destroy_many"),
    "bulk-purge-tickets": Write(RequestType.ERASURE, "DELETE",
                                lambda c: "/deleted_tickets/destroy_many"),
    "soft-delete-user": Write(RequestType.ERASURE, "DELETE", lambda c: f"/users/{c['ada']['id']}"),
    "purge-user": Write(RequestType.ERASURE, "DELETE",
                        lambda c: f"/deleted_users/{c['ada']['id']}"),
    "comment-redaction": Write(RequestType.ERASURE, "PUT", lambda c: "/comment_redactions/", exact=False),
    "old-string-redaction": Write(
        RequestType.ERASURE, "PUT",
        lambda c: f"/tickets/{ticket('cc')(c)}/comments/", agent_workspace=False, exact=False),
    "attachment-redaction": Write(
        RequestType.ERASURE, "PUT", lambda c: f"/tickets/{ticket('file')(c)}/comments/", exact=False),
    "ticket-update-and-close": Write(
        RequestType.ERASURE, "PUT", lambda c: f"/tickets/{ticket('subject_line')(c)}"),
    "rectify-user": Write(RequestType.RECTIFICATION, "PUT", lambda c: f"/users/{c['ada']['id']}"),
    "rectify-identity": Write(RequestType.RECTIFICATION, "PUT",
                              lambda c: f"/users/{c['ada']['id']}/identities/", exact=False),
    "suspend-user": Write(RequestType.OBJECTION, "PUT", lambda c: f"/users/{c['ada']['id']}"),
}


@pytest.mark.parametrize("write", list(ZENDESK_WRITES.values()), ids=list(ZENDESK_WRITES))
def test_zendesk_write_whose_answer_is_lost_ends_as_without_faults(
        worlds, session_factory, write) -> None:
    clean = worlds("clean", "zendesk")
    clean_id, _ = zendesk_request(clean, session_factory, write.kind, write.agent_workspace)
    run_until_settled(session_factory, clean.connectors, clean.clock, [clean_id])
    assert status(session_factory, clean_id) == RequestStatus.COMPLETED
    expected = clean.sandbox("zendesk").snapshot()

    world = worlds("faulty", "zendesk")
    zendesk = world.sandbox("zendesk")
    request_id, cast = zendesk_request(world, session_factory, write.kind, write.agent_workspace)
    target = write.target(cast)
    lose(zendesk, target)
    run_until_settled(session_factory, world.connectors, world.clock, [request_id])

    lost = zendesk.traffic.stats.lost
    assert sum(lost.values()) == 1 and all(k.startswith(f"{write.method} {target.prefix}")
                                           for k in lost), lost
    assert status(session_factory, request_id) == RequestStatus.COMPLETED
    assert zendesk.snapshot() == expected
    if write.kind is RequestType.ERASURE:  # nothing is reported done that was not read back
        with session_factory() as session:
            acted = [i for i in session.exec(select(PlanItem).where(
                PlanItem.request_id == request_id)) if i.action != PlanAction.LEAVE]
        assert acted and all(i.verified and i.done_at for i in acted)


# Chaos: a share of every call's answers lost, on both vendors at once.

def test_random_lost_answers_leave_both_vendors_as_without_faults(
        session_factory, tmp_path) -> None:
    from tests.services.test_simulation_workflow import run

    clean, _, _ = run(session_factory, tmp_path / "clean", None)
    faulty, ids, _ = run(session_factory, tmp_path / "faulty",
                         FaultPlan(lost_answer_rate=0.15, error_rate=0.1, seed=7))
    lost = {s: sum(faulty.sandboxes.instances[s].traffic.stats.lost.values())
            for s in ("zendesk", "genesys")}
    assert lost["zendesk"] > 5 and lost["genesys"] > 3, lost
    assert [status(session_factory, r) for r in ids] == [RequestStatus.COMPLETED] * len(ids)
    for system in ("zendesk", "genesys"):
        assert (faulty.sandboxes.instances[system].snapshot()
                == clean.sandboxes.instances[system].snapshot()), system
    genesys = faulty.sandboxes.instances["genesys"]
    assert len(genesys.state.requests) == len(clean.sandboxes.instances["genesys"].state.requests)

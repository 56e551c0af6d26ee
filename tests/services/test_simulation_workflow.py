"""Simulation mode end to end: real engine, real connectors, stand-ins on localhost sockets,
on SQLite and PostgreSQL; with 30% of vendor calls failing, the result is the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import select

from bot.settings import Settings
from bot.wiring import ConnectorRegistry, Sandboxes
from services import audit
from services import engine as eng
from services.connectors.base import RequestSpec, Waiting
from services.sandbox.people import people
from services.sandbox.traffic import FaultPlan
from services.subjects import Identifier
from services.vocabulary import IdentifierKind, RequestStatus, RequestType, StepStatus
from storage import migrate
from storage.db import make_engine, make_session_factory, transaction
from storage.models import AuditEvent, DsrRequest, ExecutionStep
from tests.conftest import ManualClock
from tests.connector_driver import drive
from tests.workflow import FAST, file_request, registry, run_until_settled

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def scenario(session_factory, connectors, clock) -> list[int]:
    zendesk = connectors.sandboxes.instances["zendesk"]
    genesys = connectors.sandboxes.instances["genesys"]
    # A subject whose Zendesk tickets are all closed, so that the erasure can finish.
    erased = "grace.hopper@example.com"
    user = zendesk.add_user("Grace Hopper", email=erased, phone="+15558880001")
    for n in range(130):
        zendesk.add_ticket(user["id"], subject=f"Case {n}", description="x", status="closed",
                           comments=[f"Call {erased}"])
    genesys.add_subject("Grace Hopper", emails=[erased], phones=["+15558880001"])
    seeded = zendesk.state.users
    people = [u["email"] for u in seeded.values() if u["role"] == "end-user"][:3]
    return [
        file_request(session_factory, connectors, clock, RequestType.ACCESS, people[0]),
        file_request(session_factory, connectors, clock, RequestType.ERASURE, erased),
        file_request(session_factory, connectors, clock, RequestType.RECTIFICATION, people[1],
                     new_values=(Identifier(IdentifierKind.EMAIL, "corrected@example.net"),)),
        file_request(session_factory, connectors, clock, RequestType.OBJECTION, people[2],
                     systems=("zendesk",)),
    ]


def run(session_factory, tmp_path, faults: FaultPlan | None):
    connectors = registry(tmp_path)
    for system in ("zendesk", "genesys"):
        connectors.sandboxes.url(system)
        if faults:
            connectors.sandboxes.instances[system].traffic.set_faults(faults)
    clock = ManualClock(T0)
    try:
        ids = scenario(session_factory, connectors, clock)
        worker = run_until_settled(session_factory, connectors, clock, ids)
        return connectors, ids, worker
    finally:
        connectors.sandboxes.stop()


def test_requests_complete_with_faults_exactly_as_without(session_factory, tmp_path) -> None:
    clean_engine = make_engine(f"sqlite:///{tmp_path / 'clean.sqlite3'}")
    migrate.upgrade(clean_engine)
    clean, _, _ = run(make_session_factory(clean_engine), tmp_path / "clean", None)
    faulty, ids, worker = run(session_factory, tmp_path / "faulty",
                              FaultPlan(error_rate=0.3, retry_after=0, seed=5))

    injected = {s: sum(faulty.sandboxes.instances[s].traffic.stats.injected.values())
                for s in ("zendesk", "genesys")}
    assert injected["zendesk"] > 20 and injected["genesys"] > 3
    with session_factory() as session:
        assert [session.get(DsrRequest, r).status for r in ids] == [RequestStatus.COMPLETED] * 4
        steps = session.exec(select(ExecutionStep)).all()
        assert {s.status for s in steps} == {StepStatus.DONE}
        assert audit.verify(session).ok
        step_events = session.exec(select(AuditEvent).where(AuditEvent.action == "step.done")).all()
        assert len(step_events) == len(steps)
        assert all(e.details["simulation"] is True for e in step_events)  # marked as simulated
    for system in ("zendesk", "genesys"):
        assert (faulty.sandboxes.instances[system].snapshot()
                == clean.sandboxes.instances[system].snapshot()), system
    zendesk = faulty.sandboxes.instances["zendesk"].snapshot()
    assert "corrected@example.net" in str(zendesk["users"])
    assert "grace.hopper@example.com" not in str(zendesk)
    exported = worker.sinks_written
    assert any(k[1] == "genesys" and v.files for k, v in exported.items())
    assert any(k[1] == "zendesk" and v.files for k, v in exported.items())


def test_simulated_genesys_requests_can_take_the_time_real_ones_do(tmp_path) -> None:
    """DSR_SANDBOX_GENESYS_REQUEST_SECONDS: training shows a request waiting, polled later."""
    connectors = registry(tmp_path, DSR_SANDBOX_GENESYS_REQUEST_SECONDS=3600)
    genesys = connectors("genesys", True)
    assert connectors.sandboxes.instances["genesys"].state.request_seconds == 3600
    [match] = genesys.search_subjects([Identifier(IdentifierKind.EMAIL, people(6, 0)[0].email)])
    spec = RequestSpec("DSR-000001", RequestType.ACCESS, (), [
        {"record_id": match.record_id, "label": match.label, "details": match.details}])
    *_, (_, outcome) = drive(genesys, spec, long_wait=0)  # stops at the first wait
    assert isinstance(outcome, Waiting) and "checking it in" in outcome.note
    connectors.sandboxes.stop()


def test_a_days_long_genesys_request_is_polled_within_the_budget(session_factory, tmp_path) -> None:
    """Rehearsal on a driven clock: a Genesys export that takes three days, as real ones do,
    is polled by the engine less and less often (at most every 30 minutes once it is old), and
    completes; the whole wait costs a few hundred calls, not the 50,000 of a 5 s poll."""
    clock = ManualClock(T0)
    epoch = lambda: clock.now().timestamp()  # noqa: E731  (the stand-in and connector share it)
    settings = Settings(_env_file=None, DSR_DATA_DIR=str(tmp_path), DSR_SANDBOX_PEOPLE=6,
                        DSR_POLL_SECONDS=5, DSR_SANDBOX_GENESYS_REQUEST_SECONDS=3 * 86400)
    connectors = ConnectorRegistry(settings, Sandboxes(settings, clock=epoch),
                                   sleep=lambda s: None, limits=FAST, clock=epoch)
    connectors.sandboxes.url("genesys")
    genesys = connectors.sandboxes.instances["genesys"]
    email = "ada.rehearsal@example.com"
    genesys.add_subject("Ada Rehearsal", emails=[email], phones=["+15558880002"])
    request_id = file_request(session_factory, connectors, clock, RequestType.ACCESS,
                              email, systems=("genesys",))
    run_until_settled(session_factory, connectors, clock, [request_id])
    with session_factory() as session:
        assert session.get(DsrRequest, request_id).status == RequestStatus.COMPLETED
    elapsed = clock.now() - T0
    polls = sum(n for call, n in genesys.traffic.stats.calls.items()
                if call.startswith("GET /api/v2/gdpr/requests/"))
    assert timedelta(days=3) <= elapsed < timedelta(days=3, hours=1)
    assert 100 < polls < 200, polls  # ~11 while young, then every 30 minutes for three days
    connectors.sandboxes.stop()


def test_a_genesys_request_ending_in_error_is_posted_anew_on_retry(session_factory,
                                                                    tmp_path) -> None:
    """Genesys ended the request in ERROR: a person retries, and a new request is posted
    (polling the failed one again would fail again forever)."""
    connectors, clock = registry(tmp_path), ManualClock(T0)
    connectors.sandboxes.url("genesys")
    genesys = connectors.sandboxes.instances["genesys"]
    email = "err.subject@example.com"
    genesys.add_subject("Err Subject", emails=[email], phones=["+15558880003"])
    genesys.fail_next()
    request_id = file_request(session_factory, connectors, clock, RequestType.ERASURE, email,
                              systems=("genesys",))
    run_until_settled(session_factory, connectors, clock, [request_id])
    with transaction(session_factory) as session:
        request = session.get(DsrRequest, request_id)
        assert request.status == RequestStatus.NEEDS_ATTENTION
        assert eng.retry(session, request, actor="U_REQUESTER", at=clock.now()) == 1
    run_until_settled(session_factory, connectors, clock, [request_id])
    with session_factory() as session:
        errors = [s.error for s in session.exec(select(ExecutionStep).where(
            ExecutionStep.request_id == request_id))]
        assert session.get(DsrRequest, request_id).status == RequestStatus.COMPLETED, errors
    assert sorted(r.status for r in genesys.state.requests.values()) == ["COMPLETED", "ERROR"]
    connectors.sandboxes.stop()

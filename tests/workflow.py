"""A whole simulated request, from intake to completion, through the real engine and connectors."""

from __future__ import annotations

from datetime import timedelta

from bot.settings import Settings
from bot.wiring import ConnectorRegistry
from services import engine as eng
from services import review as review_plan
from services.connectors.http import Limits
from services.intake import confirm_records
from services.lifecycle import TERMINAL, transition
from services.subjects import Identifier
from services.vocabulary import IdentifierKind, RequestStatus, RequestType
from storage.db import SessionFactory, transaction
from storage.models import DsrRequest
from tests.connector_driver import MemorySink
from tests.factories import add_request

FAST = Limits(attempts=12, backoff_base=0.001, backoff_max=0.01)


def registry(tmp_path, **settings) -> ConnectorRegistry:
    values = {"DSR_DATA_DIR": str(tmp_path), "DSR_SANDBOX_PEOPLE": 6, "DSR_POLL_SECONDS": 1,
              **settings}
    return ConnectorRegistry(Settings(_env_file=None, **values), sleep=lambda s: None, limits=FAST)


def file_request(session_factory: SessionFactory, connectors, clock, kind: RequestType,
                 email: str, systems=("zendesk", "genesys"), review=None, **extra) -> int:
    """Intake, search, confirm every match, approve by someone else, schedule. An erasure is
    reviewed first: its discovery runs, `review(session, request)` may change the plan's lines
    (by default the proposed actions stand), and the plan is submitted and approved."""
    identifiers = (Identifier(IdentifierKind.EMAIL, email),)
    with transaction(session_factory) as session:
        request = add_request(session, clock.now(), type=kind, systems=systems,
                              identifiers=identifiers, simulation=True, **extra)
        for system in systems:
            matches = connectors(system, True).search_subjects(identifiers)
            confirm_records(session, request, system, matches, actor="U_REQUESTER", at=clock.now())
        if kind is RequestType.ERASURE:
            transition(session, request, RequestStatus.IN_REVIEW, actor="U_REQUESTER",
                       at=clock.now())
            eng.schedule_discovery(session, request, connectors, at=clock.now())
        request_id = request.id
    if kind is RequestType.ERASURE:
        run_discovery(session_factory, connectors, clock, request_id)
    with transaction(session_factory) as session:
        request = session.get(DsrRequest, request_id)
        if kind is RequestType.ERASURE:
            if review is not None:
                review(session, request)
            review_plan.submit(session, request, actor="U_REQUESTER", at=clock.now())
        else:
            transition(session, request, RequestStatus.PENDING_APPROVAL, actor="U_REQUESTER",
                       at=clock.now())
        transition(session, request, RequestStatus.APPROVED, actor="U_APPROVER", at=clock.now())
        eng.schedule(session, request, connectors, at=clock.now())
        return request.id


def run_discovery(session_factory: SessionFactory, connectors, clock, request_id: int) -> None:
    """Run the read-only discovery of an erasure in review until its plan is ready."""
    worker = eng.Worker(session_factory, connectors, lambda request, system: MemorySink(), clock,
                        worker_id="discovery-worker")
    for _ in range(1000):
        with session_factory() as session:
            done, total, failed = review_plan.discovery_state(session, request_id)
            assert not failed, failed
            if done == total:
                return
            due = eng.next_due_at(session)
        if not worker.run_once(10):
            clock.current = max(clock.current, due or clock.current) + timedelta(seconds=1)
    raise AssertionError("discovery did not finish")


def run_until_settled(session_factory: SessionFactory, connectors, clock, request_ids,
                      worker=None, max_rounds: int = 5000) -> eng.Worker:
    """Run the worker, moving the clock to the next due step whenever nothing is due."""
    sinks: dict[tuple[str, str], MemorySink] = {}
    worker = worker or eng.Worker(
        session_factory, connectors,
        lambda request, system: sinks.setdefault((request.reference, system), MemorySink()),
        clock, worker_id="test-worker")
    worker.sinks_written = sinks
    for _ in range(max_rounds):
        with session_factory() as session:
            statuses = [session.get(DsrRequest, r).status for r in request_ids]
            if all(s in TERMINAL or s == RequestStatus.NEEDS_ATTENTION for s in statuses):
                return worker
            due = eng.next_due_at(session)
        if not worker.run_once(10):
            clock.current = max(clock.current, due or clock.current) + timedelta(seconds=1)
    raise AssertionError("requests did not settle")

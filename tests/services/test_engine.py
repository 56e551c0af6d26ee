"""The execution engine with a scripted connector: claiming, outcomes, leases, retries."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from services import engine as eng
from services import notify
from services.connectors.base import (
    Continue,
    Done,
    Failed,
    RetryLater,
    Waiting,
)
from services.connectors.http import VendorBusy
from services.lifecycle import transition
from services.notify import RecordingNotifier
from services.vocabulary import RequestStatus, StepStatus
from storage.db import transaction
from storage.models import AuditEvent, DsrRequest, ExecutionStep, StepAttempt
from tests.conftest import ManualClock
from tests.factories import add_request
from tests.fakes import ScriptedConnector

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Posted:
    """What the status-update job posts from the engine's queued notices."""

    def __init__(self, session_factory, clock) -> None:
        self.sessions, self.clock, self.recorder = session_factory, clock, RecordingNotifier()

    @property
    def events(self):
        notify.deliver(self.sessions, self.recorder, owner="status-job", now=self.clock.now())
        return self.recorder.events


@pytest.fixture
def world(session_factory):
    clock = ManualClock(T0)
    connectors = {"alpha": ScriptedConnector("alpha", ["find", "delete", "purge"]),
                  "beta": ScriptedConnector("beta", ["export"])}
    notifier = Posted(session_factory, clock)

    def worker(name="w1", **config):
        return eng.Worker(session_factory, lambda system, simulation: connectors[system],
                          lambda request, system: None, clock, worker_id=name,
                          config=eng.EngineConfig(**config))

    return clock, connectors, notifier, worker


def approve(session_factory, clock, connectors, systems=("alpha", "beta")) -> int:
    with transaction(session_factory) as session:
        request = add_request(session, clock.now(), systems=systems)
        for status in (RequestStatus.PENDING_APPROVAL, RequestStatus.APPROVED):
            transition(session, request, status, actor="U_APPROVER", at=clock.now())
        eng.schedule(session, request, lambda system, sim: connectors[system], at=clock.now())
        return request.id


def steps_of(session_factory, request_id):
    with session_factory() as session:
        return session.exec(select(ExecutionStep).where(ExecutionStep.request_id == request_id)
                            .order_by(ExecutionStep.position)).all()


def status_of(session_factory, request_id):
    with session_factory() as session:
        return session.get(DsrRequest, request_id).status


def test_schedule_plans_once_and_audits(session_factory, world) -> None:
    clock, connectors, _, _ = world
    request_id = approve(session_factory, clock, connectors)
    steps = steps_of(session_factory, request_id)
    assert [(s.position, s.system, s.action, s.params) for s in steps] == [
        (1, "alpha", "find", {"n": 0}), (2, "alpha", "delete", {"n": 1}),
        (3, "alpha", "purge", {"n": 2}), (4, "beta", "export", {"n": 0}),
    ]
    with transaction(session_factory) as session:
        again = eng.schedule(session, session.get(DsrRequest, request_id),
                             lambda s, sim: connectors[s], at=clock.now())
        planned = session.exec(select(AuditEvent).where(AuditEvent.action == "request.planned")).all()
    assert [s.id for s in again] == [s.id for s in steps]
    assert [e.details for e in planned] == [
        {"steps": ["1:alpha.find", "2:alpha.delete", "3:alpha.purge", "4:beta.export"]}
    ]


def test_runs_to_completion_in_order(session_factory, world) -> None:
    clock, connectors, notifier, worker = world
    request_id = approve(session_factory, clock, connectors)
    w = worker()
    # First round: alpha.find and beta.export are due; alpha.delete waits for alpha.find.
    assert sorted(w.claim(10)) == [s.id for s in steps_of(session_factory, request_id)
                                   if s.action in ("find", "export")]
    assert status_of(session_factory, request_id) == RequestStatus.IN_PROGRESS
    for s in steps_of(session_factory, request_id):
        if s.status == StepStatus.RUNNING:
            w.run_step(s.id)
    while w.run_once(10):
        pass
    assert status_of(session_factory, request_id) == RequestStatus.COMPLETED
    assert [a for _, a, _ in connectors["alpha"].runs] == ["find", "delete", "purge"]
    steps = steps_of(session_factory, request_id)
    assert all(s.status == StepStatus.DONE and s.attempts == 1 for s in steps)
    assert steps[1].result == {"action": "delete"}
    kinds = [e.kind for e in notifier.events]
    assert kinds[0] == "request.started" and kinds[-1] == "request.completed"
    assert kinds.count("step.done") == 4
    with session_factory() as session:
        attempts = session.exec(select(StepAttempt)).all()
        assert sorted(a.outcome for a in attempts) == ["done"] * 4
        assert session.exec(select(DsrRequest)).one().closed_at == clock.now()


def test_waiting_and_continue_keep_checkpoints(session_factory, world) -> None:
    clock, connectors, notifier, worker = world
    connectors["alpha"].script["find"] = [
        Continue({"page": 2}), Waiting({"page": 2, "job": "j1"}, 30, "job queued"),
    ]
    request_id = approve(session_factory, clock, connectors, systems=("alpha",))
    w = worker()
    w.run_once()
    find = steps_of(session_factory, request_id)[0]
    assert (find.status, find.checkpoint) == (StepStatus.WAITING, {"page": 2, "job": "j1"})
    assert w.run_once() == 0  # not due yet
    clock.advance(seconds=31)
    while w.run_once():
        pass
    assert [c for _, a, c in connectors["alpha"].runs if a == "find"] == [
        None, {"page": 2}, {"page": 2, "job": "j1"}]
    assert [e.text for e in notifier.events if e.kind == "step.waiting"] == ["alpha.find: job queued"]
    assert status_of(session_factory, request_id) == RequestStatus.COMPLETED


def test_transient_faults_retry_then_fail_then_resume(session_factory, world) -> None:
    clock, connectors, notifier, worker = world
    connectors["alpha"].script["delete"] = [
        VendorBusy("Zendesk kept failing (503 on DELETE /api/v2/x)", retry_after=5),
        RetryLater(5, "429"), RetryLater(5, "429"),
    ]
    request_id = approve(session_factory, clock, connectors, systems=("alpha",))
    w = worker(max_transient_failures=3)
    for _ in range(10):
        if not w.run_once():
            clock.advance(seconds=6)
    assert status_of(session_factory, request_id) == RequestStatus.NEEDS_ATTENTION
    delete = steps_of(session_factory, request_id)[1]
    assert delete.status == StepStatus.FAILED
    assert delete.error == "gave up after 3 tries: 429"
    assert notifier.events[-1].kind == "request.needs_attention"

    with transaction(session_factory) as session:
        assert eng.retry(session, session.get(DsrRequest, request_id), actor="U_LEAD",
                         at=clock.now()) == 1
    while w.run_once():
        pass
    assert status_of(session_factory, request_id) == RequestStatus.COMPLETED
    actions = [a for _, a, _ in connectors["alpha"].runs]
    assert actions.count("find") == 1  # done steps are not run again
    assert actions.count("delete") == 4


def test_permanent_failure_and_unexpected_errors(session_factory, world) -> None:
    clock, connectors, _, worker = world
    connectors["beta"].script["export"] = [KeyError("jane@example.com"), Failed("no such user")]
    request_id = approve(session_factory, clock, connectors, systems=("beta",))
    w = worker()
    w.run_once()
    export = steps_of(session_factory, request_id)[0]
    assert export.status == StepStatus.PENDING and export.transient_failures == 1
    clock.advance(seconds=31)
    w.run_once()
    assert status_of(session_factory, request_id) == RequestStatus.NEEDS_ATTENTION
    with session_factory() as session:
        notes = [a.note for a in session.exec(select(StepAttempt).order_by(StepAttempt.id))]
    assert notes[0].startswith("internal error (KeyError at ")
    assert "jane" not in notes[0]  # the exception's message may hold personal data
    assert notes[1] == "no such user"


def test_expired_lease_is_taken_over_and_the_old_owner_is_fenced(session_factory, world) -> None:
    clock, connectors, _, worker = world
    request_id = approve(session_factory, clock, connectors, systems=("beta",))
    crashed, rescuer = worker("crashed", lease_seconds=60), worker("rescuer", lease_seconds=60)
    [step_id] = crashed.claim()
    assert rescuer.claim() == []  # the lease holds
    clock.advance(seconds=61)
    assert rescuer.claim() == [step_id]
    assert crashed.record(step_id, Done({"late": True})) is False
    rescuer.run_step(step_id)
    step = steps_of(session_factory, request_id)[0]
    assert (step.status, step.result, step.attempts) == (StepStatus.DONE, {"action": "export"}, 2)


def test_steps_of_unapproved_or_canceled_requests_are_not_claimed(session_factory, world) -> None:
    clock, connectors, _, worker = world
    request_id = approve(session_factory, clock, connectors, systems=("beta",))
    with transaction(session_factory) as session:
        transition(session, session.get(DsrRequest, request_id), RequestStatus.CANCELED,
                   actor="U_LEAD", at=clock.now())
    assert worker().claim() == []


def test_concurrent_workers_run_each_step_once(session_factory, world) -> None:
    clock, connectors, _, worker = world
    request_ids = [approve(session_factory, clock, connectors) for _ in range(10)]
    workers = [worker(f"w{i}") for i in range(4)]
    errors = []

    def all_done() -> bool:
        return {status_of(session_factory, r) for r in request_ids} == {RequestStatus.COMPLETED}

    def loop(w):
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline and (w.run_once(2) or not all_done()):
                pass
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    runs = Counter((ref, action) for c in connectors.values() for ref, action, _ in c.runs)
    assert len(runs) == 40 and set(runs.values()) == {1}
    assert {status_of(session_factory, r) for r in request_ids} == {RequestStatus.COMPLETED}


def test_a_restarted_worker_resumes_its_own_steps_at_once(session_factory, world) -> None:
    clock, connectors, _, worker = world
    request_id = approve(session_factory, clock, connectors, systems=("beta",))
    [step_id] = worker("replica-1").claim()
    assert worker("replica-2").claim() == []
    assert worker("replica-1").recover() == 1  # the same name, after a restart
    assert worker("replica-1").run_once() == 1
    with session_factory() as session:
        outcomes = session.exec(select(StepAttempt.outcome).where(StepAttempt.step_id == step_id)
                                .order_by(StepAttempt.id)).all()
    assert outcomes == ["crashed", "done"]
    assert status_of(session_factory, request_id) == RequestStatus.COMPLETED


def test_a_restart_mid_wait_does_not_post_the_same_progress_again(session_factory, world) -> None:
    """The worker dies while polling a vendor job and its replacement (same id) finds the job
    still running: the thread already says so, and is not told again."""
    clock, connectors, notifier, worker = world
    connectors["beta"].script["export"] = [Waiting({"job": "j1"}, 30, "job queued"),
                                           Waiting({"job": "j1"}, 30, "job queued")]
    request_id = approve(session_factory, clock, connectors, systems=("beta",))
    assert worker("replica-1").run_once() == 1  # waiting, and said so
    clock.advance(seconds=31)
    assert worker("replica-1").claim()  # taken again; the worker dies holding it
    assert worker("replica-1").recover() == 1  # its replacement
    for _ in range(3):  # waiting again, then done
        worker("replica-1").run_once()
        clock.advance(seconds=31)
    assert status_of(session_factory, request_id) == RequestStatus.COMPLETED
    assert [e.text for e in notifier.events if e.kind == "step.waiting"] == ["beta.export: job queued"]

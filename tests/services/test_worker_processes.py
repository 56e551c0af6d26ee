"""Worker processes: killed mid-erasure and restarted; two workers sharing PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import select

from bot.settings import Settings
from bot.wiring import ConnectorRegistry
from services import audit
from services.sandbox.server import serve
from services.sandbox.traffic import FaultPlan
from services.vendors.zendesk.standin import ZendeskSandbox
from services.vocabulary import RequestStatus, RequestType, StepStatus
from storage import migrate
from storage.db import make_engine, make_session_factory
from storage.models import AuditEvent, DsrRequest, ExecutionStep, StepAttempt
from tests.conftest import ManualClock, child_env
from tests.workflow import FAST, file_request, run_until_settled

ROOT = Path(__file__).resolve().parents[2]
VICTIM = "mary.somerville@example.org"


def start_worker(database_url: str, sandbox_url: str, worker_id: str) -> subprocess.Popen:
    env = child_env("DSR_", "DATABASE_")
    env.update({"PYTHONPATH": str(ROOT), "DATABASE_URL": database_url,
                "DSR_SANDBOX_ZENDESK_URL": sandbox_url, "DSR_POLL_SECONDS": "0.05",
                "ZENDESK_REQUESTS_PER_MINUTE": "100000", "DSR_LOG_LEVEL": "WARNING"})
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "worker", "--worker-id", worker_id,
         "--idle-seconds", "0.05", "--lease-seconds", "300"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(condition, timeout: float = 90.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def stop(process: subprocess.Popen) -> str:
    process.terminate()
    output, _ = process.communicate(timeout=20)
    return output


def add_victim(sandbox: ZendeskSandbox) -> None:
    user = sandbox.add_user("Mary Somerville", email=VICTIM, phone="+15559990001")
    for n in range(450):
        sandbox.add_ticket(user["id"], subject=f"Order {n}", description="x", status="closed",
                           comments=[f"Reply to {VICTIM}"])
    other = sandbox.add_user("Colleague", email="colleague@example.net")
    for n in range(30):  # someone else's tickets: redacted one per run, the step kept running
        sandbox.add_ticket(other["id"], subject=f"Note {n}", description="x", status="open",
                           comments=[f"Mary Somerville ({VICTIM}) called"])


def connectors_for(url: str, tmp_path: Path) -> ConnectorRegistry:
    settings = Settings(_env_file=None, DSR_DATA_DIR=str(tmp_path), DSR_SANDBOX_ZENDESK_URL=url)
    return ConnectorRegistry(settings, sleep=lambda s: None, limits=FAST, poll_seconds=0)


def test_worker_killed_mid_erasure_finishes_after_restart(database_url, tmp_path) -> None:
    # What a run that is never interrupted leaves behind.
    reference = ZendeskSandbox(seed=2, people=3, requests_per_minute=None)
    add_victim(reference)
    factory = make_session_factory(make_engine(database_url))
    clock = ManualClock(datetime.now(UTC))

    sandbox = ZendeskSandbox(seed=2, people=3, requests_per_minute=None,
                             faults=FaultPlan(slow_rate=1.0, slow_seconds=0.01))
    add_victim(sandbox)
    with serve(reference.wsgi) as clean_server, serve(sandbox.wsgi) as server:
        clean_registry = connectors_for(clean_server.url, tmp_path)
        clean_db = make_engine(f"sqlite:///{tmp_path / 'clean.sqlite3'}")
        migrate.upgrade(clean_db)
        clean_factory = make_session_factory(clean_db)
        clean_id = file_request(clean_factory, clean_registry, clock, RequestType.ERASURE, VICTIM,
                                systems=("zendesk",))
        run_until_settled(clean_factory, clean_registry, clock, [clean_id])

        request_id = file_request(factory, connectors_for(server.url, tmp_path), clock,
                                  RequestType.ERASURE, VICTIM, systems=("zendesk",))

        def redacting_midway() -> bool:
            with factory() as session:
                step = session.exec(select(ExecutionStep).where(
                    ExecutionStep.request_id == request_id,
                    ExecutionStep.action == "redact_tickets")).one()
                # between its runs the step stays RUNNING (Continue): killed there, it was left
                # running by a crash, and the restarted worker resumes it from its checkpoint
                return step.status == StepStatus.RUNNING and \
                    (step.checkpoint or {}).get("index", 0) >= 5

        first = start_worker(database_url, server.url, "replica-a")
        wait_for(redacting_midway, what="the redaction to be part-way")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        with factory() as session:
            assert session.get(DsrRequest, request_id).status == RequestStatus.IN_PROGRESS

        second = start_worker(database_url, server.url, "replica-a")

        def completed() -> bool:
            with factory() as session:
                return session.get(DsrRequest, request_id).status == RequestStatus.COMPLETED

        try:
            wait_for(completed, what="the restarted worker to finish")
        finally:
            output = stop(second)
        assert "resumed 1 step(s) left running by a crash" in output

    assert sandbox.snapshot() == reference.snapshot()
    with factory() as session:
        assert audit.verify(session).ok
        done = session.exec(select(AuditEvent.details).where(
            AuditEvent.request_id == request_id, AuditEvent.action == "step.done")).all()
        assert sorted(d["action"] for d in done) == sorted(
            ["find_tickets", "redact_tickets", "delete_tickets", "purge_tickets",
             "delete_users", "purge_users"])  # each step finished, and once
        outcomes = session.exec(select(StepAttempt.outcome)).all()
        assert "crashed" in outcomes
        delete = session.exec(select(ExecutionStep).where(
            ExecutionStep.request_id == request_id,
            ExecutionStep.action == "delete_tickets")).one()
        assert delete.result["count"] == 450


@pytest.mark.postgres
def test_two_workers_on_postgres_run_each_step_once(postgres, postgres_template, tmp_path) -> None:
    name = f"dsr_w_{os.getpid()}_{int(time.time())}"
    database_url = postgres.create(name, template=postgres_template)
    sandbox = ZendeskSandbox(seed=4, people=50, requests_per_minute=None,
                             faults=FaultPlan(slow_rate=1.0, slow_seconds=0.005))
    factory = make_session_factory(make_engine(database_url))
    clock = ManualClock(datetime.now(UTC))
    try:
        with serve(sandbox.wsgi) as server:
            registry = connectors_for(server.url, tmp_path)
            emails = sorted(u["email"] for u in sandbox.state.users.values()
                            if u["role"] == "end-user")[:50]
            workers = [start_worker(database_url, server.url, f"replica-{n}") for n in (1, 2)]
            try:
                ids = [file_request(factory, registry, clock,
                                    RequestType.OBJECTION if n % 2 else RequestType.ACCESS,
                                    email, systems=("zendesk",))
                       for n, email in enumerate(emails)]

                def all_completed() -> bool:
                    with factory() as session:
                        return all(session.get(DsrRequest, i).status == RequestStatus.COMPLETED
                                   for i in ids)

                wait_for(all_completed, timeout=120, what="50 requests to complete")
            finally:
                for worker in workers:
                    stop(worker)
        with factory() as session:
            steps = session.exec(select(ExecutionStep)).all()
            attempts = session.exec(select(StepAttempt).order_by(StepAttempt.started_at)).all()
        assert len(ids) == 50 and len(steps) == 75  # 25 x 2 export steps + 25 x 1 suspension
        by_step: dict[int, list[StepAttempt]] = {}
        for attempt in attempts:
            by_step.setdefault(attempt.step_id, []).append(attempt)
        for step in steps:
            runs = by_step[step.id]
            assert [a.outcome for a in runs].count("done") == 1, step.id
            for earlier, later in zip(runs, runs[1:], strict=False):
                assert earlier.finished_at <= later.started_at  # never two at once
        assert {a.worker for a in attempts} == {"replica-1", "replica-2"}
        suspensions = [n for call, n in sandbox.traffic.stats.calls.items()
                       if call.startswith("PUT /api/v2/users/")]
        assert len(suspensions) == 25 and set(suspensions) == {1}  # one PUT per subject, ever
    finally:
        factory.kw["bind"].dispose()
        postgres.drop(name)

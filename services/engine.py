"""The durable execution engine.

Approval turns a request into steps in the database (`schedule`). Workers, in any number of
processes, claim due steps atomically with a lease (a conditional UPDATE; on PostgreSQL the
candidates are also locked with FOR UPDATE SKIP LOCKED so workers do not even contend), run
them outside any transaction, and record each outcome and attempt. A worker that dies leaves a
lease that expires; another worker then resumes the step from its last checkpoint. Every write
of an outcome is fenced by the lease: a worker that lost its lease cannot overwrite the new
owner's progress.

Steps of one system run in order (a step waits for the earlier ones of its system); systems
run side by side. When every step is done the request completes; a step that fails for good
moves the request to needs_attention, and `retry` resumes it from where it stopped.
"""

from __future__ import annotations

import logging
import os
import socket
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from services import audit, notify, review
from services.connectors.base import (
    Connector,
    Continue,
    Done,
    ExportSink,
    Failed,
    Outcome,
    RequestSpec,
    RetryLater,
    StepRun,
    Waiting,
)
from services.connectors.http import VendorBusy, VendorError
from services.errors import ConcurrentUpdate, TransitionNotAllowed
from services.lifecycle import transition
from services.subjects import Identifier
from services.vocabulary import IdentifierPurpose, RequestStatus, RequestType, StepPhase, StepStatus
from storage.db import SessionFactory, transaction
from storage.models import DsrRequest, ExecutionStep, RequestSystem, StepAttempt, SubjectIdentifier

log = logging.getLogger(__name__)
SYSTEM_ACTOR = "dsr-desk"
CRASHED = "crashed"  # the outcome `recover` gives the attempts a dead worker left open

# (system, simulation) -> the connector to use
ConnectorProvider = Callable[[str, bool], Connector]
# (request, system) -> where an access request's data goes
SinkProvider = Callable[[DsrRequest, str], ExportSink]


@dataclass(frozen=True)
class EngineConfig:
    lease_seconds: float = 120.0
    max_transient_failures: int = 8  # consecutive RetryLater before a step fails for good
    claim_batch: int = 5


DEFAULT_CONFIG = EngineConfig()


def request_spec(session: Session, request: DsrRequest, system: str, *,
                 with_plan: bool = False) -> RequestSpec:
    rows = session.exec(
        select(SubjectIdentifier).where(SubjectIdentifier.request_id == request.id)
        .order_by(SubjectIdentifier.id)
    ).all()

    def of(purpose: IdentifierPurpose) -> list[Identifier]:
        return [Identifier(r.kind, r.value, r.system) for r in rows if r.purpose == purpose]

    covered = session.exec(
        select(RequestSystem).where(
            RequestSystem.request_id == request.id, RequestSystem.system == system
        )
    ).first()
    return RequestSpec(
        reference=request.reference,
        type=request.type,
        identifiers=of(IdentifierPurpose.IDENTIFIES),
        confirmed=tuple(covered.confirmed_records or ()) if covered else (),
        new_values=of(IdentifierPurpose.NEW_VALUE),
        search_terms=[i.value for i in of(IdentifierPurpose.SEARCH_TERM)],
        plan=review.approved_entries(session, request.id, system) if with_plan else (),
    )


def _systems(session: Session, request: DsrRequest) -> list[RequestSystem]:
    return list(session.exec(select(RequestSystem).where(RequestSystem.request_id == request.id)
                             .order_by(RequestSystem.id)))


def _add_steps(session: Session, request: DsrRequest, planned: list[tuple[str, Any]],
               phase: StepPhase, at: datetime) -> list[ExecutionStep]:
    last = session.exec(select(sa.func.max(ExecutionStep.position))
                        .where(ExecutionStep.request_id == request.id)).one() or 0
    steps = [ExecutionStep(request_id=request.id, position=last + n, system=system,
                           action=step.action, params=step.params, phase=phase,
                           status=StepStatus.PENDING, created_at=at)
             for n, (system, step) in enumerate(planned, start=1)]
    session.add_all(steps)
    session.flush()
    return steps


def schedule_discovery(session: Session, request: DsrRequest, connectors: ConnectorProvider, *,
                       at: datetime) -> list[ExecutionStep]:
    """An erasure going into review: the read-only steps that find what it would touch (they
    run while it is in review); a system without them gets one plan line per confirmed record."""
    planned = []
    for covered in _systems(session, request):
        connector = connectors(covered.system, request.simulation)
        discover = getattr(connector, "discover", None)
        found = discover(request_spec(session, request, covered.system)) if discover else []
        if found:
            planned += [(covered.system, step) for step in found]
        elif not review.has_lines(session, request.id, covered.system):
            review.store_confirmed(session, request, covered, at=at)
    steps = _add_steps(session, request, planned, StepPhase.DISCOVERY, at)
    audit.record(session, action="request.discovery_planned", actor=SYSTEM_ACTOR, at=at,
                 request_id=request.id,
                 details={"steps": [f"{s.position}:{s.system}.{s.action}" for s in steps]})
    if not steps:
        notify.enqueue(session, request.id, "review.ready", "The plan is ready for review.", at)
    return steps


def schedule(
    session: Session, request: DsrRequest, connectors: ConnectorProvider, *, at: datetime
) -> list[ExecutionStep]:
    """Plan the request's steps (once; a second call returns the steps still to run). An
    erasure's steps carry out the lines of its approved plan not done yet (all of them, unless
    it was reviewed again after a failure); one whose plan leaves everything completes at once."""
    existing = session.exec(
        select(ExecutionStep).where(ExecutionStep.request_id == request.id,
                                    ExecutionStep.phase == StepPhase.EXECUTION,
                                    ExecutionStep.status != StepStatus.CANCELED)
        .order_by(ExecutionStep.position)
    ).all()
    if request.type == RequestType.ERASURE:  # steps done before a review again stay done
        existing = [s for s in existing if s.status != StepStatus.DONE]
    if existing:
        return list(existing)
    planned = []
    for covered in _systems(session, request):
        spec = request_spec(session, request, covered.system,
                            with_plan=request.type == RequestType.ERASURE)
        planned += [(covered.system, step)
                    for step in connectors(covered.system, request.simulation).plan(spec)]
    steps = _add_steps(session, request, planned, StepPhase.EXECUTION, at)
    audit.record(
        session,
        action="request.planned",
        actor=SYSTEM_ACTOR,
        at=at,
        request_id=request.id,
        details={"steps": [f"{s.position}:{s.system}.{s.action}" for s in steps],
                 **({"plan_sha256": request.plan_sha256} if request.plan_sha256 else {})},
    )
    if not steps:
        for status in (RequestStatus.IN_PROGRESS, RequestStatus.COMPLETED):
            transition(session, request, status, actor=SYSTEM_ACTOR, at=at,
                       reason="the approved plan leaves everything as it is")
            request.status = status
        notify.enqueue(session, request.id, "request.completed",
                       "Nothing to do: the approved plan leaves everything as it is.", at)
    return steps


def review_again(session: Session, request: DsrRequest, connectors: ConnectorProvider, *,
                 actor: str, at: datetime) -> list[ExecutionStep]:
    """An erasure that needs attention goes back to review: the steps it had not finished are
    canceled (what they did stays done, and so do the plan's lines), discovery runs again and
    adds what is new (a ticket filed since), and the plan goes to the approvers again."""
    unfinished = session.exec(select(ExecutionStep).where(
        ExecutionStep.request_id == request.id, ExecutionStep.phase == StepPhase.EXECUTION,
        ExecutionStep.status.not_in([StepStatus.DONE, StepStatus.CANCELED]))).all()
    for step in unfinished:
        step.status, step.finished_at, step.next_run_at = StepStatus.CANCELED, at, None
        session.add(step)
    transition(session, request, RequestStatus.IN_REVIEW, actor=actor, at=at,
               reason="reviewed again", details={"canceled_steps": [s.id for s in unfinished]})
    request.status, request.plan_sha256 = RequestStatus.IN_REVIEW, None
    session.add(request)
    session.flush()
    return schedule_discovery(session, request, connectors, at=at)


def retry(session: Session, request: DsrRequest, *, actor: str, at: datetime) -> int:
    """Resume a request that needs attention: its failed steps run again. Returns their count."""
    failed = session.exec(
        select(ExecutionStep).where(
            ExecutionStep.request_id == request.id, ExecutionStep.status == StepStatus.FAILED
        )
    ).all()
    if request.status == RequestStatus.IN_REVIEW:  # a discovery that failed: find again
        if not failed:
            raise TransitionNotAllowed(f"{request.reference} is in review and nothing failed.")
        audit.record(session, action="request.discovery_retried", actor=actor, at=at,
                     request_id=request.id, details={"retried_steps": [s.id for s in failed]})
    else:
        transition(session, request, RequestStatus.IN_PROGRESS, actor=actor, at=at,
                   details={"retried_steps": [s.id for s in failed]})
    for step in failed:
        step.status, step.error, step.next_run_at = StepStatus.PENDING, None, None
        step.transient_failures, step.finished_at = 0, None
        session.add(step)
    session.flush()
    return len(failed)


def _safe_trace(exc: BaseException) -> str:
    """Where an unexpected error happened, without its message (which may hold personal data)."""
    return f"{type(exc).__name__} at " + " <- ".join(
        f"{frame.name}:{frame.lineno}" for frame in reversed(traceback.extract_tb(exc.__traceback__))
    )


class Worker:
    def __init__(
        self,
        session_factory: SessionFactory,
        connectors: ConnectorProvider,
        sinks: SinkProvider,
        clock: Any,
        *,
        worker_id: str | None = None,
        config: EngineConfig = DEFAULT_CONFIG,
    ) -> None:
        self.sessions = session_factory
        self.connectors = connectors
        self.sinks = sinks
        self.clock = clock
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.config = config

    def recover(self) -> int:
        """Release steps this worker id still leases from an earlier life (it crashed): they
        become due again at once instead of after the lease. Returns how many."""
        now = self.clock.now()
        with transaction(self.sessions) as session:
            session.execute(
                sa.update(StepAttempt)
                .where(StepAttempt.worker == self.id, StepAttempt.finished_at.is_(None))
                .values(finished_at=now, outcome=CRASHED,
                        note="the worker stopped before the step finished")
                .execution_options(synchronize_session=False)
            )
            released = session.execute(
                sa.update(ExecutionStep)
                .where(ExecutionStep.status == StepStatus.RUNNING,
                       ExecutionStep.lease_owner == self.id)
                .values(status=StepStatus.PENDING, lease_owner=None, lease_expires_at=None,
                        next_run_at=now)
                .execution_options(synchronize_session=False)
            )
        return released.rowcount

    # Claiming

    def claim(self, limit: int | None = None) -> list[int]:
        """Atomically take up to `limit` due steps; returns their ids."""
        now = self.clock.now()
        lease_until = now + timedelta(seconds=self.config.lease_seconds)
        step, earlier = ExecutionStep, aliased(ExecutionStep)
        blocked = sa.exists().where(
            earlier.request_id == step.request_id,
            earlier.system == step.system,
            earlier.position < step.position,
            earlier.status.not_in([StepStatus.DONE, StepStatus.CANCELED]),
        )
        due = sa.or_(
            sa.and_(
                step.status.in_([StepStatus.PENDING, StepStatus.WAITING]),
                sa.or_(step.next_run_at.is_(None), step.next_run_at <= now),
            ),
            sa.and_(step.status == StepStatus.RUNNING, step.lease_expires_at < now),
        )
        claimed: list[int] = []
        with transaction(self.sessions) as session:
            query = (
                select(step.id)
                .join(DsrRequest, DsrRequest.id == step.request_id)
                .where(due, ~blocked, sa.or_(
                    DsrRequest.status.in_([RequestStatus.APPROVED, RequestStatus.IN_PROGRESS]),
                    # read-only discovery runs while the plan is in review, nothing else does
                    sa.and_(DsrRequest.status == RequestStatus.IN_REVIEW,
                            step.phase == StepPhase.DISCOVERY)))
                .order_by(step.next_run_at, step.id)
                .limit(limit or self.config.claim_batch)
            )
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True, of=step)
            for step_id in session.exec(query).all():
                taken = session.execute(
                    sa.update(step)
                    .where(step.id == step_id, due)
                    .values(status=StepStatus.RUNNING, lease_owner=self.id,
                            lease_expires_at=lease_until, attempts=step.attempts + 1,
                            started_at=sa.func.coalesce(step.started_at, now))
                    .execution_options(synchronize_session=False)
                )
                if taken.rowcount != 1:
                    continue
                claimed.append(step_id)
                session.add(StepAttempt(step_id=step_id, worker=self.id, started_at=now))
                request = session.get(DsrRequest, session.get(step, step_id).request_id)
                if request.status == RequestStatus.APPROVED:
                    try:
                        transition(session, request, RequestStatus.IN_PROGRESS,
                                   actor=SYSTEM_ACTOR, at=now)
                        notify.enqueue(session, request.id, "request.started", "Execution started.", now)
                    except ConcurrentUpdate:
                        session.refresh(request)  # another worker started it
        return claimed

    # Running

    def run_once(self, limit: int | None = None) -> int:
        """Claim due steps and run each until it finishes, waits or must retry later."""
        claimed = self.claim(limit)
        for step_id in claimed:
            self.run_step(step_id)
        return len(claimed)

    def run_step(self, step_id: int) -> None:
        while True:
            with self.sessions() as session:
                step = session.get(ExecutionStep, step_id)
                if step is None or step.status != StepStatus.RUNNING or step.lease_owner != self.id:
                    return  # lost the lease: the new owner carries on
                request = session.get(DsrRequest, step.request_id)
                run = StepRun(
                    action=step.action,
                    params=dict(step.params or {}),
                    checkpoint=step.checkpoint,
                    spec=request_spec(session, request, step.system),
                    earlier_results=self._earlier_results(session, step),
                    sink=self.sinks(request, step.system),
                )
                connector = self.connectors(step.system, request.simulation)
            outcome = self._attempt(connector, run, step_id)
            if not self.record(step_id, outcome) or not isinstance(outcome, Continue):
                return

    def _attempt(self, connector: Connector, run: StepRun, step_id: int) -> Outcome:
        try:
            return connector.run_step(run)
        except VendorBusy as exc:
            return RetryLater(exc.retry_after, str(exc))
        except VendorError as exc:
            return Failed(str(exc))
        except Exception as exc:  # noqa: BLE001 - an unexpected fault becomes a retry, then a failure
            where = _safe_trace(exc)
            log.error("step %s raised %s", step_id, where)
            return RetryLater(30.0, f"internal error ({where})")

    def _earlier_results(self, session: Session, step: ExecutionStep) -> dict[str, dict[str, Any]]:
        done = session.exec(
            select(ExecutionStep).where(
                ExecutionStep.request_id == step.request_id,
                ExecutionStep.system == step.system,
                ExecutionStep.position < step.position,
            )
        ).all()
        return {s.action: dict(s.result or {}) for s in done}

    # Recording

    def record(self, step_id: int, outcome: Outcome) -> bool:
        """Store an outcome, fenced by our lease. False if the lease was lost meanwhile."""
        now = self.clock.now()
        with transaction(self.sessions) as session:
            step = session.exec(
                select(ExecutionStep).where(ExecutionStep.id == step_id)
                .with_for_update().execution_options(populate_existing=True)
            ).one()
            if step.status != StepStatus.RUNNING or step.lease_owner != self.id:
                log.warning("step %s: lease lost before its outcome was recorded", step_id)
                return False
            request = session.get(DsrRequest, step.request_id)
            if isinstance(outcome, RetryLater) and (
                step.transient_failures + 1 >= self.config.max_transient_failures
            ):
                outcome = Failed(f"gave up after {step.transient_failures + 1} tries: {outcome.reason}")
            attempt = session.exec(
                select(StepAttempt).where(StepAttempt.step_id == step_id,
                                          StepAttempt.worker == self.id,
                                          StepAttempt.finished_at.is_(None))
                .order_by(StepAttempt.id.desc())
            ).first()
            label = f"{step.system}.{step.action}"

            if isinstance(outcome, (Continue, Done, Waiting)) and outcome.verified:
                review.mark_verified(session, request.id, step.system, outcome.verified, at=now)
            if isinstance(outcome, Continue):
                step.checkpoint = outcome.checkpoint
                step.transient_failures = 0
                step.lease_expires_at = now + timedelta(seconds=self.config.lease_seconds)
                session.add(step)
                return True

            step.lease_owner, step.lease_expires_at = None, None
            kind, note = "done", None
            if isinstance(outcome, Done):
                step.status, step.result, step.finished_at = StepStatus.DONE, outcome.summary, now
                step.transient_failures = 0
                audit.record(session, action="step.done", actor=SYSTEM_ACTOR, at=now,
                             request_id=request.id,
                             details={"step": step.id, "system": step.system,
                                      "action": step.action, "result": outcome.summary,
                                      "simulation": request.simulation})
                notify.enqueue(session, request.id, "step.done", f"{label} done.", now, step.id)
                if step.phase == StepPhase.DISCOVERY:
                    review.store_candidates(session, request, step.system, outcome.candidates,
                                            at=now)
            elif isinstance(outcome, Waiting):
                kind, note = "waiting", outcome.note
                step.status, step.checkpoint = StepStatus.WAITING, outcome.checkpoint
                step.next_run_at = now + timedelta(seconds=outcome.seconds)
                step.transient_failures = 0
                if outcome.note != self._last_note(session, step_id):
                    notify.enqueue(session, request.id, "step.waiting", f"{label}: {outcome.note}",
                                   now, step.id)
            elif isinstance(outcome, RetryLater):
                kind, note = "retry", outcome.reason
                step.status = StepStatus.PENDING
                step.next_run_at = now + timedelta(seconds=outcome.seconds)
                step.transient_failures += 1
            else:
                kind, note = "failed", outcome.reason
                step.status, step.error, step.finished_at = StepStatus.FAILED, outcome.reason, now
                if outcome.checkpoint is not None:
                    step.checkpoint = outcome.checkpoint
                audit.record(session, action="step.failed", actor=SYSTEM_ACTOR, at=now,
                             request_id=request.id,
                             details={"step": step.id, "system": step.system,
                                      "action": step.action, "reason": outcome.reason,
                                      "simulation": request.simulation})
            session.add(step)
            if attempt is not None:
                attempt.finished_at, attempt.outcome, attempt.note = now, kind, note
                session.add(attempt)
            session.flush()
            self._settle_request(session, request, now, step, outcome)
        return True

    def _last_note(self, session: Session, step_id: int) -> str | None:
        # An attempt its worker died in (closed by `recover`) recorded no outcome: compare with
        # the note of the last attempt that did, which was posted; else a restart posts it again.
        return session.exec(
            select(StepAttempt.note).where(StepAttempt.step_id == step_id,
                                           StepAttempt.finished_at.is_not(None),
                                           StepAttempt.outcome != CRASHED)
            .order_by(StepAttempt.id.desc())
        ).first()

    def _settle_request(self, session: Session, request: DsrRequest, now: datetime,
                        step: ExecutionStep, outcome: Outcome) -> None:
        if request.status == RequestStatus.IN_REVIEW:  # a discovery step: the plan stays in review
            if isinstance(outcome, Failed):
                notify.enqueue(session, request.id, "review.failed",
                               f"Finding the subject's data in {step.system} failed: "
                               f"{outcome.reason}", now, step.id)
            elif isinstance(outcome, Done):
                done, total, _ = review.discovery_state(session, request.id)
                if done == total:
                    notify.enqueue(session, request.id, "review.ready",
                                   "The plan is ready for review.", now)
            return
        if isinstance(outcome, Failed):
            try:
                transition(session, request, RequestStatus.NEEDS_ATTENTION, actor=SYSTEM_ACTOR,
                           at=now, reason=outcome.reason)
            except TransitionNotAllowed:
                return  # already needs attention because of another step
            notify.enqueue(session, request.id, "request.needs_attention",
                           f"{step.system}.{step.action} failed: {outcome.reason}", now, step.id)
            return
        if not isinstance(outcome, Done):
            return
        open_steps = session.exec(
            select(sa.func.count()).select_from(ExecutionStep).where(
                ExecutionStep.request_id == request.id,
                ExecutionStep.status.not_in([StepStatus.DONE, StepStatus.CANCELED]),
            )
        ).one()
        if open_steps or request.status != RequestStatus.IN_PROGRESS:
            return
        transition(session, request, RequestStatus.COMPLETED, actor=SYSTEM_ACTOR, at=now)
        notify.enqueue(session, request.id, "request.completed", "All steps done.", now)


def next_due_at(session: Session) -> datetime | None:
    """When the next waiting or retrying step becomes due (for tests and the demo)."""
    return session.exec(
        select(ExecutionStep.next_run_at)
        .where(ExecutionStep.status.in_([StepStatus.PENDING, StepStatus.WAITING]),
               ExecutionStep.next_run_at.is_not(None))
        .order_by(ExecutionStep.next_run_at)
        .limit(1)
    ).first()

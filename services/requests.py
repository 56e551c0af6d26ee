"""RequestService: the one entry point the Slack handlers call for a request's life.

Each method is one transaction, checks the policy, and raises a DsrError with a message the
user can act on. Slow work (vendor searches) is a separate method that handlers run after
they have acknowledged Slack.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, select

from services import audit, deadlines, engine, matching, request_lists, review
from services.clock import Clock
from services.connectors.base import SubjectMatch
from services.errors import (
    AlreadyDecided,
    AlreadyFiled,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from services.intake import NewRequest, confirm_records, create_request
from services.lifecycle import transition
from services.lookup import IdentifierLookup
from services.policy import Policy
from services.request_lists import RequestFilter, RequestLine, RequestPage
from services.subjects import Identifier
from services.vocabulary import ApprovalDecision, IdentifierPurpose, PlanAction, RequestStatus, RequestType
from storage.db import SessionFactory, transaction
from storage.models import Approval, DsrRequest, ExecutionStep, RequestSystem, SlackEvent, SubjectIdentifier
from storage.queries import get_jurisdiction, get_request


@dataclass(frozen=True)
class Decision:
    request: DsrRequest
    decided: bool  # True when this click settled the request (approved or rejected)
    approvals: int  # approvals so far
    required: int


@dataclass(frozen=True)
class RequestDetail:
    request: DsrRequest
    identifiers: list[SubjectIdentifier]
    systems: list[RequestSystem]
    approvals: list[Approval]
    steps: list[ExecutionStep]


def find_request(session: Session, ref: str | int) -> DsrRequest:
    """The request `ref` (DSR-000042 or an id); NotFound, with the expected form, if none."""
    request = get_request(session=session, ref=ref)
    if request is None:
        raise NotFound(f"No request {ref}. References look like DSR-000042.")
    return request


class RequestService:
    def __init__(self, sessions: SessionFactory, connectors: engine.ConnectorProvider,
                 policy: Policy, clock: Clock, zone: ZoneInfo,
                 lookup: IdentifierLookup | None = None) -> None:
        self.sessions = sessions
        self.lookup = lookup  # None: requests are not findable by their subject
        self.connectors = connectors
        self.policy = policy
        self.clock = clock
        self.zone = zone

    # Intake and matching

    def create(self, new: NewRequest) -> DsrRequest:
        self.policy.require(self.policy.is_requester(new.requester), "file data subject requests")
        for system in new.systems:
            supported = getattr(self.connectors(system, new.simulation), "supported_types", None)
            if supported is not None and new.type not in supported:
                raise InvalidRequest(f"{system} cannot carry out {new.type.value} requests.")
        def refuse_if_filed(session: Session) -> None:
            earlier = session.exec(select(DsrRequest).where(
                DsrRequest.intake_key == new.intake_key)).first() if new.intake_key else None
            if earlier is not None:
                raise AlreadyFiled(earlier.reference)

        try:
            with transaction(self.sessions) as session:
                refuse_if_filed(session)
                return create_request(session, new, at=self.clock.now(), zone=self.zone,
                                      lookup=self.lookup)
        except sa.exc.IntegrityError:  # the same submission, on another replica, just now
            with self.sessions() as session:
                refuse_if_filed(session)
            raise

    def search(self, ref: str | int) -> dict[str, list[SubjectMatch]]:
        """Search every system of the request for its subject (slow: call after the ack)."""
        with self.sessions() as session:
            request = self._get(session, ref)
            identifiers = [Identifier(i.kind, i.value, i.system) for i in self._identifiers(
                session, request) if i.purpose == IdentifierPurpose.IDENTIFIES]
            systems = [s.system for s in self._systems(session, request)]
        return {system: self.connectors(system, request.simulation).search_subjects(identifiers)
                for system in systems}

    def find_matches(self, ref: str | int) -> dict[str, int]:
        """Searches every system of the request for its subject (slow: after the ack) and keeps
        what was found for the match picker; returns how many records each system has."""
        found = self.search(ref)
        with transaction(self.sessions) as session:
            request = self._get(session, ref, lock=True)
            if request.status != RequestStatus.RECEIVED:
                raise AlreadyDecided(f"{request.reference} is already {request.status}.")
            matching.store(session, request.id, found)
        return {system: len(matches) for system, matches in found.items()}

    def match_page(self, ref: str | int, system: str, *, viewer: str, offset: int = 0,
                   limit: int = 10, filter: str = "") -> matching.MatchPage:  # noqa: A002
        with self.sessions() as session:
            request = self._get(session, ref)
            if viewer != request.requester_slack_id:
                raise PermissionDenied("Only the person who filed the request picks its records.")
            return matching.page(session, request.id, system, offset=offset, limit=limit,
                                 filter=filter)

    def pick_matches(self, ref: str | int, *, actor: str, shown: set[int],
                     ticked: set[int]) -> None:
        """Saves the ticks of the match rows a page showed."""
        with transaction(self.sessions) as session:
            request = self._get(session, ref)
            if actor != request.requester_slack_id:
                raise PermissionDenied("Only the person who filed the request picks its records.")
            matching.set_picks(session, request.id, shown, ticked)

    def picked_matches(self, ref: str | int) -> dict[str, list[SubjectMatch]]:
        with self.sessions() as session:
            return matching.picked(session, self._get(session, ref).id)

    def search_identifiers(self, system: str, identifiers: Sequence[Identifier], *,
                           simulation: bool) -> list[SubjectMatch]:
        return self.connectors(system, simulation).search_subjects(identifiers)

    def confirm(self, ref: str | int, confirmed: Mapping[str, Sequence[SubjectMatch]], *,
                actor: str) -> DsrRequest:
        """The requester confirms which records are the subject's; the request goes to approval."""
        now = self.clock.now()
        with transaction(self.sessions) as session:
            request = self._get(session, ref, lock=True)
            if actor != request.requester_slack_id:
                raise PermissionDenied("Only the person who filed the request confirms its records.")
            if request.status != RequestStatus.RECEIVED:
                raise AlreadyDecided(f"{request.reference} is already {request.status}.")
            if not any(confirmed.values()):
                raise InvalidRequest("Confirm at least one record, or cancel the request.")
            for system, matches in confirmed.items():
                confirm_records(session, request, system, matches, actor=actor, at=now)
            if request.type == RequestType.ERASURE:
                # Nothing is destroyed before a person has reviewed what would be: the request
                # goes to review, where read-only steps find the subject's data first.
                transition(session, request, RequestStatus.IN_REVIEW, actor=actor, at=now)
                session.refresh(request)
                engine.schedule_discovery(session, request, self.connectors, at=now)
                return request
            for system in confirmed:  # refuse now what the vendor could not carry out later
                self.connectors(system, request.simulation).plan(
                    engine.request_spec(session, request, system))
            transition(session, request, RequestStatus.PENDING_APPROVAL, actor=actor, at=now)
            session.refresh(request)
            return request

    # Review of an erasure's plan

    def plan_page(self, ref: str | int, *, viewer: str, offset: int = 0, limit: int = 20,
                  group: str | None = None) -> tuple[DsrRequest, review.PlanPage]:
        self.policy.require(self.policy.is_requester(viewer) or self.policy.is_approver(viewer),
                            "see erasure plans")
        with self.sessions() as session:
            request = self._get(session, ref)
            return request, review.page(session, request.id, offset=max(0, offset),
                                        limit=limit, group=group)

    def plan_summary(self, ref: str | int) -> tuple[DsrRequest, dict, tuple[int, int, list[str]]]:
        """(request, (system, group, action) -> lines, discovery (done, all, errors))."""
        with self.sessions() as session:
            request = self._get(session, ref)
            return (request, dict(review.summary(session, request.id)),
                    review.discovery_state(session, request.id))

    def set_plan_action(self, ref: str | int, item_id: int, action: str, *,
                        actor: str) -> DsrRequest:
        with transaction(self.sessions) as session:
            request = self._get(session, ref, lock=True)
            review.set_action(session, request, item_id, _plan_action(action), actor=actor,
                              at=self.clock.now())
            session.flush()
            session.refresh(request)
            return request

    def set_plan_group(self, ref: str | int, group: str, action: str, *, actor: str) -> int:
        with transaction(self.sessions) as session:
            request = self._get(session, ref, lock=True)
            return review.set_group(session, request, group, _plan_action(action), actor=actor,
                                    at=self.clock.now())

    def review_again(self, ref: str | int, *, actor: str) -> DsrRequest:
        """An erasure that needs attention (a ticket filed since its review, a line left that
        blocks the rest) goes back to review; its requester reviews, approvers approve again."""
        with transaction(self.sessions) as session:
            request = self._get(session, ref, lock=True)
            if actor != request.requester_slack_id:
                raise PermissionDenied("Only the person who filed the request reviews its plan.")
            if request.type != RequestType.ERASURE or \
                    request.status != RequestStatus.NEEDS_ATTENTION:
                raise InvalidRequest(f"{request.reference} is {request.status}: only an erasure "
                                     "that needs attention is reviewed again.")
            engine.review_again(session, request, self.connectors, actor=actor,
                                at=self.clock.now())
            session.refresh(request)
            return request

    def submit_plan(self, ref: str | int, *, actor: str) -> DsrRequest:
        with transaction(self.sessions) as session:
            request = self._get(session, ref, lock=True)
            review.submit(session, request, actor=actor, at=self.clock.now())
            session.refresh(request)
            return request

    # Approval

    def decide(self, ref: str | int, *, approver: str, approve: bool,
               reason: str | None = None) -> Decision:
        """Record one approver's decision. Safe under racing clicks: the request row is locked,
        an approver is counted once, and the request is approved or rejected exactly once."""
        now = self.clock.now()
        with transaction(self.sessions) as session:
            # The role first: someone who may not decide learns nothing of the request.
            self.policy.require(self.policy.is_approver(approver), "approve or reject requests")
            request = self._get(session, ref, lock=True)
            required = self.policy.required_approvals(RequestType(request.type))
            all_decisions = self._approvals(session, request)
            # An approval counts for the plan it saw: after a change, approvers decide again.
            approvals = [a for a in all_decisions if a.plan_sha256 == request.plan_sha256]
            if request.status == RequestStatus.IN_REVIEW:
                raise InvalidRequest(f"{request.reference}'s plan is in review: it comes to the "
                                     "approvers once its requester sends it.")
            if request.status != RequestStatus.PENDING_APPROVAL:
                who = ""
                if approvals:
                    last = approvals[-1]
                    who = f" by <@{last.approver_slack_id}> at {last.decided_at:%Y-%m-%d %H:%M} UTC"
                raise AlreadyDecided(f"{request.reference} was already {request.status}{who}.")
            if approver == request.requester_slack_id:
                raise PermissionDenied("You filed this request: someone else must decide it.")
            if any(a.approver_slack_id == approver for a in approvals):
                raise AlreadyDecided(f"You already approved {request.reference}; it needs "
                                     f"{required - len(approvals)} more approver(s).")
            if not approve and not (reason or "").strip():
                raise InvalidRequest("A rejection needs a reason.")
            decision = ApprovalDecision.APPROVE if approve else ApprovalDecision.REJECT
            earlier = next((a for a in all_decisions if a.approver_slack_id == approver), None)
            row = earlier or Approval(request_id=request.id, approver_slack_id=approver,
                                      decision=decision, decided_at=now)
            row.decision, row.reason, row.decided_at = decision, (reason or "").strip() or None, now
            row.plan_sha256 = request.plan_sha256
            session.add(row)
            audit.record(session, action="request.approved" if approve else "request.rejected",
                         actor=approver, at=now,
                         request_id=request.id,
                         details={"reason": reason, "plan_sha256": request.plan_sha256})
            count = len(approvals) + approve
            decided = False
            if not approve:
                transition(session, request, RequestStatus.REJECTED, actor=approver, at=now,
                           reason=reason)
                decided = True
            elif count >= required:
                transition(session, request, RequestStatus.APPROVED, actor=approver, at=now)
                engine.schedule(session, request, self.connectors, at=now)
                decided = True
            session.flush()
            session.refresh(request)
            return Decision(request, decided, count, required)

    # Other actions

    def cancel(self, ref: str | int, *, actor: str, reason: str) -> DsrRequest:
        now = self.clock.now()
        with transaction(self.sessions) as session:
            self.policy.require(self.policy.is_requester(actor), "cancel requests")  # role first
            request = self._get(session, ref, lock=True)
            allowed = actor == request.requester_slack_id or self.policy.is_manager(actor) \
                or self.policy.is_approver(actor)
            self.policy.require(allowed, f"cancel {request.reference}")
            transition(session, request, RequestStatus.CANCELED, actor=actor, at=now,
                       reason=reason or None)
            session.refresh(request)
            return request

    def extend(self, ref: str | int, *, actor: str, reason: str) -> date:
        with transaction(self.sessions) as session:
            self.policy.require(self.policy.is_approver(actor) or self.policy.is_manager(actor),
                                "extend deadlines")
            request = self._get(session, ref, lock=True)
            jurisdiction = get_jurisdiction(session=session, code=request.jurisdiction_code)
            return deadlines.extend(session, request, jurisdiction, reason=reason, actor=actor,
                                    at=self.clock.now(), zone=self.zone)

    def acknowledge(self, ref: str | int, *, actor: str) -> DsrRequest:
        """Record that the subject was told we received the request (CCPA: within 10 business
        days); it ends the acknowledgement reminders."""
        with transaction(self.sessions) as session:
            self.policy.require(self.policy.is_requester(actor) or self.policy.is_approver(actor),
                                "record acknowledgements")
            request = self._get(session, ref, lock=True)
            if request.acknowledged_at is not None:
                raise InvalidRequest(f"{request.reference} was acknowledged on "
                                     f"{request.acknowledged_at:%Y-%m-%d %H:%M} UTC already.")
            request.acknowledged_at = self.clock.now()
            session.add(request)
            audit.record(session, action="request.acknowledged", actor=actor,
                         at=request.acknowledged_at, request_id=request.id,
                         details={"ack_due_on": request.ack_due_on.isoformat()
                                  if request.ack_due_on else None})
            return request

    def retry(self, ref: str | int, *, actor: str) -> int:
        with transaction(self.sessions) as session:
            self.policy.require(self.policy.is_requester(actor), "retry requests")  # role first
            request = self._get(session, ref, lock=True)
            allowed = actor == request.requester_slack_id or self.policy.is_approver(actor) \
                or self.policy.is_manager(actor)
            self.policy.require(allowed, f"retry {request.reference}")
            return engine.retry(session, request, actor=actor, at=self.clock.now())

    def first_delivery(self, event_id: str) -> bool:
        """True the first time an Events API event id is seen, on any replica."""
        try:
            with transaction(self.sessions) as session:
                session.add(SlackEvent(event_id=event_id[:64], received_at=self.clock.now()))
        except sa.exc.IntegrityError:
            return False
        return True

    def set_thread(self, ref: str | int, *, channel: str, ts: str) -> None:
        with transaction(self.sessions) as session:
            request = self._get(session, ref)
            request.channel_id, request.thread_ts = channel, ts
            session.add(request)

    # Reading

    def get(self, ref: str | int) -> DsrRequest:
        """The request alone, for the app's own use (threads, notices)."""
        with self.sessions() as session:
            return self._get(session, ref)

    def detail(self, ref: str | int, *, viewer: str | None) -> RequestDetail:
        """The request with everything about it; `viewer=None` for the app's own use."""
        if viewer is not None:
            self.policy.require(self.policy.is_requester(viewer), "see requests")
        with self.sessions() as session:
            request = self._get(session, ref)
            return RequestDetail(
                request,
                self._identifiers(session, request),
                self._systems(session, request),
                self._approvals(session, request),
                list(session.exec(select(ExecutionStep).where(
                    ExecutionStep.request_id == request.id).order_by(ExecutionStep.position))),
            )

    def page(self, filters: RequestFilter, *, viewer: str, offset: int = 0,
             limit: int = 20) -> RequestPage:
        """Requests matching `filters`, soonest deadline first for open-only lists and newest
        first otherwise, from `offset` on, with the total."""
        if not self._may_select(filters, viewer):
            return RequestPage([], 0, offset)
        count, page = request_lists.page_statements(request_lists.shape_of(filters))
        values = request_lists.parameters(filters, self.zone)
        # A plain connection, not a Session: this answers a Slack ack. One transaction, so that
        # the total and the page agree.
        with self.sessions.kw["bind"].connect() as connection:
            total = connection.execute(count, values).scalar_one()
            rows = connection.execute(page, values | {"offset": offset, "limit": limit}).all()
        return RequestPage([RequestLine(*row) for row in rows], total, offset)

    def each(self, filters: RequestFilter, *, viewer: str) -> Iterator[DsrRequest]:
        """Every request matching `filters`, in the list's order, read in batches (a CSV)."""
        if not self._may_select(filters, viewer):
            return
        query = request_lists.requests_of(request_lists.shape_of(filters))
        with self.sessions() as session:
            yield from session.exec(query.execution_options(yield_per=500),  # type: ignore[call-overload]
                                    params=request_lists.parameters(filters, self.zone))

    def _may_select(self, filters: RequestFilter, viewer: str) -> bool:
        """PermissionDenied unless `viewer` may see requests; False if `filters` selects none
        (requests awaiting someone who is no approver)."""
        self.policy.require(self.policy.is_requester(viewer), "see requests")
        return not filters.awaiting or self.policy.is_approver(filters.awaiting)

    def subject_lookups(self, typed: str) -> list[str]:
        """The hashes a typed email, phone or name is found by (RequestFilter.subject)."""
        if self.lookup is None:
            raise InvalidRequest("Finding requests by their subject is not set up here.")
        return self.lookup.digests_of(typed)

    def today(self) -> date:
        return self.clock.now().astimezone(self.zone).date()

    # Helpers

    def _get(self, session: Session, ref: str | int, *, lock: bool = False) -> DsrRequest:
        request = find_request(session, ref)
        if lock:
            request = session.exec(select(DsrRequest).where(DsrRequest.id == request.id)
                                   .with_for_update()
                                   .execution_options(populate_existing=True)).one()
        return request

    @staticmethod
    def _identifiers(session: Session, request: DsrRequest) -> list[SubjectIdentifier]:
        return list(session.exec(select(SubjectIdentifier).where(
            SubjectIdentifier.request_id == request.id).order_by(SubjectIdentifier.id)))

    @staticmethod
    def _systems(session: Session, request: DsrRequest) -> list[RequestSystem]:
        return list(session.exec(select(RequestSystem).where(
            RequestSystem.request_id == request.id).order_by(RequestSystem.id)))

    @staticmethod
    def _approvals(session: Session, request: DsrRequest) -> list[Approval]:
        return list(session.exec(select(Approval).where(
            Approval.request_id == request.id).order_by(Approval.id)))


def _plan_action(value: str) -> PlanAction:
    try:
        return PlanAction(value)
    except ValueError:
        raise InvalidRequest(f"{value[:40]!r} is not an action of a plan.") from None

"""The tables. Alembic migrations under `storage/migrations/` create them; nothing else does.
The words their columns hold (request types, statuses...) are the domain's: services/vocabulary.py.

Every datetime is timezone-aware UTC (`UTCDateTime`); legal deadlines are calendar dates in the
privacy team's time zone, because the law counts days, not hours.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from services.vocabulary import (
    OPEN_STATUSES,
    ApprovalDecision,
    IdentifierKind,
    IdentifierPurpose,
    PeriodUnit,
    PlanAction,
    Reach,
    RequestStatus,
    RequestType,
    StepPhase,
    StepStatus,
    format_reference,
)
from storage.types import UTCDateTime, enum_column, utcnow

# Literal SQL, not bound parameters: SQLite uses a partial index only when the query's condition
# is the index's own, as written.
IS_OPEN = sa.text(f"dsr_request.status IN {OPEN_STATUSES}")
IS_UNACKNOWLEDGED = sa.text(f"acknowledged_at IS NULL AND status IN {OPEN_STATUSES}")


class Jurisdiction(SQLModel, table=True):
    """A law's deadlines. Adding a jurisdiction is adding a row (see the migrations)."""

    code: str = Field(primary_key=True, max_length=16)
    name: str = Field(max_length=100)
    legal_basis: str = Field(max_length=200)
    response_amount: int
    response_unit: PeriodUnit = Field(sa_type=enum_column(PeriodUnit))
    extension_amount: int = 0
    extension_unit: PeriodUnit = Field(sa_type=enum_column(PeriodUnit))
    max_extensions: int = 0
    ack_amount: int | None = None
    ack_unit: PeriodUnit | None = Field(default=None, sa_type=enum_column(PeriodUnit))
    holiday_country: str | None = Field(default=None, max_length=8)
    holiday_subdivision: str | None = Field(default=None, max_length=8)


class DsrRequest(SQLModel, table=True):
    __tablename__ = "dsr_request"
    __table_args__ = (
        # The deadline sweeps and the digest read open requests by effective deadline: a
        # partial index keeps them fast however many closed requests accumulate.
        # status leads, so that the planner prefers it to the plain status index; type and the
        # deadlines follow, so that the digest counts open requests from the index alone.
        sa.Index("ix_dsr_request_open_due", "status", sa.text("coalesce(extended_due_on, due_on)"),
                 "type", "due_on", "extended_due_on",
                 sqlite_where=sa.text(f"status IN {OPEN_STATUSES}"),
                 postgresql_where=sa.text(f"status IN {OPEN_STATUSES}")),
        sa.Index("ix_dsr_request_unacknowledged", "status", "ack_due_on",
                 sqlite_where=sa.text(f"acknowledged_at IS NULL AND status IN {OPEN_STATUSES}"),
                 postgresql_where=sa.text(f"acknowledged_at IS NULL AND status IN {OPEN_STATUSES}")),
        # The digest reads the requests closed in the last 30 days by day: their deadlines and
        # the hours they took come from the index alone.
        sa.Index("ix_dsr_request_closed", "status", "closed_at", "received_at", "due_on",
                 "extended_due_on"),
        # Retention looks only at closed requests it has not handled yet.
        sa.Index("ix_dsr_request_exports_kept", "closed_at",
                 sqlite_where=sa.text("exports_purged_at IS NULL AND closed_at IS NOT NULL"),
                 postgresql_where=sa.text("exports_purged_at IS NULL AND closed_at IS NOT NULL")),
        sa.Index("ix_dsr_request_identifiers_kept", "closed_at",
                 sqlite_where=sa.text("identifiers_reduced_at IS NULL AND closed_at IS NOT NULL"),
                 postgresql_where=sa.text("identifiers_reduced_at IS NULL AND closed_at IS NOT NULL")),
        # "open mine" (the Home, `/dsr list`) counts a requester's open requests in the index.
        sa.Index("ix_dsr_request_requester_status", "requester_slack_id", "status"),
        # Lists by status and type (`/dsr list pending_approval erasure`) count in the index.
        sa.Index("ix_dsr_request_status_type", "status", "type"),
        # The deliverables job looks only at closed requests whose record is not made yet.
        sa.Index("ix_dsr_request_unrecorded", "closed_at",
                 sqlite_where=sa.text("recorded_at IS NULL AND closed_at IS NOT NULL"),
                 postgresql_where=sa.text("recorded_at IS NULL AND closed_at IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    type: RequestType = Field(sa_type=enum_column(RequestType))
    status: RequestStatus = Field(sa_type=enum_column(RequestStatus))
    jurisdiction_code: str = Field(foreign_key="jurisdiction.code", max_length=16)
    received_at: datetime = Field(sa_type=UTCDateTime, index=True)
    ack_due_on: date | None = None
    acknowledged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    due_on: date = Field(index=True)
    extended_due_on: date | None = None
    extension_reason: str | None = Field(default=None, max_length=2000)
    extended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    extended_by: str | None = Field(default=None, max_length=64)
    # when it became completed, rejected or canceled
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # an access request's export archive: when it was sealed, and its (plaintext) size and SHA-256
    export_packaged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    export_bytes: int | None = Field(default=None, sa_type=sa.BigInteger)
    export_sha256: str | None = Field(default=None, max_length=64)
    exports_purged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    recorded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # compliance record made
    identifiers_reduced_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    simulation: bool = True
    # erasure: the SHA-256 of the reviewed plan sent for approval; approvals count for it only
    plan_sha256: str | None = Field(default=None, max_length=64)
    requester_slack_id: str = Field(max_length=64)
    identity_verification: str = Field(default="", max_length=2000)
    notes: str = Field(default="", max_length=3000)
    channel_id: str | None = Field(default=None, max_length=64)
    thread_ts: str | None = Field(default=None, max_length=64)
    # what filed it (e.g. the intake modal's view id): a replayed submission finds this request
    intake_key: str | None = Field(default=None, max_length=128, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

    @property
    def reference(self) -> str:
        return format_reference(self.id)

    @property
    def effective_due_on(self) -> date:
        return self.extended_due_on or self.due_on


class SubjectIdentifier(SQLModel, table=True):
    __tablename__ = "subject_identifier"

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="dsr_request.id", index=True)
    kind: IdentifierKind = Field(sa_type=enum_column(IdentifierKind))
    purpose: IdentifierPurpose = Field(sa_type=enum_column(IdentifierPurpose))
    value: str = Field(max_length=1000)
    system: str | None = Field(default=None, max_length=32)
    # HMAC of the normalised value (services.lookup): finds the request by its subject, also
    # once retention has masked `value`.
    lookup: str | None = Field(default=None, max_length=64, index=True)


class RequestSystem(SQLModel, table=True):
    """A system the request covers, and the records there the requester confirmed."""

    __tablename__ = "request_system"
    __table_args__ = (sa.UniqueConstraint("request_id", "system"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="dsr_request.id", index=True)
    system: str = Field(max_length=32)
    confirmed_records: list[Any] | None = Field(default=None, sa_type=sa.JSON)
    confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Approval(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("request_id", "approver_slack_id"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="dsr_request.id", index=True)
    approver_slack_id: str = Field(max_length=64)
    decision: ApprovalDecision = Field(sa_type=enum_column(ApprovalDecision))
    reason: str | None = Field(default=None, max_length=2000)
    decided_at: datetime = Field(sa_type=UTCDateTime)
    plan_sha256: str | None = Field(default=None, max_length=64)  # the plan this decision saw


class ExecutionStep(SQLModel, table=True):
    """One durable unit of work against one system, claimed by a worker with a lease."""

    __tablename__ = "execution_step"
    __table_args__ = (sa.UniqueConstraint("request_id", "position"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="dsr_request.id", index=True)
    position: int
    system: str = Field(max_length=32)
    action: str = Field(max_length=64)
    phase: StepPhase = Field(default=StepPhase.EXECUTION, sa_type=enum_column(StepPhase))
    status: StepStatus = Field(sa_type=enum_column(StepStatus), index=True)
    params: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    attempts: int = 0  # times a worker claimed it
    transient_failures: int = 0  # consecutive RetryLater outcomes; reset by progress
    next_run_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    checkpoint: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    result: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    error: str | None = Field(default=None, max_length=2000)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MatchCandidate(SQLModel, table=True):
    """A record a subject search found, while the requester picks among them (the match picker
    pages and filters these, not the vendors); deleted once the request is confirmed or closed."""

    __tablename__ = "match_candidate"
    __table_args__ = (sa.UniqueConstraint("request_id", "system", "record_id"),
                      sa.Index("ix_match_candidate_request_id", "request_id", "system", "position"))

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="dsr_request.id")
    system: str = Field(max_length=32)
    position: int  # the vendor's order
    record_id: str = Field(max_length=255)
    label: str = Field(max_length=500)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    haystack: str = Field(max_length=2000)  # what the filter searches: label and facts, casefolded
    picked: bool = False


class PlanItem(SQLModel, table=True):
    """One line of an erasure's plan: a record that holds the subject's data, how it was found,
    and what will be done to it. The requester reviews each line, approvers approve the plan,
    and execution does exactly the approved actions; each line then records what was verified."""

    __tablename__ = "plan_item"
    __table_args__ = (sa.UniqueConstraint("request_id", "system", "kind", "record_id"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="dsr_request.id", index=True)
    system: str = Field(max_length=32)
    kind: str = Field(max_length=16)  # ticket, user, subject
    record_id: str = Field(max_length=64)
    group: str = Field(max_length=32)  # how the subject relates to it (see services.review)
    vendor_status: str = Field(default="", max_length=32)  # e.g. closed, archived, when found
    found: list[Any] = Field(default_factory=list, sa_type=sa.JSON)  # masked: how it matched
    proposed: PlanAction = Field(sa_type=enum_column(PlanAction))
    action: PlanAction = Field(sa_type=enum_column(PlanAction))
    allowed: list[Any] = Field(default_factory=list, sa_type=sa.JSON)
    warning: str = Field(default="", max_length=300)
    changed_by: str | None = Field(default=None, max_length=64)
    changed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    done_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    verified: str | None = Field(default=None, max_length=300)  # what the read-back showed


class StepAttempt(SQLModel, table=True):
    """One run of a step by a worker, and how it ended: the step's history for auditors."""

    __tablename__ = "step_attempt"

    id: int | None = Field(default=None, primary_key=True)
    step_id: int = Field(foreign_key="execution_step.id", index=True)
    worker: str = Field(max_length=64)
    started_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    outcome: str | None = Field(default=None, max_length=16)  # done, continue, waiting, retry, failed
    note: str | None = Field(default=None, max_length=2000)


class Notice(SQLModel, table=True):
    """Progress to post in a request's thread, written in the transaction of the change it
    reports (an outbox): the status-update job posts them in batches, and a crash loses none."""

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="dsr_request.id", index=True)
    kind: str = Field(max_length=48)  # see services.notify.Event
    text: str = Field(max_length=2000)
    step_id: int | None = None
    created_at: datetime = Field(sa_type=UTCDateTime)
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)


class ComplianceRecordRow(SQLModel, table=True):
    """A finished request's compliance record as made when it closed (JSON, see services.records):
    kept after retention has deleted the export and reduced the identifiers it describes."""

    __tablename__ = "compliance_record"

    request_id: int = Field(primary_key=True, foreign_key="dsr_request.id",
                            sa_column_kwargs={"autoincrement": False})
    built_at: datetime = Field(sa_type=UTCDateTime)
    body: str = Field(sa_type=sa.Text)
    sha256: str = Field(max_length=64)


class Dispatch(SQLModel, table=True):
    """A message the scheduled jobs send once: a deadline reminder, a digest, an escalation.

    Its key (e.g. `due:7d:DSR-000042`, `digest:C0123:2026-11-23`) is claimed before sending, so
    replicas and restarts never send it twice; a claim left by a crash expires and is retried.
    """

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=120, unique=True)
    request_id: int | None = Field(default=None, foreign_key="dsr_request.id", index=True)
    claimed_by: str = Field(max_length=64)
    claimed_at: datetime = Field(sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AuditEvent(SQLModel, table=True):
    """Append-only (triggers refuse UPDATE and DELETE) and hash-chained by `prev_hash`."""

    __tablename__ = "audit_event"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    actor: str = Field(max_length=64)
    action: str = Field(max_length=64, index=True)
    request_id: int | None = Field(default=None, foreign_key="dsr_request.id", index=True)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)


class AuditChainHead(SQLModel, table=True):
    """One row: the chain's last event. Appenders lock it, so the chain never forks."""

    __tablename__ = "audit_chain_head"

    id: int = Field(default=1, primary_key=True)
    last_seq: int = 0
    last_hash: str = Field(max_length=64)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SlackEvent(SQLModel, table=True):
    """Events API deliveries already handled: Slack redelivers what it thinks was missed."""

    __tablename__ = "slack_event"

    event_id: str = Field(primary_key=True, max_length=64)
    received_at: datetime = Field(sa_type=UTCDateTime)


class VendorBudget(SQLModel, table=True):
    """Calls made to one vendor account in one short slot of time, by every process and replica
    together: how a vendor's per-minute limit is kept across them (services.connectors.budget)."""

    __tablename__ = "vendor_budget"

    vendor: str = Field(primary_key=True, max_length=200)  # the vendor and its account's host
    slot: int = Field(primary_key=True, sa_type=sa.BigInteger)  # epoch seconds // SLOT_SECONDS
    used: int = 0


class InboxItem(SQLModel, table=True):
    """Work after a Slack acknowledgement (a bolt lazy listener), written before the ack is
    answered and deleted once done (bot.inbox). Its body holds what people typed, a subject's
    personal data among it: never logged, and gone with the row."""

    __tablename__ = "inbox"

    id: int | None = Field(default=None, primary_key=True)
    function: str = Field(max_length=255)  # the lazy function's name, as bolt matches it
    body: str = Field(sa_type=sa.Text)  # the request's parsed body, as JSON
    headers: str = Field(sa_type=sa.Text)  # its headers, as JSON
    handed: str | None = Field(default=None, sa_type=sa.Text)  # what the ack handed over, as JSON
    received_at: datetime = Field(sa_type=UTCDateTime)
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    attempts: int = 0


class ExportFile(SQLModel, table=True):
    """A file of the export store (services.export_store): an access request's sealed staged
    documents, its sealed archive and its manifest, reached by every replica. Its bytes are the
    rows of export_chunk; readers see it only once it is complete."""

    __tablename__ = "export_file"
    __table_args__ = (
        # One complete file a path; half-written ones (a writer still going, or crashed) may share it.
        sa.Index("ux_export_file_complete_path", "path", unique=True,
                 sqlite_where=sa.text("complete"), postgresql_where=sa.text("complete")),
    )

    id: int | None = Field(default=None, primary_key=True)
    path: str = Field(max_length=400, index=True)  # e.g. DSR-000042/staging/zendesk/tickets/7.json.sealed
    complete: bool = False
    bytes: int = Field(default=0, sa_type=sa.BigInteger)
    created_at: datetime = Field(sa_type=UTCDateTime)


class ExportChunk(SQLModel, table=True):
    """A piece of an export file, in order: a file is written and read a chunk at a time."""

    __tablename__ = "export_chunk"

    file_id: int = Field(primary_key=True, foreign_key="export_file.id", ondelete="CASCADE",
                         sa_column_kwargs={"autoincrement": False})
    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    data: bytes = Field(sa_type=sa.LargeBinary)


class DataSystem(SQLModel, table=True):
    """A system of the data map (services/data_map.py): where the team holds personal data, who
    owns it, what it holds, and how DSR Desk reaches it. Retired, never deleted: requests and
    the audit trail keep naming it."""

    __tablename__ = "data_system"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=40, unique=True)  # as requests name it: zendesk, payroll
    label: str = Field(max_length=80)  # as people read it
    reach: Reach = Field(sa_type=enum_column(Reach))
    owner: str = Field(max_length=32)  # a Slack user (U…/W…) or user group (S…)
    categories: list[str] = Field(default_factory=list, sa_type=sa.JSON)  # of personal data
    request_types: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    instructions: str = Field(default="", max_length=3000)  # an assisted task's, for its owner
    webhook_url: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    retired_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

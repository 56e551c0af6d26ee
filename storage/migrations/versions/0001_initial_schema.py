"""Initial schema: requests, subject identifiers, systems, approvals, steps, reminders, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def _enum(*values: str) -> sa.Enum:
    return sa.Enum(*values, native_enum=False, create_constraint=False, length=32)


PERIOD = _enum("days", "business_days", "months")

# Deadlines as data: (code, name, legal basis, response, unit, extension, unit, max extensions,
# acknowledgement, unit, holiday calendar country, subdivision).
JURISDICTIONS = [
    ("GDPR", "EU GDPR", "Regulation (EU) 2016/679, Art. 12(3)",
     1, "months", 2, "months", 1, None, None, None, None),
    ("UK_GDPR", "UK GDPR", "UK GDPR Art. 12(3); Data Protection Act 2018",
     1, "months", 2, "months", 1, None, None, None, None),
    ("CCPA", "CCPA/CPRA (California)", "Cal. Civ. Code 1798.130(a)(2); 11 CCR 7021",
     45, "days", 45, "days", 1, 10, "business_days", "US", "CA"),
    ("LGPD", "LGPD (Brazil)", "Lei 13.709/2018, Art. 19, II",
     15, "days", 0, "days", 0, None, None, None, None),
    ("US_VA", "Virginia CDPA", "Va. Code 59.1-577(B)",
     45, "days", 45, "days", 1, None, None, None, None),
    ("US_UT", "Utah CPA", "Utah Code 13-61-203(4)",
     45, "days", 45, "days", 1, None, None, None, None),
    ("US_CO", "Colorado CPA", "C.R.S. 6-1-1306(2)",
     45, "days", 45, "days", 1, None, None, None, None),
    ("US_CT", "Connecticut CTDPA", "Conn. Gen. Stat. 42-518(c)",
     45, "days", 45, "days", 1, None, None, None, None),
]
JURISDICTION_COLUMNS = (
    "code", "name", "legal_basis", "response_amount", "response_unit", "extension_amount",
    "extension_unit", "max_extensions", "ack_amount", "ack_unit", "holiday_country",
    "holiday_subdivision",
)
GENESIS_HASH = "0" * 64

APPEND_ONLY_SQLITE = [
    "CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event "
    "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END",
    "CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event "
    "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END",
]
APPEND_ONLY_POSTGRES = [
    "CREATE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'audit_event is append-only'; END $$",
    "CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON audit_event "
    "FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()",
    "CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()",
]


def upgrade() -> None:
    jurisdiction = op.create_table(
        "jurisdiction",
        sa.Column("code", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("legal_basis", sa.String(200), nullable=False),
        sa.Column("response_amount", sa.Integer(), nullable=False),
        sa.Column("response_unit", PERIOD, nullable=False),
        sa.Column("extension_amount", sa.Integer(), nullable=False),
        sa.Column("extension_unit", PERIOD, nullable=False),
        sa.Column("max_extensions", sa.Integer(), nullable=False),
        sa.Column("ack_amount", sa.Integer(), nullable=True),
        sa.Column("ack_unit", PERIOD, nullable=True),
        sa.Column("holiday_country", sa.String(8), nullable=True),
        sa.Column("holiday_subdivision", sa.String(8), nullable=True),
    )
    op.bulk_insert(jurisdiction, [dict(zip(JURISDICTION_COLUMNS, row, strict=True)) for row in JURISDICTIONS])

    op.create_table(
        "dsr_request",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("type", _enum("access", "erasure", "rectification", "objection"), nullable=False),
        sa.Column(
            "status",
            _enum("received", "pending_approval", "approved", "in_progress", "needs_attention",
                  "completed", "rejected", "canceled"),
            nullable=False,
        ),
        sa.Column("jurisdiction_code", sa.String(16), sa.ForeignKey("jurisdiction.code"),
                  nullable=False),
        sa.Column("received_at", TIME, nullable=False),
        sa.Column("ack_due_on", sa.Date(), nullable=True),
        sa.Column("acknowledged_at", TIME, nullable=True),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("extended_due_on", sa.Date(), nullable=True),
        sa.Column("extension_reason", sa.String(2000), nullable=True),
        sa.Column("extended_at", TIME, nullable=True),
        sa.Column("extended_by", sa.String(64), nullable=True),
        sa.Column("closed_at", TIME, nullable=True),
        sa.Column("simulation", sa.Boolean(), nullable=False),
        sa.Column("requester_slack_id", sa.String(64), nullable=False),
        sa.Column("identity_verification", sa.String(2000), nullable=False),
        sa.Column("notes", sa.String(3000), nullable=False),
        sa.Column("channel_id", sa.String(64), nullable=True),
        sa.Column("thread_ts", sa.String(64), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )
    op.create_index("ix_dsr_request_status", "dsr_request", ["status"])
    op.create_index("ix_dsr_request_due_on", "dsr_request", ["due_on"])
    op.create_index("ix_dsr_request_requester_slack_id", "dsr_request", ["requester_slack_id"])

    op.create_table(
        "subject_identifier",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("request_id", sa.Integer(), sa.ForeignKey("dsr_request.id"), nullable=False),
        sa.Column(
            "kind",
            _enum("name", "email", "phone", "address", "external_id", "vendor_user_id", "text"),
            nullable=False,
        ),
        sa.Column("purpose", _enum("identifies", "new_value", "search_term"), nullable=False),
        sa.Column("value", sa.String(1000), nullable=False),
        sa.Column("system", sa.String(32), nullable=True),
    )
    op.create_index("ix_subject_identifier_request_id", "subject_identifier", ["request_id"])

    op.create_table(
        "request_system",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("request_id", sa.Integer(), sa.ForeignKey("dsr_request.id"), nullable=False),
        sa.Column("system", sa.String(32), nullable=False),
        sa.Column("confirmed_records", sa.JSON(), nullable=True),
        sa.Column("confirmed_at", TIME, nullable=True),
        sa.UniqueConstraint("request_id", "system"),
    )
    op.create_index("ix_request_system_request_id", "request_system", ["request_id"])

    op.create_table(
        "approval",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("request_id", sa.Integer(), sa.ForeignKey("dsr_request.id"), nullable=False),
        sa.Column("approver_slack_id", sa.String(64), nullable=False),
        sa.Column("decision", _enum("approve", "reject"), nullable=False),
        sa.Column("reason", sa.String(2000), nullable=True),
        sa.Column("decided_at", TIME, nullable=False),
        sa.UniqueConstraint("request_id", "approver_slack_id"),
    )
    op.create_index("ix_approval_request_id", "approval", ["request_id"])

    op.create_table(
        "execution_step",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("request_id", sa.Integer(), sa.ForeignKey("dsr_request.id"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("system", sa.String(32), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column(
            "status",
            _enum("pending", "running", "waiting", "done", "failed", "canceled"),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_run_at", TIME, nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", TIME, nullable=True),
        sa.Column("checkpoint", sa.JSON(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.String(2000), nullable=True),
        sa.Column("started_at", TIME, nullable=True),
        sa.Column("finished_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.UniqueConstraint("request_id", "position"),
    )
    op.create_index("ix_execution_step_request_id", "execution_step", ["request_id"])
    op.create_index("ix_execution_step_status", "execution_step", ["status"])
    op.create_index("ix_execution_step_next_run_at", "execution_step", ["next_run_at"])

    op.create_table(
        "reminder",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("request_id", sa.Integer(), sa.ForeignKey("dsr_request.id"), nullable=False),
        sa.Column("kind", sa.String(48), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_at", TIME, nullable=True),
        sa.Column("sent_at", TIME, nullable=True),
        sa.UniqueConstraint("request_id", "kind"),
    )
    op.create_index("ix_reminder_request_id", "reminder", ["request_id"])

    op.create_table(
        "audit_event",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("occurred_at", TIME, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("request_id", sa.Integer(), sa.ForeignKey("dsr_request.id"), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
    )
    op.create_index("ix_audit_event_action", "audit_event", ["action"])
    op.create_index("ix_audit_event_request_id", "audit_event", ["request_id"])

    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )
    op.execute(
        "INSERT INTO audit_chain_head (id, last_seq, last_hash, updated_at) "
        f"VALUES (1, 0, '{GENESIS_HASH}', CURRENT_TIMESTAMP)"
    )

    triggers = APPEND_ONLY_SQLITE if op.get_bind().dialect.name == "sqlite" else APPEND_ONLY_POSTGRES
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event")
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_change ON audit_event")
        op.execute("DROP FUNCTION IF EXISTS audit_event_append_only()")
    for table in ("audit_chain_head", "audit_event", "reminder", "execution_step", "approval",
                  "request_system", "subject_identifier", "dsr_request", "jurisdiction"):
        op.drop_table(table)

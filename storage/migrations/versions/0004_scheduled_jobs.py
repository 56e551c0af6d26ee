"""Scheduled jobs: a notice outbox, once-only dispatches, retention marks, deadline indexes.

Replaces the unused `reminder` table with `dispatch`, which also covers digests and escalations.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)
OPEN = "status IN ('received', 'pending_approval', 'approved', 'in_progress', 'needs_attention')"


def upgrade() -> None:
    op.drop_index("ix_reminder_request_id", table_name="reminder")
    op.drop_table("reminder")
    op.create_table(
        "dispatch",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(120), nullable=False, unique=True),
        sa.Column("request_id", sa.Integer(), sa.ForeignKey("dsr_request.id"), nullable=True),
        sa.Column("claimed_by", sa.String(64), nullable=False),
        sa.Column("claimed_at", TIME, nullable=False),
        sa.Column("sent_at", TIME, nullable=True),
    )
    op.create_index("ix_dispatch_request_id", "dispatch", ["request_id"])
    op.create_table(
        "notice",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("request_id", sa.Integer(), sa.ForeignKey("dsr_request.id"), nullable=False),
        sa.Column("kind", sa.String(48), nullable=False),
        sa.Column("text", sa.String(2000), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_at", TIME, nullable=True),
        sa.Column("sent_at", TIME, nullable=True),
    )
    op.create_index("ix_notice_request_id", "notice", ["request_id"])
    op.create_index("ix_notice_sent_at", "notice", ["sent_at"])
    with op.batch_alter_table("dsr_request") as table:
        table.add_column(sa.Column("exports_purged_at", TIME, nullable=True))
        table.add_column(sa.Column("identifiers_reduced_at", TIME, nullable=True))
    op.create_index("ix_dsr_request_status_closed_at", "dsr_request", ["status", "closed_at"])
    op.create_index("ix_dsr_request_received_at", "dsr_request", ["received_at"])
    op.create_index("ix_dsr_request_open_due", "dsr_request",
                    ["status", sa.text("coalesce(extended_due_on, due_on)")],
                    sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN))
    unacknowledged = sa.text(f"acknowledged_at IS NULL AND {OPEN}")
    op.create_index("ix_dsr_request_unacknowledged", "dsr_request", ["status", "ack_due_on"],
                    sqlite_where=unacknowledged, postgresql_where=unacknowledged)
    for name, mark in (("exports_kept", "exports_purged_at"),
                       ("identifiers_kept", "identifiers_reduced_at")):
        kept = sa.text(f"{mark} IS NULL AND closed_at IS NOT NULL")
        op.create_index(f"ix_dsr_request_{name}", "dsr_request", ["closed_at"],
                        sqlite_where=kept, postgresql_where=kept)


def downgrade() -> None:
    op.drop_index("ix_dsr_request_identifiers_kept", table_name="dsr_request")
    op.drop_index("ix_dsr_request_exports_kept", table_name="dsr_request")
    op.drop_index("ix_dsr_request_unacknowledged", table_name="dsr_request")
    op.drop_index("ix_dsr_request_open_due", table_name="dsr_request")
    op.drop_index("ix_dsr_request_received_at", table_name="dsr_request")
    op.drop_index("ix_dsr_request_status_closed_at", table_name="dsr_request")
    with op.batch_alter_table("dsr_request") as table:
        table.drop_column("identifiers_reduced_at")
        table.drop_column("exports_purged_at")
    op.drop_index("ix_notice_sent_at", table_name="notice")
    op.drop_index("ix_notice_request_id", table_name="notice")
    op.drop_table("notice")
    op.drop_index("ix_dispatch_request_id", table_name="dispatch")
    op.drop_table("dispatch")
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

"""Erasure review: a request in review, its plan items, the plan an approval covers, step phases.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)
# The open statuses, written as storage.models.OPEN_STATUSES writes them (SQLite uses a partial
# index only for the condition exactly as the index states it).
OPEN_BEFORE = "status IN ('received', 'pending_approval', 'approved', 'in_progress', 'needs_attention')"
OPEN_AFTER = ("status IN ('received', 'in_review', 'pending_approval', 'approved', 'in_progress', "
              "'needs_attention')")


def _open_indexes(condition: str) -> None:
    op.drop_index("ix_dsr_request_unacknowledged", table_name="dsr_request")
    op.drop_index("ix_dsr_request_open_due", table_name="dsr_request")
    op.create_index("ix_dsr_request_open_due", "dsr_request",
                    ["status", sa.text("coalesce(extended_due_on, due_on)")],
                    sqlite_where=sa.text(condition), postgresql_where=sa.text(condition))
    unacknowledged = sa.text(f"acknowledged_at IS NULL AND {condition}")
    op.create_index("ix_dsr_request_unacknowledged", "dsr_request", ["status", "ack_due_on"],
                    sqlite_where=unacknowledged, postgresql_where=unacknowledged)


def upgrade() -> None:
    op.execute("ALTER TABLE dsr_request ADD COLUMN plan_sha256 VARCHAR(64)")
    op.execute("ALTER TABLE approval ADD COLUMN plan_sha256 VARCHAR(64)")
    op.execute("ALTER TABLE execution_step ADD COLUMN phase VARCHAR(32) NOT NULL DEFAULT 'execution'")
    _open_indexes(OPEN_AFTER)
    op.create_table(
        "plan_item",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("request_id", sa.Integer(), sa.ForeignKey("dsr_request.id"), nullable=False),
        sa.Column("system", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("group", sa.String(32), nullable=False),
        sa.Column("vendor_status", sa.String(32), nullable=False),
        sa.Column("found", sa.JSON(), nullable=False),
        sa.Column("proposed", sa.String(32), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("allowed", sa.JSON(), nullable=False),
        sa.Column("warning", sa.String(300), nullable=False),
        sa.Column("changed_by", sa.String(64), nullable=True),
        sa.Column("changed_at", TIME, nullable=True),
        sa.Column("done_at", TIME, nullable=True),
        sa.Column("verified", sa.String(300), nullable=True),
        sa.UniqueConstraint("request_id", "system", "kind", "record_id"),
    )
    op.create_index("ix_plan_item_request_id", "plan_item", ["request_id"])


def downgrade() -> None:
    op.drop_index("ix_plan_item_request_id", table_name="plan_item")
    op.drop_table("plan_item")
    _open_indexes(OPEN_BEFORE)
    # Plain DROP COLUMN (SQLite 3.35+): a batch copy of the table would lose its expression index.
    op.execute("ALTER TABLE execution_step DROP COLUMN phase")
    op.execute("ALTER TABLE approval DROP COLUMN plan_sha256")
    op.execute("ALTER TABLE dsr_request DROP COLUMN plan_sha256")

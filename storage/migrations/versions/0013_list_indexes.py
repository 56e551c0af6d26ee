"""A requester's open requests counted in an index (the Home's "open mine", `/dsr list open
mine`): (requester_slack_id, status) replaces the index on requester_slack_id alone.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_dsr_request_requester_status", "dsr_request",
                    ["requester_slack_id", "status"])
    op.drop_index("ix_dsr_request_requester_slack_id", table_name="dsr_request")


def downgrade() -> None:
    op.create_index("ix_dsr_request_requester_slack_id", "dsr_request", ["requester_slack_id"])
    op.drop_index("ix_dsr_request_requester_status", table_name="dsr_request")

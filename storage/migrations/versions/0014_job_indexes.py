"""The scheduled jobs' figures read from indexes alone (issue 14).

The open requests' partial index also holds type, due_on and extended_due_on, so the digest
counts open requests by status and type, and by deadline, without reading the table; the index
on (status, closed_at) becomes (status, closed_at, received_at, due_on, extended_due_on), so
each day's completed requests, their deadlines and their hours taken come from it alone.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# As storage.models.OPEN_STATUSES writes them (SQLite uses a partial index only for the
# condition exactly as the index states it).
OPEN = ("status IN ('received', 'in_review', 'pending_approval', 'approved', 'in_progress', "
        "'needs_attention')")
DUE = sa.text("coalesce(extended_due_on, due_on)")


def _open_due(*columns: str | sa.TextClause) -> None:
    op.drop_index("ix_dsr_request_open_due", table_name="dsr_request")
    op.create_index("ix_dsr_request_open_due", "dsr_request", ["status", DUE, *columns],
                    sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN))


def upgrade() -> None:
    _open_due("type", "due_on", "extended_due_on")
    op.create_index("ix_dsr_request_closed", "dsr_request",
                    ["status", "closed_at", "received_at", "due_on", "extended_due_on"])
    op.drop_index("ix_dsr_request_status_closed_at", table_name="dsr_request")


def downgrade() -> None:
    op.create_index("ix_dsr_request_status_closed_at", "dsr_request", ["status", "closed_at"])
    op.drop_index("ix_dsr_request_closed", table_name="dsr_request")
    _open_due()

"""A request's intake key: a replayed intake submission finds its request instead of filing
a second one.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("dsr_request", sa.Column("intake_key", sa.String(length=128), nullable=True))
    op.create_index("ix_dsr_request_intake_key", "dsr_request", ["intake_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_dsr_request_intake_key", table_name="dsr_request")
    # Plain DROP COLUMN (SQLite 3.35+): a batch copy of the table would lose its expression index.
    op.execute("ALTER TABLE dsr_request DROP COLUMN intake_key")

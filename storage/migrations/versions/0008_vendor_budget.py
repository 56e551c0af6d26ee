"""A vendor's rate limit kept in the database, shared by every process and replica.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vendor_budget",
        sa.Column("vendor", sa.String(200), primary_key=True),
        sa.Column("slot", sa.BigInteger(), primary_key=True),
        sa.Column("used", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("vendor_budget")

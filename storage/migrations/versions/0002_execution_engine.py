"""Execution engine: step parameters, transient-failure count, and each step's attempts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("execution_step") as batch:
        batch.add_column(sa.Column("params", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(
            sa.Column("transient_failures", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_table(
        "step_attempt",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("step_id", sa.Integer(), sa.ForeignKey("execution_step.id"), nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("finished_at", TIME, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("note", sa.String(2000), nullable=True),
    )
    op.create_index("ix_step_attempt_step_id", "step_attempt", ["step_id"])


def downgrade() -> None:
    op.drop_table("step_attempt")
    with op.batch_alter_table("execution_step") as batch:
        batch.drop_column("transient_failures")
        batch.drop_column("params")

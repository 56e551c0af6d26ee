"""Deliverables: sealed export archives and stored compliance records.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)
UNRECORDED = sa.text("recorded_at IS NULL AND closed_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("dsr_request") as table:
        table.add_column(sa.Column("export_packaged_at", TIME, nullable=True))
        table.add_column(sa.Column("export_bytes", sa.BigInteger(), nullable=True))
        table.add_column(sa.Column("export_sha256", sa.String(64), nullable=True))
        table.add_column(sa.Column("recorded_at", TIME, nullable=True))
    # Requests closed before this revision get their record on demand (`/dsr report`), not a
    # burst of late posts in old threads.
    op.execute("UPDATE dsr_request SET recorded_at = closed_at WHERE closed_at IS NOT NULL")
    op.create_index("ix_dsr_request_unrecorded", "dsr_request", ["closed_at"],
                    sqlite_where=UNRECORDED, postgresql_where=UNRECORDED)
    op.create_table(
        "compliance_record",
        sa.Column("request_id", sa.Integer(), sa.ForeignKey("dsr_request.id"), primary_key=True,
                  autoincrement=False),
        sa.Column("built_at", TIME, nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("compliance_record")
    op.drop_index("ix_dsr_request_unrecorded", table_name="dsr_request")
    # Plain DROP COLUMN (SQLite 3.35+): a batch copy of the table would lose its expression index.
    for column in ("recorded_at", "export_sha256", "export_bytes", "export_packaged_at"):
        op.execute(f"ALTER TABLE dsr_request DROP COLUMN {column}")

"""Exports stored where every replica reaches them (in the database).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_file",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("path", sa.String(400), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_export_file_path", "export_file", ["path"])
    op.create_index("ux_export_file_complete_path", "export_file", ["path"], unique=True,
                    sqlite_where=sa.text("complete"), postgresql_where=sa.text("complete"))
    op.create_table(
        "export_chunk",
        sa.Column("file_id", sa.Integer(), sa.ForeignKey("export_file.id", ondelete="CASCADE"),
                  primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    # Only this revision's own tables: dsr_request is not touched (see 0006 on batch copies).
    op.drop_table("export_chunk")
    op.drop_index("ux_export_file_complete_path", table_name="export_file")
    op.drop_index("ix_export_file_path", table_name="export_file")
    op.drop_table("export_file")

"""The records a subject search found, kept while the requester picks among them: the match
picker pages and filters them without asking the vendors again. Deleted once the request is
confirmed or closed (they may be other people's records).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "match_candidate",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("request_id", sa.Integer(), sa.ForeignKey("dsr_request.id"), nullable=False),
        sa.Column("system", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.String(length=255), nullable=False),
        sa.Column("label", sa.String(length=500), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("haystack", sa.String(length=2000), nullable=False),
        sa.Column("picked", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("request_id", "system", "record_id"),
    )
    op.create_index("ix_match_candidate_request_id", "match_candidate", ["request_id", "system",
                                                                          "position"])


def downgrade() -> None:
    op.drop_index("ix_match_candidate_request_id", table_name="match_candidate")
    op.drop_table("match_candidate")

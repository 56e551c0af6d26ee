"""A keyed hash of each subject identifier: requests are found by a subject's email or phone
without the search storing or scanning clear text, and still after retention masks the value.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("subject_identifier", sa.Column("lookup", sa.String(length=64), nullable=True))
    op.create_index("ix_subject_identifier_lookup", "subject_identifier", ["lookup"])


def downgrade() -> None:
    op.drop_index("ix_subject_identifier_lookup", table_name="subject_identifier")
    op.execute("ALTER TABLE subject_identifier DROP COLUMN lookup")

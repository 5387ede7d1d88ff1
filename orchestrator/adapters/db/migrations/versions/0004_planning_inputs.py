"""planning inputs: a large signal's snapshot and correlation, stored once and paged

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import orchestrator.adapters.db.schema

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "planning_inputs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("page", sa.Integer(), primary_key=True),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "created_at", orchestrator.adapters.db.schema.UtcDateTime(timezone=True), nullable=False
        ),
    )
    op.create_index("ix_planning_inputs_created_at", "planning_inputs", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_planning_inputs_created_at", "planning_inputs")
    op.drop_table("planning_inputs")

"""operator controls: the operator-actions log, pause reasons, reroute on pause

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import orchestrator.adapters.db.schema

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operator_actions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target", sa.String(100), nullable=True),
        sa.Column("operator", sa.String(100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", orchestrator.adapters.db.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("reached", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.JSON(), nullable=False),
    )
    op.add_column(
        "accounts",
        sa.Column("reroute_on_pause", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("accounts", sa.Column("status_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("accounts", "status_reason")
    op.drop_column("accounts", "reroute_on_pause")
    op.drop_table("operator_actions")

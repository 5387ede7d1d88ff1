"""reduce-only accounts: the flag, its reason, who set it (an operator or the system) and when

Revision ID: 0008
Revises: 0007

Plain ADD/DROP COLUMN, not batch mode (as 0007): batch mode would rebuild ``accounts``, which
other tables reference, failing under enforced foreign keys.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import orchestrator.adapters.db.schema

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "accounts",
        sa.Column("reduce_only", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("accounts", sa.Column("reduce_only_reason", sa.Text(), nullable=True))
    op.add_column("accounts", sa.Column("reduce_only_by", sa.String(100), nullable=True))
    op.add_column(
        "accounts",
        sa.Column(
            "reduce_only_at",
            orchestrator.adapters.db.schema.UtcDateTime(timezone=True),
            nullable=True,
        ),
    )


def downgrade() -> None:
    op.drop_column("accounts", "reduce_only_at")
    op.drop_column("accounts", "reduce_only_by")
    op.drop_column("accounts", "reduce_only_reason")
    op.drop_column("accounts", "reduce_only")

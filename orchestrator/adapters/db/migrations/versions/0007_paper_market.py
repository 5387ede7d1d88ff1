"""paper market: quotes per symbol, resting (stop and take-profit) orders, paper accounts

Revision ID: 0007
Revises: 0006

Plain ADD/DROP COLUMN on ``paper_orders``, not batch mode: SQLite supports both natively, and
batch mode would rebuild ``paper_orders``, which ``paper_executions`` references, failing under
enforced foreign keys.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import orchestrator.adapters.db.schema

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _money() -> orchestrator.adapters.db.schema.Money:
    return orchestrator.adapters.db.schema.Money(precision=28, scale=10)


def _timestamp() -> orchestrator.adapters.db.schema.UtcDateTime:
    return orchestrator.adapters.db.schema.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "paper_quotes",
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("at", _timestamp(), nullable=False),
        sa.Column("bid", _money(), nullable=False),
        sa.Column("ask", _money(), nullable=False),
        sa.PrimaryKeyConstraint("symbol", "at"),
    )
    op.create_table(
        "paper_accounts",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("starting_balance", _money(), nullable=False),
        sa.Column("opened_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("account_id"),
    )
    op.add_column("paper_orders", sa.Column("stop_price", _money(), nullable=True))
    op.add_column(
        "paper_orders",
        sa.Column("resting", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("paper_orders", sa.Column("evaluated_at", _timestamp(), nullable=True))


def downgrade() -> None:
    op.drop_column("paper_orders", "evaluated_at")
    op.drop_column("paper_orders", "resting")
    op.drop_column("paper_orders", "stop_price")
    op.drop_table("paper_accounts")
    op.drop_table("paper_quotes")

"""account sync and reconciliation: the state's source and trading day, what holds a system
reduce-only, what a breached limit does, and the mismatches reconciliation found

Revision ID: 0009
Revises: 0008

Plain ADD/DROP COLUMN, not batch mode (as 0007, 0008): batch mode would rebuild ``accounts``,
which other tables reference, failing under enforced foreign keys.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import orchestrator.adapters.db.schema

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("reduce_only_cause", sa.String(16), nullable=True))
    op.add_column(
        "accounts",
        sa.Column("on_breach", sa.String(16), nullable=False, server_default="reduce_only"),
    )
    op.add_column(
        "account_state",
        sa.Column("source", sa.String(16), nullable=False, server_default="book"),
    )
    op.add_column(
        "account_state",
        sa.Column(
            "trading_day_start",
            orchestrator.adapters.db.schema.UtcDateTime(timezone=True),
            nullable=True,
        ),
    )
    op.create_table(
        "reconciliation_mismatches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("broker", sa.String(64), nullable=False),
        sa.Column("broker_symbol", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("broker_quantity", orchestrator.adapters.db.schema.Money(), nullable=True),
        sa.Column("broker_average_price", orchestrator.adapters.db.schema.Money(), nullable=True),
        sa.Column("ledger_quantity", orchestrator.adapters.db.schema.Money(), nullable=False),
        sa.Column(
            "detected_at",
            orchestrator.adapters.db.schema.UtcDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column(
            "seen_at", orchestrator.adapters.db.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.account_id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "broker_symbol", name="uq_mismatch_symbol"),
    )


def downgrade() -> None:
    op.drop_table("reconciliation_mismatches")
    op.drop_column("account_state", "trading_day_start")
    op.drop_column("account_state", "source")
    op.drop_column("accounts", "on_breach")
    op.drop_column("accounts", "reduce_only_cause")

"""order reconciliation: the differences between the broker's working orders and the ledger's,
and an index to read a page of accounts' working orders at once

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import orchestrator.adapters.db.schema

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_orders_account_status", "orders", ["account_id", "status"])
    money = orchestrator.adapters.db.schema.Money
    moment = orchestrator.adapters.db.schema.UtcDateTime
    op.create_table(
        "reconciliation_order_mismatches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("broker", sa.String(64), nullable=False),
        sa.Column("client_order_id", sa.String(160), nullable=False),
        sa.Column("broker_symbol", sa.String(32), nullable=True),
        sa.Column("side", sa.String(4), nullable=True),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("broker_quantity", money(), nullable=True),
        sa.Column("broker_filled", money(), nullable=True),
        sa.Column("broker_order_id", sa.String(100), nullable=True),
        sa.Column("order_type", sa.String(8), nullable=True),
        sa.Column("ledger_quantity", money(), nullable=True),
        sa.Column("ledger_status", sa.String(20), nullable=True),
        sa.Column("detected_at", moment(timezone=True), nullable=False),
        sa.Column("seen_at", moment(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.account_id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "client_order_id", name="uq_order_mismatch_order"),
    )


def downgrade() -> None:
    op.drop_table("reconciliation_order_mismatches")
    op.drop_index("ix_orders_account_status", table_name="orders")

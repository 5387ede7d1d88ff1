"""positions and their closing fills; orders by purpose (entry, stop, take-profit, close)

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from orchestrator.adapters.db.schema import Money, UtcDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(
            sa.Column("purpose", sa.String(16), nullable=False, server_default="ENTRY")
        )
        batch.add_column(sa.Column("stop_price", Money(), nullable=True))
        batch.drop_constraint("uq_order_leg_seq", type_="unique")
        batch.create_unique_constraint(
            "uq_order_purpose_seq", ["signal_id", "account_id", "purpose", "business_sequence"]
        )
    op.create_table(
        "positions",
        sa.Column("signal_id", sa.String(64), primary_key=True),
        sa.Column(
            "account_id", sa.String(64), sa.ForeignKey("accounts.account_id"), primary_key=True
        ),
        sa.Column("keeper_workflow_id", sa.String(200), nullable=False),
        sa.Column("broker", sa.String(64), nullable=False),
        sa.Column("broker_symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("entry_quantity", Money(), nullable=False),
        sa.Column("average_entry", Money(), nullable=False),
        sa.Column("open_quantity", Money(), nullable=False),
        sa.Column("stop", Money(), nullable=False),
        sa.Column("take_profit", Money(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("realized_pnl", Money(), nullable=False),
        sa.Column("stop_client_order_id", sa.String(160), nullable=True),
        sa.Column("take_profit_client_order_id", sa.String(160), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("opened_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", UtcDateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_positions_status", "positions", ["status"])
    op.create_table(
        "position_fills",
        sa.Column("execution_id", sa.String(160), primary_key=True),
        sa.Column("signal_id", sa.String(64), nullable=False),
        sa.Column(
            "account_id", sa.String(64), sa.ForeignKey("accounts.account_id"), nullable=False
        ),
        sa.Column("client_order_id", sa.String(160), nullable=False),
        sa.Column("quantity", Money(), nullable=False),
        sa.Column("price", Money(), nullable=False),
        sa.Column("cause", sa.String(24), nullable=False),
        sa.Column("pnl", Money(), nullable=False),
        sa.Column("filled_at", UtcDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_position_fills_signal_id", "position_fills", ["signal_id"])


def downgrade() -> None:
    op.drop_index("ix_position_fills_signal_id", "position_fills")
    op.drop_table("position_fills")
    op.drop_index("ix_positions_status", "positions")
    op.drop_table("positions")
    with op.batch_alter_table("orders") as batch:
        batch.drop_constraint("uq_order_purpose_seq", type_="unique")
        batch.create_unique_constraint(
            "uq_order_leg_seq", ["signal_id", "account_id", "business_sequence"]
        )
        batch.drop_column("stop_price")
        batch.drop_column("purpose")

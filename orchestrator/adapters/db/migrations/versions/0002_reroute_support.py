"""reroute support: reserve-only accounts and the origin of a reservation

Revision ID: 0002
Revises: 0001

Plain ADD/DROP COLUMN, not batch mode: SQLite supports both natively, and batch mode would
rebuild ``accounts`` — which other tables reference — failing under enforced foreign keys.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "accounts",
        sa.Column("reserve_only", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("risk_reservations", sa.Column("origin_account_id", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("risk_reservations", "origin_account_id")
    op.drop_column("accounts", "reserve_only")

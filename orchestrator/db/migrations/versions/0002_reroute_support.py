"""reroute support: reserve-only accounts and the origin of a reservation

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(
            sa.Column("reserve_only", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("risk_reservations") as batch:
        batch.add_column(sa.Column("origin_account_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("risk_reservations") as batch:
        batch.drop_column("origin_account_id")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("reserve_only")

"""operator actions as each workflow received them: workflow, channel, sender identity, receipt

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("operator_actions") as batch:
        batch.add_column(sa.Column("workflow_id", sa.String(200), nullable=True))
        batch.add_column(sa.Column("via", sa.String(16), nullable=True))
        batch.add_column(sa.Column("identity", sa.String(200), nullable=True))
        batch.add_column(sa.Column("receipt", sa.String(400), nullable=True))
        batch.create_unique_constraint("uq_operator_actions_receipt", ["receipt"])


def downgrade() -> None:
    with op.batch_alter_table("operator_actions") as batch:
        batch.drop_constraint("uq_operator_actions_receipt", type_="unique")
        batch.drop_column("receipt")
        batch.drop_column("identity")
        batch.drop_column("via")
        batch.drop_column("workflow_id")

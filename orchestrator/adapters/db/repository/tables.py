"""The tables as SQLAlchemy Core sees them, for the statements of the per-leg path.

The per-leg path (reserve, write the order, book the broker's report, settle) runs once or more
for every account of every signal, so it is written against the tables themselves, in as few
statements as the rules allow: one read of everything a decision needs, locking what it will
change, then the writes. The rest of the repository uses the ORM. Its statements are built
once, at import: SQLAlchemy compiles and caches them, and building them anew for every leg cost
more than running them. On PostgreSQL the writes of one step go as one statement (the others
as data-modifying CTEs, which PostgreSQL runs exactly once, to completion, whether read or not):
one round trip instead of two or three. The main statement is the versioned state (or order)
update, so its row count still says whether the locked row was written.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection, Table

from orchestrator.adapters.db.schema import (
    AccountRow,
    AccountStateRow,
    Base,
    FillRow,
    OrderRow,
    RiskReservationRow,
    SystemControlRow,
)


def _table(row: type[Base]) -> Table:
    table = row.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{row.__name__} is not mapped to a table")
    return table


ACCOUNTS = _table(AccountRow)
STATE = _table(AccountStateRow)
CONTROLS = _table(SystemControlRow)
RESERVATIONS = _table(RiskReservationRow)
ORDERS = _table(OrderRow)
FILLS = _table(FillRow)
HALT_ROW = 1
"""The id of the kill switch's one row."""


def on_postgres(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql"


def prefixed(prefix: str, values: Mapping[str, object]) -> dict[str, object]:
    """``values`` bound under names carrying ``prefix`` (one statement, several rows' values)."""
    return {f"{prefix}{k}": v for k, v in values.items()}

"""``repository.load_returns`` (plain rows; on PostgreSQL one aggregated row per account) reads
exactly what the ORM implementation it replaced read, on SQLite and on PostgreSQL: the same
days, the same accounts, the same returns down to their ``Decimal`` representation."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.adapters.book_file import DailyReturn
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import DailyReturnRow
from tests.support import account, book, load


def reference_load_returns(
    session: Session, account_ids: list[str], lookback_days: int
) -> tuple[list[date], dict[str, dict[date, Decimal]]]:
    """The implementation before: ORM entities, one per return."""
    days = list(
        session.scalars(
            select(DailyReturnRow.day)
            .where(DailyReturnRow.account_id.in_(account_ids))
            .distinct()
            .order_by(DailyReturnRow.day.desc())
            .limit(lookback_days)
        )
    )
    days.sort()
    returns: dict[str, dict[date, Decimal]] = defaultdict(dict)
    if days:
        rows = session.scalars(
            select(DailyReturnRow).where(
                DailyReturnRow.account_id.in_(account_ids), DailyReturnRow.day >= days[0]
            )
        )
        for row in rows:
            returns[row.account_id][row.day] = row.ret
    return days, returns


START = date(2026, 1, 1)
VALUES = [
    Decimal("0.0100"),
    Decimal("-1E-10"),
    Decimal("123.4567890123"),
    Decimal(0),
    Decimal("-0.25"),
    Decimal("0.0012340000"),
    Decimal(7),
]


def stored_returns() -> list[DailyReturn]:
    """Three accounts over 40 days with gaps; the last five days have returns only for
    ``other``, which is never asked for."""
    out: list[DailyReturn] = []
    for k, account_id in enumerate(["alpha", "beta", "other"]):
        for i in range(40):
            if (i + k) % 4 == 3 or (i >= 35 and account_id != "other"):
                continue
            value = VALUES[(i * (k + 2)) % len(VALUES)]
            out.append(DailyReturn(account_id=account_id, day=START + timedelta(i), ret=value))
    return out


@pytest.fixture(params=["sqlite", "postgres"])
def returns_db(request: pytest.FixtureRequest) -> Database:
    database: Database = request.getfixturevalue(f"{request.param}_db")
    load(
        database,
        book(account("alpha"), account("beta"), account("other"), returns=stored_returns()),
    )
    return database


def exact(returns: dict[str, dict[date, Decimal]]) -> dict[str, dict[date, str]]:
    """Each return as its text: ``Decimal("0.0100") == Decimal("0.01")``, but not here."""
    return {a: {d: str(v) for d, v in series.items()} for a, series in returns.items()}


@pytest.mark.parametrize("lookback_days", [1, 10, 35, 100])
@pytest.mark.parametrize(
    "account_ids", [["alpha", "beta"], ["beta"], ["alpha", "beta", "no-such-account"], []]
)
def test_load_returns_reads_what_the_orm_implementation_read(
    returns_db: Database, account_ids: list[str], lookback_days: int
) -> None:
    with returns_db.transaction() as session:
        expected_days, expected = reference_load_returns(session, account_ids, lookback_days)
    with returns_db.transaction() as session:
        days, returns = repository.load_returns(session, account_ids, lookback_days)

    assert days == expected_days
    assert returns == expected
    assert exact(returns) == exact(expected)
    assert all(isinstance(v, Decimal) for series in returns.values() for v in series.values())
    assert len(days) <= lookback_days
    assert all(day < START + timedelta(35) for day in days)  # days of ``other`` do not count
    assert set(returns) <= set(account_ids)
    if account_ids:
        assert days

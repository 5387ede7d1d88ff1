"""The paper market on both databases: quotes set now, read at a time and over a range, a
seeded random walk, and CSV files of quotes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import func, select

from orchestrator.adapters.brokers.base import Quote
from orchestrator.adapters.brokers.paper import PaperMarket
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import PaperQuoteRow
from orchestrator.domain.errors import ValidationFailed
from tests.component.conftest import FakeClock

D = Decimal


def quote_rows(db: Database) -> int:
    with db.transaction() as session:
        return session.scalar(select(func.count()).select_from(PaperQuoteRow)) or 0


def seconds(clock: FakeClock, s: float) -> datetime:
    return clock.now + timedelta(seconds=s)


def test_the_quote_at_a_time_is_the_latest_at_or_before_it(db: Database, clock: FakeClock) -> None:
    market = PaperMarket(db, clock=clock)
    first = market.set_quote("EURUSD", D("1.08500"), D("1.08502"))
    second = market.set_quote("EURUSD", D("1.08510"), D("1.08512"), at=seconds(clock, 10))
    market.set_quote("GBPUSD", D("1.26000"), D("1.26003"), at=seconds(clock, 5))

    assert first.at == clock.now
    assert market.quote_at("EURUSD") == first
    assert market.quote_at("EURUSD", seconds(clock, 9.999)) == first
    assert market.quote_at("EURUSD", seconds(clock, 10)) == second
    assert market.quote_at("EURUSD", seconds(clock, 3600)) == second
    assert market.quote_at("EURUSD", seconds(clock, -1)) is None
    assert market.quote_at("USDJPY") is None


def test_a_quote_set_again_at_the_same_time_replaces_it(db: Database, clock: FakeClock) -> None:
    market = PaperMarket(db, clock=clock)
    market.set_quote("EURUSD", D("1.08500"), D("1.08502"))

    market.set_quote("EURUSD", D("1.08000"), D("1.08001"))

    assert market.quote_at("EURUSD") == Quote(D("1.08000"), D("1.08001"), clock.now)
    assert quote_rows(db) == 1


def test_quotes_between_two_times_are_every_quote_in_the_range_in_time_order(
    db: Database, clock: FakeClock
) -> None:
    market = PaperMarket(db, clock=clock)
    for s, bid in [(3, "1.3"), (1, "1.1"), (2, "1.2"), (4, "1.4")]:
        market.set_quote("EURUSD", D(bid), D(bid) + D("0.0001"), at=seconds(clock, s))

    between = market.quotes_between("EURUSD", seconds(clock, 1), seconds(clock, 3))

    assert [q.bid for q in between] == [D("1.1"), D("1.2"), D("1.3")]
    assert market.quotes_between("GBPUSD", clock.now, seconds(clock, 10)) == []


@pytest.mark.parametrize(
    ("bid", "ask", "problem"),
    [
        ("1.1", "1.0", "ask 1.0 is below bid 1.1"),
        ("0", "1.0", "bid must be a positive decimal"),
        ("NaN", "1.0", "bid must be a positive decimal"),
    ],
)
def test_a_bad_quote_is_refused_naming_the_problem_and_nothing_is_written(
    db: Database, clock: FakeClock, bid: str, ask: str, problem: str
) -> None:
    market = PaperMarket(db, clock=clock)

    with pytest.raises(ValidationFailed) as refused:
        market.set_quote("EURUSD", D(bid), D(ask))

    assert problem in str(refused.value)
    assert quote_rows(db) == 0


WALK = {
    "start_bid": D("1.08500"),
    "spread": D("0.00002"),
    "tick": D("0.00001"),
    "steps": 200,
    "step_s": 1,
    "max_ticks": 3,
}


def test_a_walk_with_the_same_seed_writes_the_same_path_and_another_seed_another(
    db: Database, clock: FakeClock
) -> None:
    market = PaperMarket(db, clock=clock)

    path = market.walk("EURUSD", seed=7, **WALK)  # type: ignore[arg-type]
    again = market.walk("GBPUSD", seed=7, **WALK)  # type: ignore[arg-type]
    other = market.walk("USDJPY", seed=8, **WALK)  # type: ignore[arg-type]

    assert [(q.bid, q.ask, q.at) for q in path] == [(q.bid, q.ask, q.at) for q in again]
    assert [q.bid for q in path] != [q.bid for q in other]
    stored = market.quotes_between("EURUSD", clock.now, seconds(clock, 3600))
    assert stored == path
    assert len(path) == 200
    assert path[0] == Quote(D("1.08500"), D("1.08502"), clock.now)
    assert [q.at - clock.now for q in path[:3]] == [timedelta(seconds=s) for s in (0, 1, 2)]
    assert all(q.ask - q.bid == D("0.00002") for q in path)
    moves = {(b.bid - a.bid) / D("0.00001") for a, b in pairwise(path)}
    assert moves <= {D(n) for n in range(-3, 4)}
    assert len(moves) > 1, "the price moves"


def test_a_walk_with_a_bad_argument_is_refused_naming_it(db: Database, clock: FakeClock) -> None:
    market = PaperMarket(db, clock=clock)

    with pytest.raises(ValidationFailed) as refused:
        market.walk("EURUSD", seed=1, **{**WALK, "tick": D(0), "steps": 0})  # type: ignore[arg-type]

    assert refused.value.problems == [("tick", "must be positive"), ("steps", "must be at least 1")]
    assert quote_rows(db) == 0


def test_a_csv_of_offsets_is_written_relative_to_its_start(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "quotes.csv"
    path.write_text(
        "symbol,offset_s,bid,ask\n"
        "EURUSD,0,1.08500,1.08502\n"
        "EURUSD,1.5,1.08490,1.08492\n"
        "\n"
        "GBPUSD,2,1.26000,1.26003\n",
        encoding="utf-8",
    )
    market = PaperMarket(db, clock=clock)
    start = clock.now + timedelta(minutes=1)

    assert market.load_csv(path, start=start) == 3

    assert market.quotes_between("EURUSD", start, start + timedelta(seconds=10)) == [
        Quote(D("1.08500"), D("1.08502"), start),
        Quote(D("1.08490"), D("1.08492"), start + timedelta(seconds=1.5)),
    ]
    assert market.quote_at("GBPUSD", start + timedelta(seconds=2)) == Quote(
        D("1.26000"), D("1.26003"), start + timedelta(seconds=2)
    )


def test_a_csv_of_absolute_times_is_written_at_those_times(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "quotes.csv"
    path.write_text(
        "symbol,at,bid,ask\n"
        "EURUSD,2026-03-02T09:00:00Z,1.08500,1.08502\n"
        "EURUSD,2026-03-02T10:00:01+01:00,1.08400,1.08402\n",
        encoding="utf-8",
    )
    market = PaperMarket(db, clock=clock)

    assert market.load_csv(path) == 2

    nine = datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert [q.at for q in market.quotes_between("EURUSD", nine, nine + timedelta(hours=1))] == [
        nine,
        nine + timedelta(seconds=1),
    ]


def test_a_csv_with_bad_lines_is_refused_naming_each_and_nothing_is_written(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "quotes.csv"
    path.write_text(
        "symbol,at,bid,ask\n"
        "EURUSD,2026-03-02T09:00:00Z,1.08500,1.08502\n"
        "EURUSD,2026-03-02T09:00:01,1.08500,1.08502\n"
        "EURUSD,2026-03-02T09:00:02Z,abc,1.08502\n"
        "EURUSD,2026-03-02T09:00:03Z,1.08500,1.08400\n"
        "EUR USD,2026-03-02T09:00:04Z,1.08500,1.08502\n",
        encoding="utf-8",
    )
    market = PaperMarket(db, clock=clock)

    with pytest.raises(ValidationFailed) as refused:
        market.load_csv(path)

    assert refused.value.source == str(path)
    assert refused.value.problems == [
        ("line 3", "at '2026-03-02T09:00:01' must carry a timezone (e.g. 2026-03-02T09:00:00Z)"),
        ("line 4", "bid 'abc' is not a decimal number"),
        ("line 5", "ask 1.08400 is below bid 1.08500"),
        ("line 6", "symbol 'EUR USD' is not a symbol name"),
    ]
    assert quote_rows(db) == 0


def test_a_csv_without_the_columns_is_refused_naming_both_headers(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "quotes.csv"
    path.write_text("symbol,time,bid,ask\nEURUSD,0,1,1\n", encoding="utf-8")

    with pytest.raises(ValidationFailed) as refused:
        PaperMarket(db, clock=clock).load_csv(path)

    assert refused.value.problems == [
        (
            "header",
            "expected columns symbol,offset_s,bid,ask or symbol,at,bid,ask, "
            "got symbol,time,bid,ask",
        )
    ]

"""The paper broker's pure rules: which orders rest, the quote and price that fill a resting
one, the net position and P&L of a sequence of fills, and the seeded walk's path."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from orchestrator.adapters.brokers.base import Quote
from orchestrator.adapters.brokers.paper.account import Fill, replay
from orchestrator.adapters.brokers.paper.market import random_walk
from orchestrator.adapters.brokers.paper.matching import fill_price, rests
from orchestrator.domain.positions import Contract
from orchestrator.domain.values import OrderType, Side

D = Decimal
AT = datetime(2026, 3, 2, 9, tzinfo=UTC)
QUOTE = Quote(bid=D("1.08500"), ask=D("1.08502"), at=AT)
EURUSD = Contract(tick_size=D("0.00001"), tick_value=D(1), lot_step=D("0.01"), min_lot=D("0.01"))


def quote(bid: str, ask: str) -> Quote:
    return Quote(bid=D(bid), ask=D(ask), at=AT)


@pytest.mark.parametrize(
    ("order", "market", "reduces", "expected"),
    [
        ((OrderType.STOP, Side.SELL, None), QUOTE, False, True),
        ((OrderType.STOP, Side.BUY, None), None, False, True),
        ((OrderType.MARKET, Side.SELL, None), QUOTE, True, False),
        # A limit away from the market rests, entry or exit; one the quote reaches executes.
        ((OrderType.LIMIT, Side.SELL, "1.08800"), QUOTE, True, True),
        ((OrderType.LIMIT, Side.BUY, "1.08400"), QUOTE, False, True),
        ((OrderType.LIMIT, Side.BUY, "1.08502"), QUOTE, False, False),
        ((OrderType.LIMIT, Side.SELL, "1.08500"), QUOTE, True, False),
        # No quote at all: an entry executes as it always has, an exit (take-profit) rests.
        ((OrderType.LIMIT, Side.BUY, "1.08400"), None, False, False),
        ((OrderType.LIMIT, Side.SELL, "1.08800"), None, True, True),
    ],
)
def test_which_orders_rest_on_arrival(
    order: tuple[OrderType, Side, str | None], market: Quote | None, reduces: bool, expected: bool
) -> None:
    order_type, side, limit = order
    price = D(limit) if limit is not None else None
    assert rests(order_type, side, price, market, reduces=reduces) is expected


@pytest.mark.parametrize(
    ("order", "bid", "ask", "fill"),
    [
        # A long's stop: the bid at or below it, filled at that bid (below it on a gap).
        ((OrderType.STOP, Side.SELL, "1.08200"), "1.08201", "1.08203", None),
        ((OrderType.STOP, Side.SELL, "1.08200"), "1.08200", "1.08202", "1.08200"),
        ((OrderType.STOP, Side.SELL, "1.08200"), "1.08150", "1.08152", "1.08150"),
        # A short's stop: the ask at or above it, filled at that ask.
        ((OrderType.STOP, Side.BUY, "1.08800"), "1.08797", "1.08799", None),
        ((OrderType.STOP, Side.BUY, "1.08800"), "1.08840", "1.08842", "1.08842"),
        # A long's take-profit: the bid at or above it, at the limit or better.
        ((OrderType.LIMIT, Side.SELL, "1.08800"), "1.08799", "1.08801", None),
        ((OrderType.LIMIT, Side.SELL, "1.08800"), "1.08800", "1.08802", "1.08800"),
        ((OrderType.LIMIT, Side.SELL, "1.08800"), "1.08850", "1.08852", "1.08850"),
        # A short's take-profit: the ask at or below it, at the limit or better.
        ((OrderType.LIMIT, Side.BUY, "1.08200"), "1.08199", "1.08201", None),
        ((OrderType.LIMIT, Side.BUY, "1.08200"), "1.08100", "1.08102", "1.08102"),
    ],
)
def test_the_quote_that_fills_a_resting_order_and_its_price(
    order: tuple[OrderType, Side, str], bid: str, ask: str, fill: str | None
) -> None:
    order_type, side, price = order
    expected = D(fill) if fill is not None else None
    assert fill_price(order_type, side, D(price), quote(bid, ask)) == expected


def test_a_market_order_never_rests_so_it_has_no_trigger() -> None:
    with pytest.raises(ValueError, match="a MARKET order does not rest"):
        fill_price(OrderType.MARKET, Side.BUY, D(1), QUOTE)


def test_adding_to_a_position_averages_its_price_and_reducing_it_realizes_against_it() -> None:
    held = replay(
        [
            Fill(Side.BUY, D("1.00"), D("1.08500")),
            Fill(Side.BUY, D("1.00"), D("1.08600")),
            Fill(Side.SELL, D("0.50"), D("1.08700")),
        ],
        EURUSD,
    )

    assert (held.side, held.quantity, held.average_price) == (Side.BUY, D("1.50"), D("1.08550"))
    assert held.realized == D("75")  # 15 ticks × 1 × 0.5 lots


def test_a_fill_through_zero_closes_the_position_and_opens_the_rest_at_its_price() -> None:
    held = replay(
        [Fill(Side.SELL, D("1.00"), D("1.08500")), Fill(Side.BUY, D("1.50"), D("1.08600"))],
        EURUSD,
    )

    assert (held.side, held.lots, held.average_price) == (Side.BUY, D("0.50"), D("1.08600"))
    assert held.realized == D("-100")  # a short closed 10 ticks higher


def test_a_position_closed_exactly_is_flat_with_its_pnl_realized() -> None:
    held = replay(
        [Fill(Side.BUY, D("0.30"), D("1.08500")), Fill(Side.SELL, D("0.30"), D("1.08200"))],
        EURUSD,
    )

    assert (held.quantity, held.average_price, held.realized) == (D(0), None, D("-90"))


def test_a_walk_is_the_same_path_on_every_run() -> None:
    """The seed names a path for good: these bids were written by an earlier run (draws come
    only from ``random.Random(seed).random()``, which Python keeps stable)."""
    path = random_walk(
        start_bid=D("1.00000"),
        spread=D("0.00002"),
        tick=D("0.00001"),
        steps=8,
        step_s=1,
        seed=42,
        start=AT,
    )

    assert [format(q.bid, "f") for q in path] == [
        "1.00000",
        "1.00000",
        "0.99999",
        "0.99998",
        "0.99997",
        "0.99998",
        "0.99999",
        "1.00000",
    ]


def test_a_walk_never_takes_the_bid_below_one_tick() -> None:
    path = random_walk(
        start_bid=D("0.00002"),
        spread=D(0),
        tick=D("0.00001"),
        steps=500,
        step_s=0.5,
        seed=3,
        start=AT,
        max_ticks=5,
    )

    assert min(q.bid for q in path) == D("0.00001")

"""Resting orders on the paper broker, on both databases: stops and take-profits that the paper
market's quotes trigger, cancel and cancel/replace, the quote; entries as they always were."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from orchestrator.adapters.brokers.base import BrokerOrder, OrderTicket, ReplaceRejected
from orchestrator.adapters.brokers.paper import PaperBroker
from orchestrator.adapters.db.engine import Database
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.values import OrderType, Side
from tests.component.conftest import FakeClock
from tests.support import account, book, load

D = Decimal
REFERENCE = D("1.08500")


def order(
    client_order_id: str,
    quantity: str = "1.00",
    *,
    side: Side = Side.BUY,
    order_type: OrderType = OrderType.MARKET,
    limit: str | None = None,
    stop: str | None = None,
    account_id: str = "acct",
) -> OrderTicket:
    return OrderTicket(
        client_order_id=client_order_id,
        account_id=account_id,
        symbol="EURUSD",
        side=side,
        order_type=order_type,
        quantity=D(quantity),
        limit_price=D(limit) if limit is not None else None,
        reference_price=REFERENCE,
        stop_price=D(stop) if stop is not None else None,
    )


def stop(client_order_id: str, price: str, quantity: str = "1.00", **kw: Any) -> OrderTicket:
    side = kw.pop("side", Side.SELL)
    return order(client_order_id, quantity, side=side, order_type=OrderType.STOP, stop=price, **kw)


def limit(client_order_id: str, price: str, quantity: str = "1.00", **kw: Any) -> OrderTicket:
    side = kw.pop("side", Side.SELL)
    return order(
        client_order_id, quantity, side=side, order_type=OrderType.LIMIT, limit=price, **kw
    )


def paper(db: Database, clock: FakeClock, **behaviour: Any) -> PaperBroker:
    load(db, book(account("acct", paper=behaviour)))
    return PaperBroker(db, clock=clock)


def at(broker: PaperBroker, clock: FakeClock, s: float, bid: str, spread: str = "0.00002") -> None:
    """A quote ``s`` seconds from now (the clock does not move)."""
    broker.market.set_quote(
        "EURUSD", D(bid), D(bid) + D(spread), at=clock.now + timedelta(seconds=s)
    )


def now(broker: PaperBroker, client_order_id: str) -> BrokerOrder:
    found = broker.status(client_order_id)
    assert found is not None
    return found


def fills(found: BrokerOrder) -> list[tuple[Decimal, Decimal]]:
    return [(e.quantity, e.price) for e in found.executions]


def test_a_long_stop_fills_at_the_first_bid_through_it_below_the_stop_on_a_gap(
    db: Database, clock: FakeClock
) -> None:
    broker = paper(db, clock)
    at(broker, clock, 0, "1.08500")
    entry = broker.submit(order("entry"))
    placed = broker.submit(stop("stop", "1.08200"))
    start = clock.now
    at(broker, clock, 1, "1.08300")
    at(broker, clock, 2, "1.08201")
    at(broker, clock, 3, "1.08150")  # a gap: nothing traded between 1.08201 and 1.08150
    at(broker, clock, 4, "1.08100")

    clock.advance(ms=10_000)
    hit = now(broker, "stop")

    assert fills(entry) == [(D("1.00"), REFERENCE)]
    assert (placed.status, placed.executions) == (OrderStatus.NEW, ())
    assert hit.status is OrderStatus.FILLED
    assert fills(hit) == [(D("1.00"), D("1.08150"))]
    assert hit.executions[0].executed_at == start + timedelta(seconds=3)
    assert broker.status("stop") == hit  # read again: nothing more


def test_a_quote_written_after_a_check_that_began_later_still_triggers_the_stop(
    db: Database, clock: FakeClock
) -> None:
    # The market's writer stamps a quote, then commits it; a check that began after the stamp
    # but read before the commit did not see it. The next check must: a quote in force is
    # never skipped because it became visible late (the stop stayed working for good).
    broker = paper(db, clock)
    at(broker, clock, 0, "1.08500")
    broker.submit(order("entry"))
    broker.submit(stop("stop", "1.08200"))
    start = clock.now
    clock.advance(ms=2_000)
    assert now(broker, "stop").status is OrderStatus.NEW  # a check at 2 s: nothing through
    broker.market.set_quote("EURUSD", D("1.08150"), D("1.08152"), at=start + timedelta(seconds=1))
    clock.advance(ms=1_000)

    hit = now(broker, "stop")

    assert hit.status is OrderStatus.FILLED
    assert fills(hit) == [(D("1.00"), D("1.08150"))]


def test_a_short_stop_fills_at_the_first_ask_at_or_above_it(db: Database, clock: FakeClock) -> None:
    broker = paper(db, clock)
    at(broker, clock, 0, "1.08500")
    broker.submit(order("entry", side=Side.SELL))
    broker.submit(stop("stop", "1.08800", side=Side.BUY))
    at(broker, clock, 1, "1.08790")  # ask 1.08792
    at(broker, clock, 2, "1.08798")  # ask 1.08800: at the stop

    clock.advance(ms=5_000)
    hit = now(broker, "stop")

    assert (hit.status, fills(hit)) == (OrderStatus.FILLED, [(D("1.00"), D("1.08800"))])


def test_a_take_profit_fills_at_its_limit_when_the_bid_reaches_it(
    db: Database, clock: FakeClock
) -> None:
    broker = paper(db, clock)
    at(broker, clock, 0, "1.08500")
    broker.submit(order("entry"))
    placed = broker.submit(limit("tp", "1.08800"))
    at(broker, clock, 1, "1.08799")
    at(broker, clock, 2, "1.08800")

    clock.advance(ms=5_000)
    hit = now(broker, "tp")

    assert placed.status is OrderStatus.NEW
    assert (hit.status, fills(hit)) == (OrderStatus.FILLED, [(D("1.00"), D("1.08800"))])


def test_a_take_profit_gapped_through_fills_better_than_its_limit(
    db: Database, clock: FakeClock
) -> None:
    broker = paper(db, clock)
    at(broker, clock, 0, "1.08500")
    broker.submit(order("entry", side=Side.SELL))
    broker.submit(limit("tp", "1.08200", side=Side.BUY))
    at(broker, clock, 1, "1.08100")  # ask 1.08102, below the limit

    clock.advance(ms=1_000)
    hit = now(broker, "tp")

    assert (hit.status, fills(hit)) == (OrderStatus.FILLED, [(D("1.00"), D("1.08102"))])


def test_nothing_fills_before_the_price_gets_there(db: Database, clock: FakeClock) -> None:
    broker = paper(db, clock)
    broker.market.walk(
        "EURUSD",
        start_bid=D("1.08500"),
        spread=D("0.00002"),
        tick=D("0.00001"),
        steps=300,
        step_s=1,
        seed=11,
    )
    path = broker.market.quotes_between("EURUSD", clock.now, clock.now + timedelta(hours=1))
    low, high = min(q.bid for q in path), max(q.ask for q in path)
    broker.submit(order("entry"))
    broker.submit(stop("stop", format(low - D("0.00001"), "f"), "0.50"))
    broker.submit(limit("tp", format(high + D("0.00001"), "f"), "0.50"))
    at(broker, clock, 400, format(low - D("0.00001"), "f"))  # not yet: 400 s from now

    clock.advance(ms=300_000)
    working = broker.open_orders("acct")

    assert sorted((o.client_order_id, o.status) for o in working) == [
        ("stop", OrderStatus.NEW),
        ("tp", OrderStatus.NEW),
    ]
    assert all(o.executions == () for o in working)

    clock.advance(ms=100_000)
    assert now(broker, "stop").status is OrderStatus.FILLED
    assert now(broker, "tp").status is OrderStatus.NEW


def test_a_stop_with_no_quote_works_until_it_is_cancelled(db: Database, clock: FakeClock) -> None:
    broker = paper(db, clock)
    broker.submit(order("entry"))
    broker.submit(stop("stop", "1.08200"))

    clock.advance(ms=60_000)
    assert now(broker, "stop").status is OrderStatus.NEW
    cancelled = broker.cancel("stop")
    at(broker, clock, 1, "1.08000")
    clock.advance(ms=2_000)

    assert cancelled is not None
    assert (cancelled.status, cancelled.executions) == (OrderStatus.CANCELLED, ())
    assert now(broker, "stop") == cancelled
    assert broker.open_orders("acct") == []


def test_cancel_of_a_stop_the_market_has_reached_finds_it_filled(
    db: Database, clock: FakeClock
) -> None:
    broker = paper(db, clock)
    at(broker, clock, 0, "1.08500")
    broker.submit(stop("stop", "1.08200"))
    at(broker, clock, 1, "1.08190")
    clock.advance(ms=1_000)

    cancelled = broker.cancel("stop")

    assert cancelled is not None
    assert (cancelled.status, fills(cancelled)) == (
        OrderStatus.FILLED,
        [(D("1.00"), D("1.08190"))],
    )


def test_a_stop_already_through_the_market_fills_at_once_at_the_quote(
    db: Database, clock: FakeClock
) -> None:
    broker = paper(db, clock)
    at(broker, clock, 0, "1.08100")
    broker.submit(order("entry"))

    placed = broker.submit(stop("stop", "1.08200"))

    assert (placed.status, fills(placed)) == (OrderStatus.FILLED, [(D("1.00"), D("1.08100"))])


def test_a_quote_set_at_the_moment_of_the_last_reading_still_counts(
    db: Database, clock: FakeClock
) -> None:
    broker = paper(db, clock)
    at(broker, clock, 0, "1.08500")
    broker.submit(stop("stop", "1.08200"))

    at(broker, clock, 0, "1.08150")  # the same instant, set anew

    assert fills(now(broker, "stop")) == [(D("1.00"), D("1.08150"))]


def test_replace_moves_the_stop_and_resizes_it_the_old_order_cancelled(
    db: Database, clock: FakeClock
) -> None:
    broker = paper(db, clock)
    at(broker, clock, 0, "1.08500")
    broker.submit(order("entry"))
    broker.submit(stop("stop-1", "1.08200"))

    moved = broker.replace("stop-1", stop("stop-2", "1.08300", "0.60"))
    at(broker, clock, 1, "1.08250")
    clock.advance(ms=1_000)

    assert (moved.client_order_id, moved.status, moved.quantity) == (
        "stop-2",
        OrderStatus.NEW,
        D("0.60"),
    )
    assert (now(broker, "stop-1").status, now(broker, "stop-1").executions) == (
        OrderStatus.CANCELLED,
        (),
    )
    assert fills(now(broker, "stop-2")) == [(D("0.60"), D("1.08250"))]
    assert [o.client_order_id for o in broker.open_orders("acct")] == []


def test_replace_of_a_take_profit_changes_its_limit(db: Database, clock: FakeClock) -> None:
    broker = paper(db, clock)
    at(broker, clock, 0, "1.08500")
    broker.submit(order("entry"))
    broker.submit(limit("tp-1", "1.08800"))

    broker.replace("tp-1", limit("tp-2", "1.08600"))
    at(broker, clock, 1, "1.08700")
    clock.advance(ms=1_000)

    assert now(broker, "tp-1").status is OrderStatus.CANCELLED
    assert fills(now(broker, "tp-2")) == [(D("1.00"), D("1.08700"))]


def test_replace_of_an_order_that_filled_meanwhile_is_refused_carrying_its_fill(
    db: Database, clock: FakeClock
) -> None:
    broker = paper(db, clock)
    at(broker, clock, 0, "1.08500")
    broker.submit(order("entry"))
    broker.submit(stop("stop-1", "1.08200"))
    at(broker, clock, 1, "1.08150")  # not yet read by anyone
    clock.advance(ms=1_000)

    with pytest.raises(ReplaceRejected) as refused:
        broker.replace("stop-1", stop("stop-2", "1.08100"))

    assert refused.value.client_order_id == "stop-1"
    assert refused.value.order is not None
    assert refused.value.order.status is OrderStatus.FILLED
    assert fills(refused.value.order) == [(D("1.00"), D("1.08150"))]
    assert "too late: the order is FILLED" in str(refused.value)
    assert broker.status("stop-2") is None
    assert now(broker, "stop-1") == refused.value.order


def test_replace_is_idempotent_on_the_new_client_order_id(db: Database, clock: FakeClock) -> None:
    broker = paper(db, clock)
    at(broker, clock, 0, "1.08500")
    broker.submit(order("entry"))
    broker.submit(stop("stop-1", "1.08200"))

    first = broker.replace("stop-1", stop("stop-2", "1.08300"))
    retry = broker.replace("stop-1", stop("stop-2", "1.08300"))
    at(broker, clock, 1, "1.08250")
    clock.advance(ms=1_000)
    after_fill = broker.replace("stop-1", stop("stop-2", "1.08300"))

    assert retry == first
    assert after_fill.status is OrderStatus.FILLED
    assert fills(after_fill) == [(D("1.00"), D("1.08250"))]
    assert broker.open_orders("acct") == []


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        ("never-sent", stop("stop-2", "1.08300"), "no such order"),
        ("stop-1", stop("stop-1", "1.08300"), "needs a client order id of its own"),
        (
            "stop-1",
            stop("stop-2", "1.08300", side=Side.BUY),
            "keeps the order's account, symbol and side",
        ),
    ],
)
def test_replace_that_cannot_be_is_refused_and_changes_nothing(
    db: Database, clock: FakeClock, old: str, new: OrderTicket, reason: str
) -> None:
    broker = paper(db, clock)
    broker.submit(stop("stop-1", "1.08200"))

    with pytest.raises(ReplaceRejected, match=reason):
        broker.replace(old, new)

    assert now(broker, "stop-1").status is OrderStatus.NEW
    assert broker.status("stop-2") is None


def test_the_quote_is_the_latest_at_or_before_now(db: Database, clock: FakeClock) -> None:
    broker = paper(db, clock)
    assert broker.quote("acct", "EURUSD") is None

    at(broker, clock, 0, "1.08500")
    at(broker, clock, 5, "1.08600")

    first = broker.quote("acct", "EURUSD")
    clock.advance(ms=5_000)
    later = broker.quote("acct", "EURUSD")

    assert first is not None and (first.bid, first.ask) == (D("1.08500"), D("1.08502"))
    assert later is not None and (later.bid, later.at) == (D("1.08600"), clock.now)
    assert broker.quote("acct", "GBPUSD") is None


def test_entries_fill_as_they_always_have_with_a_market_and_exits_at_its_quote(
    db: Database, clock: FakeClock
) -> None:
    broker = paper(db, clock, slippage_ticks=2)
    at(broker, clock, 0, "1.08400")

    entry = broker.submit(order("entry", "2.00"))
    exit_ = broker.submit(order("exit", "0.50", side=Side.SELL))
    adding = broker.submit(order("more", "0.50", side=Side.BUY))

    assert fills(entry) == [(D("2.00"), D("1.08502"))]  # reference + 2 ticks, not the ask
    assert fills(exit_) == [(D("0.50"), D("1.08400"))]  # at the bid
    assert fills(adding) == [(D("0.50"), D("1.08502"))]  # adds to the long: entry


def test_a_limit_entry_the_market_reaches_fills_on_arrival_and_one_away_from_it_rests(
    db: Database, clock: FakeClock
) -> None:
    broker = paper(db, clock)
    at(broker, clock, 0, "1.08500")

    reached = broker.submit(limit("reached", "1.08510", side=Side.BUY))
    away = broker.submit(limit("away", "1.08400", side=Side.BUY))
    at(broker, clock, 1, "1.08390")  # ask 1.08392
    clock.advance(ms=1_000)

    assert fills(reached) == [(D("1.00"), D("1.08510"))]  # at its limit, as before
    assert away.status is OrderStatus.NEW
    assert fills(now(broker, "away")) == [(D("1.00"), D("1.08392"))]


def test_without_a_market_a_take_profit_rests_and_a_limit_entry_fills_at_its_limit(
    db: Database, clock: FakeClock
) -> None:
    broker = paper(db, clock)

    entry = broker.submit(limit("entry", "1.08450", side=Side.BUY))
    take_profit = broker.submit(limit("tp", "1.08800"))

    assert fills(entry) == [(D("1.00"), D("1.08450"))]
    assert (take_profit.status, take_profit.executions) == (OrderStatus.NEW, ())


def test_resting_orders_do_not_count_among_the_orders_the_behaviour_counts(
    db: Database, clock: FakeClock
) -> None:
    """``stall_after: 2``: the account's third order executing on arrival stalls; the stop
    between its entries is not one of them."""
    broker = paper(db, clock, stall_after=2)

    first = broker.submit(order("entry-1"))
    broker.submit(stop("stop", "1.08200"))
    second = broker.submit(order("entry-2"))
    third = broker.submit(order("entry-3"))

    assert (first.status, second.status) == (OrderStatus.FILLED, OrderStatus.FILLED)
    assert (third.status, third.executions) == (OrderStatus.NEW, ())


def test_a_rejecting_account_still_takes_stops_and_a_stop_without_a_price_is_rejected(
    db: Database, clock: FakeClock
) -> None:
    broker = paper(db, clock, fill="reject", reject_text="no money")

    entry = broker.submit(order("entry"))
    placed = broker.submit(stop("stop", "1.08200"))
    priceless = broker.submit(order("no-price", side=Side.SELL, order_type=OrderType.STOP))

    assert (entry.status, entry.reject_text) == (OrderStatus.REJECTED, "no money")
    assert placed.status is OrderStatus.NEW
    assert (priceless.status, priceless.reject_text) == (
        OrderStatus.REJECTED,
        "STOP order without a positive stop price",
    )


def test_every_execution_of_entries_and_exits_has_its_own_id(
    db: Database, clock: FakeClock
) -> None:
    broker = paper(db, clock, slices=3)
    at(broker, clock, 0, "1.08500")
    broker.submit(order("entry", "0.90"))
    broker.submit(stop("stop", "1.08200", "0.90"))
    at(broker, clock, 1, "1.08100")
    clock.advance(ms=1_000)

    executions = [*now(broker, "entry").executions, *now(broker, "stop").executions]

    assert len(executions) == 4
    assert len({e.execution_id for e in executions}) == 4


def test_concurrent_readers_of_a_triggered_stop_book_its_fill_once_on_postgres(
    postgres_db: Database, clock: FakeClock
) -> None:
    """Every reading locks the orders it brings up to date: eight threads reading at once
    (status, the open orders, positions, account state) find one fill, not several."""
    broker = paper(postgres_db, clock)
    at(broker, clock, 0, "1.08500")
    broker.submit(order("entry"))
    broker.submit(stop("stop", "1.08200"))
    at(broker, clock, 1, "1.08150")
    clock.advance(ms=1_000)
    readers = [
        lambda: broker.status("stop"),
        lambda: broker.open_orders("acct"),
        lambda: broker.positions("acct"),
        lambda: broker.account_state("acct"),
    ] * 2
    start = threading.Barrier(len(readers))

    def read(reader: Callable[[], object]) -> object:
        start.wait()
        return reader()

    with ThreadPoolExecutor(max_workers=len(readers)) as pool:
        list(pool.map(read, readers))

    assert fills(now(broker, "stop")) == [(D("1.00"), D("1.08150"))]
    assert broker.positions("acct") == []

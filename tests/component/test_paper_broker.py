"""The paper broker on both databases, driven by a fake clock."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from orchestrator.adapters.brokers.base import BrokerOrder, OrderTicket
from orchestrator.adapters.brokers.paper import PaperBroker
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import PaperExecutionRow, PaperOrderRow
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.values import OrderType, Side
from tests.component.conftest import FakeClock
from tests.support import account, book, load

REFERENCE = Decimal("1.08500")


def ticket(
    client_order_id: str,
    account_id: str,
    quantity: str = "1.00",
    *,
    side: Side = Side.BUY,
    order_type: OrderType = OrderType.MARKET,
    limit_price: str | None = None,
    symbol: str = "EURUSD",
) -> OrderTicket:
    return OrderTicket(
        client_order_id=client_order_id,
        account_id=account_id,
        symbol=symbol,
        side=side,
        order_type=order_type,
        quantity=Decimal(quantity),
        limit_price=Decimal(limit_price) if limit_price is not None else None,
        reference_price=REFERENCE,
    )


def broker_with(db: Database, clock: FakeClock, **paper: Any) -> PaperBroker:
    """A paper broker whose account ``acct`` behaves as ``paper`` says."""
    load(db, book(account("acct", paper=paper), account("other", paper={"latency_ms": 1000})))
    return PaperBroker(db, clock=clock)


def current(broker: PaperBroker, client_order_id: str) -> BrokerOrder:
    order = broker.status(client_order_id)
    assert order is not None, f"the broker does not know {client_order_id}"
    return order


def filled(order: BrokerOrder) -> Decimal:
    return sum((e.quantity for e in order.executions), Decimal(0))


def paper_rows(db: Database, client_order_id: str) -> tuple[int, int]:
    with db.transaction() as session:
        orders = session.scalar(
            select(func.count())
            .select_from(PaperOrderRow)
            .where(PaperOrderRow.client_order_id == client_order_id)
        )
        executions = session.scalar(
            select(func.count())
            .select_from(PaperExecutionRow)
            .where(PaperExecutionRow.client_order_id == client_order_id)
        )
    return orders or 0, executions or 0


def test_full_fill_without_latency_is_filled_at_submit(db: Database, clock: FakeClock) -> None:
    broker = broker_with(db, clock)

    order = broker.submit(ticket("o-1", "acct", "1.25"))

    assert order.status is OrderStatus.FILLED
    assert order.client_order_id == "o-1"
    assert order.broker_order_id is not None
    assert order.quantity == Decimal("1.25")
    assert [(e.quantity, e.price) for e in order.executions] == [(Decimal("1.25"), REFERENCE)]
    assert order.executions[0].executed_at == clock.now
    assert order.reject_text is None
    assert broker.status("o-1") == order


def test_market_fill_price_moves_adversely_by_the_slippage_ticks(
    db: Database, clock: FakeClock
) -> None:
    broker = broker_with(db, clock, slippage_ticks=3)

    buy = broker.submit(ticket("buy", "acct", "0.10", side=Side.BUY))
    sell = broker.submit(ticket("sell", "acct", "0.10", side=Side.SELL))
    limit = broker.submit(
        ticket("limit", "acct", "0.10", order_type=OrderType.LIMIT, limit_price="1.08450")
    )

    assert buy.executions[0].price == Decimal("1.08503")
    assert sell.executions[0].price == Decimal("1.08497")
    assert limit.executions[0].price == Decimal("1.08450")


def test_partial_fill_ratio_fills_the_floored_share_and_expires_the_rest(
    db: Database, clock: FakeClock
) -> None:
    broker = broker_with(db, clock, fill="partial", partial_ratio="0.6")

    # 0.37 × 0.6 = 0.222, floored to the 0.01 lot step: 0.22.
    order = broker.submit(ticket("o-1", "acct", "0.37"))

    assert order.status is OrderStatus.EXPIRED
    assert order.quantity == Decimal("0.37")
    assert filled(order) == Decimal("0.22")
    assert all(e.price == REFERENCE for e in order.executions)


def test_partial_fill_over_slices_stays_partially_filled_then_expires(
    db: Database, clock: FakeClock
) -> None:
    broker = broker_with(db, clock, fill="partial", partial_ratio="0.6", slices=2, latency_ms=400)

    order = broker.submit(ticket("o-1", "acct", "1.00"))
    assert order.status is OrderStatus.NEW

    clock.advance(ms=200)
    order = current(broker, "o-1")
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert filled(order) == Decimal("0.30")

    clock.advance(ms=200)
    order = current(broker, "o-1")
    assert order.status is OrderStatus.EXPIRED
    assert filled(order) == Decimal("0.60")


def test_partial_fill_smaller_than_a_lot_step_expires_with_nothing_filled(
    db: Database, clock: FakeClock
) -> None:
    broker = broker_with(db, clock, fill="partial", partial_ratio="0.6")

    order = broker.submit(ticket("o-1", "acct", "0.01"))

    assert order.status is OrderStatus.EXPIRED
    assert order.executions == ()


def test_reject_keeps_the_broker_text_verbatim(db: Database, clock: FakeClock) -> None:
    text = "  Not enough money [10019] — «marge insuffisante»: 'EURUSD' ✗\n"
    broker = broker_with(db, clock, fill="reject", reject_text=text)

    order = broker.submit(ticket("o-1", "acct"))

    assert order.status is OrderStatus.REJECTED
    assert order.reject_text == text
    assert order.executions == ()
    again = current(broker, "o-1")
    assert again.reject_text == text


def test_unknown_symbol_is_rejected_naming_it(db: Database, clock: FakeClock) -> None:
    broker = broker_with(db, clock)

    order = broker.submit(ticket("o-1", "acct", symbol="XAUUSD"))

    assert order.status is OrderStatus.REJECTED
    assert order.reject_text == "Unknown symbol XAUUSD"


def test_slices_with_latency_arrive_as_the_clock_advances(db: Database, clock: FakeClock) -> None:
    broker = broker_with(db, clock, slices=3, latency_ms=300)
    submitted_at = clock.now

    order = broker.submit(ticket("o-1", "acct", "0.30"))
    assert order.status is OrderStatus.NEW
    assert order.executions == ()

    clock.advance(ms=99)
    order = current(broker, "o-1")
    assert order.status is OrderStatus.NEW

    clock.advance(ms=1)
    order = current(broker, "o-1")
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert [e.quantity for e in order.executions] == [Decimal("0.10")]

    clock.advance(ms=100)
    order = current(broker, "o-1")
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert len(order.executions) == 2

    clock.advance(ms=100)
    order = current(broker, "o-1")
    assert order.status is OrderStatus.FILLED
    assert [e.quantity for e in order.executions] == [Decimal("0.10")] * 3
    assert [e.executed_at - submitted_at for e in order.executions] == [
        timedelta(milliseconds=100),
        timedelta(milliseconds=200),
        timedelta(milliseconds=300),
    ]
    assert len({e.execution_id for e in order.executions}) == 3

    # Reading a terminal order again changes nothing.
    clock.advance(ms=10_000)
    assert broker.status("o-1") == order
    assert paper_rows(db, "o-1") == (1, 3)


def test_a_late_poll_materialises_every_due_slice_at_once(db: Database, clock: FakeClock) -> None:
    broker = broker_with(db, clock, slices=4, latency_ms=400)
    broker.submit(ticket("o-1", "acct", "1.00"))

    clock.advance(ms=1000)
    order = current(broker, "o-1")
    assert order.status is OrderStatus.FILLED
    assert filled(order) == Decimal("1.00")
    assert len(order.executions) == 4


def test_slices_that_do_not_divide_evenly_put_the_remainder_in_the_last(
    db: Database, clock: FakeClock
) -> None:
    broker = broker_with(db, clock, slices=3)

    order = broker.submit(ticket("o-1", "acct", "1.00"))

    assert [e.quantity for e in order.executions] == [
        Decimal("0.33"),
        Decimal("0.33"),
        Decimal("0.34"),
    ]


def test_submit_is_idempotent_on_the_client_order_id(db: Database, clock: FakeClock) -> None:
    broker = broker_with(db, clock, slices=2, latency_ms=200)

    first = broker.submit(ticket("o-1", "acct", "1.00"))
    second = broker.submit(ticket("o-1", "acct", "1.00"))
    different = broker.submit(ticket("o-1", "acct", "5.00", side=Side.SELL))

    assert second == first
    assert different == first
    assert different.quantity == Decimal("1.00")
    assert paper_rows(db, "o-1") == (1, 0)

    clock.advance(ms=200)
    resubmitted = broker.submit(ticket("o-1", "acct", "1.00"))
    assert resubmitted.status is OrderStatus.FILLED
    assert resubmitted.broker_order_id == first.broker_order_id
    assert paper_rows(db, "o-1") == (1, 2)


def test_cancel_of_a_working_order_keeps_the_executions_so_far(
    db: Database, clock: FakeClock
) -> None:
    broker = broker_with(db, clock, slices=2, latency_ms=200)
    broker.submit(ticket("o-1", "acct", "1.00"))
    clock.advance(ms=100)

    cancelled = broker.cancel("o-1")

    assert cancelled is not None
    assert cancelled.status is OrderStatus.CANCELLED
    assert [e.quantity for e in cancelled.executions] == [Decimal("0.50")]

    clock.advance(ms=1000)
    later = current(broker, "o-1")
    assert later.status is OrderStatus.CANCELLED
    assert later.executions == cancelled.executions


def test_cancel_of_a_new_order_cancels_it_with_no_executions(
    db: Database, clock: FakeClock
) -> None:
    broker = broker_with(db, clock, latency_ms=500)
    broker.submit(ticket("o-1", "acct"))

    cancelled = broker.cancel("o-1")

    assert cancelled is not None
    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.executions == ()


def test_cancel_of_a_terminal_order_returns_it_unchanged(db: Database, clock: FakeClock) -> None:
    broker = broker_with(db, clock)
    order = broker.submit(ticket("o-1", "acct"))

    assert broker.cancel("o-1") == order
    assert order.status is OrderStatus.FILLED


def test_cancel_after_the_last_slice_is_due_finds_the_order_filled(
    db: Database, clock: FakeClock
) -> None:
    broker = broker_with(db, clock, slices=2, latency_ms=200)
    broker.submit(ticket("o-1", "acct", "1.00"))
    clock.advance(ms=200)

    order = broker.cancel("o-1")

    assert order is not None
    assert order.status is OrderStatus.FILLED
    assert filled(order) == Decimal("1.00")


def test_unknown_client_order_id_has_no_status_and_cannot_be_cancelled(
    db: Database, clock: FakeClock
) -> None:
    broker = broker_with(db, clock)

    assert broker.status("never-sent") is None
    assert broker.cancel("never-sent") is None


def test_open_orders_lists_only_the_accounts_non_terminal_orders(
    db: Database, clock: FakeClock
) -> None:
    broker = broker_with(db, clock, latency_ms=500)
    broker.submit(ticket("early", "acct"))
    clock.advance(ms=300)
    broker.submit(ticket("late", "acct"))
    broker.submit(ticket("cancelled", "acct"))
    broker.cancel("cancelled")
    broker.submit(ticket("elsewhere", "other"))

    assert sorted(o.client_order_id for o in broker.open_orders("acct")) == ["early", "late"]

    clock.advance(ms=200)  # "early" reaches its latency and fills on this read
    still_open = broker.open_orders("acct")
    assert [o.client_order_id for o in still_open] == ["late"]
    assert still_open[0].status is OrderStatus.NEW
    early = current(broker, "early")
    assert early.status is OrderStatus.FILLED

    clock.advance(ms=300)
    assert broker.open_orders("acct") == []
    assert [o.client_order_id for o in broker.open_orders("other")] == ["elsewhere"]
    assert broker.open_orders("nobody") == []


@pytest.mark.parametrize("fill", ["full", "partial", "reject"])
def test_every_order_reaches_a_terminal_state_once_its_latency_has_passed(
    db: Database, clock: FakeClock, fill: str
) -> None:
    broker = broker_with(db, clock, fill=fill, slices=5, latency_ms=1000)
    broker.submit(ticket("o-1", "acct", "2.00"))

    clock.advance(ms=1000)
    order = current(broker, "o-1")
    expected = {
        "full": (OrderStatus.FILLED, Decimal("2.00")),
        "partial": (OrderStatus.EXPIRED, Decimal("1.00")),
        "reject": (OrderStatus.REJECTED, Decimal(0)),
    }[fill]
    assert (order.status, filled(order)) == expected
    assert broker.open_orders("acct") == []

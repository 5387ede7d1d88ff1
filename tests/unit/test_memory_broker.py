"""The benchmark's in-memory broker: entries fill at once, protective orders rest (it has no
market to trigger them) until cancelled or replaced."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bench.memory_broker import MemoryBroker
from orchestrator.adapters.brokers.base import OrderTicket, ReplaceRejected
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.values import OrderType, Side


def ticket(
    client_order_id: str, side: Side, order_type: OrderType, price: str | None = None
) -> OrderTicket:
    return OrderTicket(
        client_order_id=client_order_id,
        account_id="acct",
        symbol="EURUSD",
        side=side,
        order_type=order_type,
        quantity=Decimal(1),
        limit_price=Decimal(price) if order_type is OrderType.LIMIT and price else None,
        reference_price=Decimal("1.085"),
        stop_price=Decimal(price) if order_type is OrderType.STOP and price else None,
    )


def test_an_entry_fills_at_once_and_its_stop_and_take_profit_rest() -> None:
    broker = MemoryBroker()

    entry = broker.submit(ticket("entry", Side.BUY, OrderType.LIMIT, "1.085"))
    stop = broker.submit(ticket("stop", Side.SELL, OrderType.STOP, "1.082"))
    take_profit = broker.submit(ticket("tp", Side.SELL, OrderType.LIMIT, "1.088"))

    assert entry.status is OrderStatus.FILLED
    assert (stop.status, take_profit.status) == (OrderStatus.NEW, OrderStatus.NEW)
    assert [o.client_order_id for o in broker.open_orders("acct")] == ["stop", "tp"]
    cancelled = broker.cancel("tp")
    assert cancelled is not None and cancelled.status is OrderStatus.CANCELLED


def test_replace_swaps_a_working_order_idempotently_and_refuses_a_filled_one() -> None:
    broker = MemoryBroker()
    broker.submit(ticket("entry", Side.BUY, OrderType.MARKET))
    broker.submit(ticket("stop-1", Side.SELL, OrderType.STOP, "1.082"))

    moved = broker.replace("stop-1", ticket("stop-2", Side.SELL, OrderType.STOP, "1.083"))

    assert broker.replace("stop-1", ticket("stop-2", Side.SELL, OrderType.STOP, "1.083")) == moved
    old = broker.status("stop-1")
    assert old is not None and old.status is OrderStatus.CANCELLED
    with pytest.raises(ReplaceRejected, match="too late: the order is FILLED"):
        broker.replace("entry", ticket("entry-2", Side.BUY, OrderType.MARKET))

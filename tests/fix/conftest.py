"""FIX tier: the adapter against QuickFIX's own programs and the suite's own acceptor, each in
a loopback-only network namespace (see ``tests/fix/peers.py``). Needs root for the namespace
and the peers from ``scripts/install-fix-peers.sh``: missing either is a failure, not a skip."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

from orchestrator.adapters.brokers.base import BrokerOrder, OrderTicket
from orchestrator.adapters.brokers.fix import FixBroker, FixSessionConfig, OrderLookup
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.values import OrderType, Side

StartBroker = Callable[..., FixBroker]


@pytest.fixture
def start_broker() -> Iterator[StartBroker]:
    """Start a FixBroker, wait for its logon, and stop it when the test ends."""
    started: list[FixBroker] = []

    def start(config: FixSessionConfig, order_lookup: OrderLookup | None = None) -> FixBroker:
        broker = FixBroker(config, order_lookup=order_lookup)
        broker.start()
        started.append(broker)
        assert broker.wait_logged_on(15), f"{config.sender_comp_id} did not log on"
        return broker

    yield start
    for broker in started:
        broker.stop()


def ticket(
    client_order_id: str,
    side: Side = Side.BUY,
    quantity: str = "0.50",
    price: str | None = "1.08500",
    *,
    symbol: str = "EURUSD",
    account_id: str = "acct-1",
) -> OrderTicket:
    return OrderTicket(
        client_order_id=client_order_id,
        account_id=account_id,
        symbol=symbol,
        side=side,
        order_type=OrderType.LIMIT if price is not None else OrderType.MARKET,
        quantity=Decimal(quantity),
        limit_price=Decimal(price) if price is not None else None,
        reference_price=Decimal(price or "1.08500"),
    )


def session_log(broker: FixBroker) -> str:
    """QuickFIX's own log of the messages the adapter's session sent and received."""
    assert broker.config.log_dir is not None
    return "".join(p.read_text() for p in broker.config.log_dir.glob("*.messages.current.log"))


def stop_ticket(
    client_order_id: str,
    side: Side = Side.SELL,
    quantity: str = "0.50",
    stop: str = "1.08200",
    *,
    symbol: str = "EURUSD",
    account_id: str = "acct-1",
) -> OrderTicket:
    """A protective stop: becomes a market order once the price trades through ``stop``."""
    return OrderTicket(
        client_order_id=client_order_id,
        account_id=account_id,
        symbol=symbol,
        side=side,
        order_type=OrderType.STOP,
        quantity=Decimal(quantity),
        limit_price=None,
        reference_price=Decimal(stop),
        stop_price=Decimal(stop),
    )


def await_status(
    broker: FixBroker,
    client_order_id: str,
    status: OrderStatus,
    *,
    timeout_s: float = 10,
    interval_s: float = 0.05,
) -> BrokerOrder:
    """Poll the broker until the order reaches ``status``."""
    deadline = time.monotonic() + timeout_s
    while True:
        current = broker.status(client_order_id)
        if current is not None and current.status is status:
            return current
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(
                f"{client_order_id} is {current} after {timeout_s} s, not {status}"
            )
        time.sleep(min(left, interval_s))

"""A broker that fills every order at once, in memory: the benchmark's zero-latency broker.

The project's ``PaperBroker`` keeps its book in the database (so it survives the fault suite's
restarts): three of its own transactions per order, which are the simulator's cost, not the
orchestration's, and on this machine weigh about as much as everything else a leg does. A real
broker is a network round trip instead (``make bench-fix``: 0.6 ms to QuickFIX's executor).
``make bench`` measures with this broker by default and with ``--broker paper`` on the
database-backed one.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from orchestrator.adapters.brokers.base import (
    AccountReading,
    BrokerOrder,
    BrokerPosition,
    Execution,
    OrderTicket,
    Quote,
    ReplaceNotSupported,
)
from orchestrator.domain.orders import OrderStatus


class MemoryBroker:
    """Fills each order whole at its reference price the moment it arrives; idempotent on the
    client order id."""

    def __init__(self) -> None:
        self._orders: dict[str, BrokerOrder] = {}
        self._lock = threading.Lock()

    def submit(self, ticket: OrderTicket) -> BrokerOrder:
        with self._lock:
            known = self._orders.get(ticket.client_order_id)
            if known is not None:
                return known
            execution = Execution(
                execution_id=f"{ticket.client_order_id}/1",
                quantity=ticket.quantity,
                price=ticket.reference_price,
                executed_at=datetime.now(UTC),
            )
            order = BrokerOrder(
                client_order_id=ticket.client_order_id,
                broker_order_id=f"M-{len(self._orders) + 1}",
                status=OrderStatus.FILLED,
                quantity=ticket.quantity,
                executions=(execution,),
            )
            self._orders[ticket.client_order_id] = order
        return order

    def status(self, client_order_id: str) -> BrokerOrder | None:
        with self._lock:
            return self._orders.get(client_order_id)

    def cancel(self, client_order_id: str) -> BrokerOrder | None:
        return self.status(client_order_id)  # filled at once: nothing is ever left to cancel

    def open_orders(self, account_id: str) -> list[BrokerOrder]:
        return []

    def replace(self, client_order_id: str, ticket: OrderTicket) -> BrokerOrder:
        raise ReplaceNotSupported(f"{type(self).__name__} cannot cancel/replace yet")

    def quote(self, account_id: str, symbol: str) -> Quote | None:
        return None

    def positions(self, account_id: str) -> list[BrokerPosition] | None:
        return None

    def account_state(self, account_id: str) -> AccountReading | None:
        return None

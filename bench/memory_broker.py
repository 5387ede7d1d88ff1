"""A broker that fills every order at once, in memory: the benchmark's zero-latency broker.

The project's ``PaperBroker`` keeps its book in the database (so it survives the fault suite's
restarts): three of its own transactions per order, which are the simulator's cost, not the
orchestration's, and on this machine weigh about as much as everything else a leg does. A real
broker is a network round trip instead (``make bench-fix``: 0.6 ms to QuickFIX's executor).
``make bench`` measures with this broker by default and with ``--broker paper`` on the
database-backed one.

It has no market: protective orders rest as they do on the paper broker without quotes (a STOP,
and a LIMIT that reduces the position) and never trigger; they work until cancelled or replaced.
It reports no quote, positions or account state (``None``: the caller derives them).

It notes when each new order arrived (``arrivals_since``): the bench's time to the first and
the last order of a signal or a close.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from dataclasses import replace as changed
from datetime import UTC, datetime
from decimal import Decimal

from orchestrator.adapters.brokers.base import (
    AccountReading,
    BrokerOrder,
    BrokerPosition,
    Execution,
    KnownOrder,
    OrderTicket,
    Quote,
    ReplaceRejected,
)
from orchestrator.domain.orders import TERMINAL, OrderStatus
from orchestrator.domain.values import OrderType


@dataclasses.dataclass(frozen=True)
class Arrival:
    at: float
    """``time.time()`` when the order arrived."""
    client_order_id: str
    order_type: OrderType


class MemoryBroker:
    """Fills each order that does not rest whole at its reference price the moment it arrives;
    idempotent on the client order id."""

    def __init__(self) -> None:
        self._orders: dict[str, BrokerOrder] = {}
        self._tickets: dict[str, OrderTicket] = {}
        self._net: dict[tuple[str, str], Decimal] = {}
        """Signed filled lots per (account, symbol)."""
        self._arrivals: list[Arrival] = []
        """Every new order (not a repeat of a known client order id), in arrival order."""
        self._lock = threading.Lock()

    def mark(self) -> int:
        """A point in the arrivals, for ``arrivals_since``."""
        with self._lock:
            return len(self._arrivals)

    def arrivals_since(self, mark: int) -> list[Arrival]:
        with self._lock:
            return self._arrivals[mark:]

    def resting(self) -> int:
        """Orders working (not filled, cancelled or otherwise ended): the protective ones."""
        with self._lock:
            return sum(1 for order in self._orders.values() if order.status not in TERMINAL)

    def submit(self, ticket: OrderTicket) -> BrokerOrder:
        with self._lock:
            return self._submit(ticket)

    def status(self, client_order_id: str) -> BrokerOrder | None:
        with self._lock:
            return self._orders.get(client_order_id)

    def cancel(self, client_order_id: str) -> BrokerOrder | None:
        with self._lock:
            order = self._orders.get(client_order_id)
            if order is None or order.status in TERMINAL:
                return order
            order = self._orders[client_order_id] = changed(order, status=OrderStatus.CANCELLED)
            return order

    def open_orders(self, account_id: str) -> list[BrokerOrder]:
        with self._lock:
            return [
                order
                for cid, order in self._orders.items()
                if order.status not in TERMINAL and self._tickets[cid].account_id == account_id
            ]

    def working_orders(
        self, account_id: str, known: Sequence[KnownOrder] = ()
    ) -> list[BrokerOrder] | None:
        """Its book lists every order of the account."""
        return self.open_orders(account_id)

    def replace(self, client_order_id: str, ticket: OrderTicket) -> BrokerOrder:
        with self._lock:
            known = self._orders.get(ticket.client_order_id)
            if known is not None:
                return known
            old = self._orders.get(client_order_id)
            if old is None or old.status in TERMINAL:
                reason = "no such order" if old is None else f"too late: the order is {old.status}"
                raise ReplaceRejected(client_order_id, reason, old)
            self._orders[client_order_id] = changed(old, status=OrderStatus.CANCELLED)
            # FIX's OrderQty: the total, what the old order filled included.
            filled = sum((e.quantity for e in old.executions), Decimal(0))
            return self._submit(dataclasses.replace(ticket, quantity=ticket.quantity - filled))

    def quote(self, account_id: str, symbol: str) -> Quote | None:
        return None

    def positions(self, account_id: str) -> list[BrokerPosition] | None:
        return None

    def account_state(self, account_id: str) -> AccountReading | None:
        return None

    def _submit(self, ticket: OrderTicket) -> BrokerOrder:
        known = self._orders.get(ticket.client_order_id)
        if known is not None:
            return known
        self._tickets[ticket.client_order_id] = ticket
        self._arrivals.append(Arrival(time.time(), ticket.client_order_id, ticket.order_type))
        broker_order_id = f"M-{len(self._orders) + 1}"
        if self._rests(ticket):
            order = BrokerOrder(
                client_order_id=ticket.client_order_id,
                broker_order_id=broker_order_id,
                status=OrderStatus.NEW,
                quantity=ticket.quantity,
                executions=(),
            )
        else:
            execution = Execution(
                execution_id=f"{ticket.client_order_id}/1",
                quantity=ticket.quantity,
                price=ticket.reference_price,
                executed_at=datetime.now(UTC),
            )
            order = BrokerOrder(
                client_order_id=ticket.client_order_id,
                broker_order_id=broker_order_id,
                status=OrderStatus.FILLED,
                quantity=ticket.quantity,
                executions=(execution,),
            )
            key = (ticket.account_id, ticket.symbol)
            self._net[key] = self._net.get(key, Decimal(0)) + ticket.side.sign * ticket.quantity
        self._orders[ticket.client_order_id] = order
        return order

    def _rests(self, ticket: OrderTicket) -> bool:
        if ticket.order_type is OrderType.STOP:
            return True
        held = self._net.get((ticket.account_id, ticket.symbol), Decimal(0))
        reduces = held != 0 and (held > 0) != (ticket.side.sign > 0)
        return ticket.order_type is OrderType.LIMIT and reduces

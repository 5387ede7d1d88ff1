"""The broker interface every adapter implements: the paper broker and the FIX adapter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.values import OrderType, Side


@dataclass(frozen=True, slots=True)
class OrderTicket:
    """A command to the broker: ``SubmitOrder``."""

    client_order_id: str
    account_id: str
    symbol: str
    """The broker's own symbol name."""
    side: Side
    order_type: OrderType
    quantity: Decimal
    limit_price: Decimal | None
    reference_price: Decimal


@dataclass(frozen=True, slots=True)
class Execution:
    execution_id: str
    """Unique per fill at the broker; consumers deduplicate on it."""
    quantity: Decimal
    price: Decimal
    executed_at: datetime


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """The broker's view of one order: status and every execution so far."""

    client_order_id: str
    broker_order_id: str | None
    status: OrderStatus
    quantity: Decimal
    executions: tuple[Execution, ...]
    reject_text: str | None = None


class Broker(Protocol):
    """Blocking broker calls, used from activities running on a thread pool.

    Transient faults raise :class:`~orchestrator.domain.errors.BrokerUnavailable`; they are retried
    with the same client order id, which every method treats as the order's identity.
    """

    def submit(self, ticket: OrderTicket) -> BrokerOrder:
        """Send the order. Idempotent: a client order id the broker already has returns that
        order unchanged instead of a second one."""
        ...

    def status(self, client_order_id: str) -> BrokerOrder | None:
        """The order's current state, or ``None`` if the broker never received it."""
        ...

    def cancel(self, client_order_id: str) -> BrokerOrder | None:
        """Cancel what is left of a working order; a terminal order is returned as it is."""
        ...

    def open_orders(self, account_id: str) -> list[BrokerOrder]:
        """Orders of the account that are not yet terminal."""
        ...

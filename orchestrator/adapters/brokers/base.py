"""The broker interface every adapter implements: the paper broker and the FIX adapter."""

from __future__ import annotations

import queue
import threading
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


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """What the broker reported about one order: accepted, filled (partly), cancelled, rejected.

    Delivered at least once: the same report can arrive twice (a FIX resend, a re-read of the
    paper book). Consumers deduplicate on ``event_id``.
    """

    event_id: str
    """The broker's id of the report (FIX ExecID); the same report always has the same id."""
    client_order_id: str
    status: OrderStatus
    """The order's status after this report (FIX OrdStatus, never ExecType)."""
    execution: Execution | None
    """The fill this report carries, if any."""
    reject_text: str | None = None


class OrderEvents:
    """One subscriber's stream of order events. Thread-safe: the broker's threads put, the
    consumer takes with :meth:`get`. Events before the subscription are not replayed."""

    def __init__(self, hub: EventHub) -> None:
        self._hub = hub
        self._queue: queue.SimpleQueue[OrderEvent] = queue.SimpleQueue()

    def put(self, event: OrderEvent) -> None:
        self._queue.put(event)

    def get(self, timeout_s: float) -> OrderEvent | None:
        """The next event, or ``None`` if none came within ``timeout_s`` seconds."""
        try:
            return self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._hub.unsubscribe(self)


class EventHub:
    """Fans order events out to every open subscription."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[OrderEvents] = []

    def subscribe(self) -> OrderEvents:
        events = OrderEvents(self)
        with self._lock:
            self._subscribers.append(events)
        return events

    def unsubscribe(self, events: OrderEvents) -> None:
        with self._lock:
            if events in self._subscribers:
                self._subscribers.remove(events)

    def publish(self, event: OrderEvent) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber.put(event)


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

    def subscribe(self) -> OrderEvents:
        """A stream of order events from now on, at least once per report (deduplicate on
        ``event_id``). Close it when done."""
        ...

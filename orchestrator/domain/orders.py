"""The order lifecycle: statuses, the allowed transitions, and the named sets of states; and
what each order of the ledger is for (its purpose)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from enum import StrEnum

from orchestrator.domain.errors import InvalidOrderTransition
from orchestrator.domain.values import Model


class OrderStatus(StrEnum):
    """Mirrors FIX OrdStatus, plus our own write-ahead state before the broker has it."""

    PENDING_SUBMIT = "PENDING_SUBMIT"
    """Recorded in our ledger; not yet acknowledged by the broker."""
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


class OrderPurpose(StrEnum):
    """What an order of the ledger is for (its ``purpose`` column)."""

    ENTRY = "ENTRY"
    """A leg's orders (its first, completions, a reroute's): the orders that fill a position and
    settle its leg."""
    STOP = "STOP"
    """A position's protective stop (:class:`~orchestrator.domain.positions.ProtectionKind`)."""
    TAKE_PROFIT = "TAKE_PROFIT"
    """A position's take-profit (:class:`~orchestrator.domain.positions.ProtectionKind`)."""
    CLOSE = "CLOSE"
    """A position's closing order (at market)."""
    ADOPTED = "ADOPTED"
    """An order recorded from the broker's view (``reconcile --accept``); no workflow follows
    it."""


TERMINAL = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)
CANCELLABLE = frozenset({OrderStatus.PENDING_SUBMIT, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})

_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING_SUBMIT: frozenset(
        {
            OrderStatus.NEW,
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.REJECTED,
            OrderStatus.CANCELLED,
            OrderStatus.EXPIRED,
        }
    ),
    OrderStatus.NEW: frozenset(
        {
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.PENDING_CANCEL,
            OrderStatus.CANCELLED,
            OrderStatus.EXPIRED,
            OrderStatus.REJECTED,
        }
    ),
    OrderStatus.PARTIALLY_FILLED: frozenset(
        {
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.PENDING_CANCEL,
            OrderStatus.CANCELLED,
            OrderStatus.EXPIRED,
        }
    ),
    OrderStatus.PENDING_CANCEL: frozenset(
        {
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.CANCELLED,
            OrderStatus.EXPIRED,
        }
    ),
}


def precedes(earlier: OrderStatus, later: OrderStatus) -> bool:
    """Whether the lifecycle leads from ``earlier`` to ``later`` (in one step or more)."""
    seen: set[OrderStatus] = set()
    todo = [earlier]
    while todo:
        status = todo.pop()
        for following in _TRANSITIONS.get(status, frozenset()):
            if following == later:
                return True
            if following not in seen:
                seen.add(following)
                todo.append(following)
    return False


def advance(current: OrderStatus, reported: OrderStatus) -> OrderStatus:
    """The status after a broker report. A report of a state the order has already left (it
    arrived late or twice: delivery is at least once, order is not guaranteed) leaves the
    status as it is; a report the lifecycle cannot explain at all raises."""
    if reported != current and precedes(reported, current):
        return current
    return transition(current, reported)


def transition(current: OrderStatus, target: OrderStatus) -> OrderStatus:
    """Return ``target`` if the lifecycle allows ``current → target``; raise otherwise.

    Staying in the same state is always allowed: brokers repeat reports (at-least-once).
    """
    if current == target:
        return target
    if target in _TRANSITIONS.get(current, frozenset()):
        return target
    raise InvalidOrderTransition(current.value, target.value)


class OrderOutcome(Model):
    """Where an order ended: the broker's terminal state as recorded in our ledger."""

    client_order_id: str
    broker_order_id: str | None
    status: OrderStatus
    quantity: Decimal
    filled_quantity: Decimal
    average_price: Decimal | None
    reject_text: str | None = None
    """The broker's rejection text, verbatim."""


def average_price(fills: Iterable[tuple[Decimal, Decimal]]) -> Decimal | None:
    """The volume-weighted price of ``(quantity, price)`` fills; ``None`` when nothing filled.
    The one rule every report, completion and the ledger use."""
    quantity = total = Decimal(0)
    for filled, price in fills:
        quantity += filled
        total += filled * price
    return total / quantity if quantity > 0 else None

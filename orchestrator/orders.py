"""The order lifecycle: statuses, the allowed transitions, and the named sets of states."""

from __future__ import annotations

from enum import StrEnum

from orchestrator.errors import InvalidOrderTransition


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


def transition(current: OrderStatus, target: OrderStatus) -> OrderStatus:
    """Return ``target`` if the lifecycle allows ``current → target``; raise otherwise.

    Staying in the same state is always allowed: brokers repeat reports (at-least-once).
    """
    if current == target:
        return target
    if target in _TRANSITIONS.get(current, frozenset()):
        return target
    raise InvalidOrderTransition(current.value, target.value)

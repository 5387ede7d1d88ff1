"""Positions: what a signal opened on an account, from its first fill to its exit, and the
protective orders (stop and take-profit) that must cover exactly its open quantity.

Pure: the position keeper (``workflows/positions.py``) decides with these functions, the ledger
records what they decided, and the audit re-derives it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.values import (
    Identifier,
    Model,
    NonNegativeDecimal,
    PositiveDecimal,
    Side,
    SymbolName,
)


class PositionStatus(StrEnum):
    OPEN = "OPEN"
    """Open, with its stop working at the broker."""
    UNPROTECTED = "UNPROTECTED"
    """Open without a working stop: the broker refused it and the setting keeps such a position
    open (``TEO_ON_REFUSED_STOP=keep``). Shown as such everywhere."""
    CLOSED = "CLOSED"


class CloseCause(StrEnum):
    STOP_HIT = "STOP_HIT"
    TAKE_PROFIT_HIT = "TAKE_PROFIT_HIT"
    CLOSED_BY_SIGNAL = "CLOSED_BY_SIGNAL"
    """A close (or flatten) signal, or an operator's flatten, closed it at market."""
    STOP_REFUSED = "STOP_REFUSED"
    """The broker refused the stop: the position was closed at market (the default)."""
    CLOSED_AT_BROKER = "CLOSED_AT_BROKER"
    """The broker reports it closed by an order we did not send."""


class ProtectionKind(StrEnum):
    STOP = "STOP"
    TAKE_PROFIT = "TAKE_PROFIT"

    @property
    def code(self) -> str:
        """The letter of its client order ids (``{signal}:{account}:S2``)."""
        return "S" if self is ProtectionKind.STOP else "T"


class Contract(Model):
    """What a position needs of its account's contract: to value a price move, and to round."""

    tick_size: PositiveDecimal
    tick_value: PositiveDecimal
    """Account-currency value of one tick for one lot."""
    lot_step: PositiveDecimal
    min_lot: PositiveDecimal


class ProtectiveOrder(Model):
    """One stop or take-profit order at the broker, as the keeper last knew it."""

    kind: ProtectionKind
    client_order_id: str
    price: PositiveDecimal
    quantity: PositiveDecimal
    status: OrderStatus
    filled: NonNegativeDecimal = Decimal(0)
    reject_text: str | None = None

    @property
    def working(self) -> bool:
        return self.status in (
            OrderStatus.PENDING_SUBMIT,
            OrderStatus.NEW,
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.PENDING_CANCEL,
        )

    @property
    def remaining(self) -> Decimal:
        """What it may still fill: nothing once it no longer works."""
        return self.quantity - self.filled if self.working else Decimal(0)


class ClosingFill(Model):
    """A fill that reduced a position, with why and what it realized."""

    execution_id: str
    client_order_id: str
    quantity: PositiveDecimal
    price: PositiveDecimal
    cause: CloseCause
    pnl: Decimal
    """Realized, in the account's currency (negative: a loss)."""
    at: datetime


class Position(Model):
    """One (signal, account)'s position, as its one writer (the keeper) holds it."""

    signal_id: Identifier
    account_id: Identifier
    broker: Identifier
    broker_symbol: SymbolName
    side: Side
    contract: Contract
    entry_quantity: NonNegativeDecimal
    """Everything its entries filled: the first order, completions, or a reroute's order."""
    average_entry: Decimal
    open_quantity: NonNegativeDecimal
    stop: PositiveDecimal
    take_profit: PositiveDecimal | None = None
    status: PositionStatus = PositionStatus.OPEN
    realized_pnl: Decimal = Decimal(0)
    closes: list[ClosingFill] = []
    stop_order: ProtectiveOrder | None = None
    take_profit_order: ProtectiveOrder | None = None
    generation: int = 0
    """How many times its protective orders were (re)issued: part of their client order ids,
    so a resize is a new order id, and a retry finds the one it sent."""
    note: str | None = None
    """Why it is UNPROTECTED, with the broker's text verbatim."""

    @property
    def protected_quantity(self) -> Decimal:
        """Stop quantity that may still fill: never above the open quantity."""
        return self.stop_order.remaining if self.stop_order is not None else Decimal(0)


def realized_pnl(
    side: Side, entry: Decimal, exit_price: Decimal, quantity: Decimal, contract: Contract
) -> Decimal:
    """Account-currency P&L of closing ``quantity`` lots opened at ``entry`` at ``exit_price``:
    the price move in ticks, times the tick value per lot."""
    return (exit_price - entry) * side.sign / contract.tick_size * contract.tick_value * quantity


def closing_side(side: Side) -> Side:
    return Side.SELL if side is Side.BUY else Side.BUY


def stop_is_through_the_market(side: Side, stop: Decimal, bid: Decimal, ask: Decimal) -> bool:
    """A stop on the wrong side of the current price: it would trigger at once. A long's stop
    sells at the bid, so it must be below it; a short's buys at the ask, so above it."""
    return stop >= bid if side is Side.BUY else stop <= ask


def take_profit_is_through_the_market(
    side: Side, target: Decimal, bid: Decimal, ask: Decimal
) -> bool:
    """A take-profit already reached: a long's sells above the bid, a short's buys below the
    ask."""
    return target <= bid if side is Side.BUY else target >= ask

"""Positions: what a signal opened on an account, from its first fill to its exit, and the
protective orders (stop and take-profit) that must cover exactly its open quantity.

Pure: the position keeper (``workflows/positions.py``) decides with these functions, the ledger
records what they decided, and the audit re-derives it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from orchestrator.domain.orders import OrderPurpose, OrderStatus
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


class RefusedStop(StrEnum):
    """What to do with a position whose stop the broker refuses."""

    CLOSE = "close"
    """Close it at market (the default): no position stands unprotected."""
    KEEP = "keep"
    """Keep it open, marked UNPROTECTED wherever it is shown."""


class ProtectionKind(StrEnum):
    """A protective order's kind: the order purposes a position's protection takes."""

    STOP = OrderPurpose.STOP.value
    TAKE_PROFIT = OrderPurpose.TAKE_PROFIT.value

    @property
    def purpose(self) -> OrderPurpose:
        """Its orders' purpose in the ledger."""
        return OrderPurpose(self.value)

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
    closing_orders: int = 0
    """Closing orders sent for it so far (part of their client order ids)."""
    closing: NonNegativeDecimal = Decimal(0)
    """What a signal's close is taking off it right now: its protective orders cover the rest."""
    note: str | None = None
    """Why it is UNPROTECTED, with the broker's text verbatim."""

    @property
    def to_cover(self) -> Decimal:
        """What its protective orders must cover: the open quantity, less what is closing."""
        return max(Decimal(0), self.open_quantity - self.closing)

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


# --------------------------------------------------------------------------------------------
# What the keeper decides


def opened(
    signal_id: str,
    side: Side,
    stop: Decimal,
    take_profit: Decimal | None,
    *,
    account_id: str,
    broker: str,
    broker_symbol: str,
    contract: Contract,
    entry_quantity: Decimal,
    average_entry: Decimal,
) -> Position:
    """A position as its first entry fill opens it (not yet protected)."""
    return Position(
        signal_id=signal_id,
        account_id=account_id,
        broker=broker,
        broker_symbol=broker_symbol,
        side=side,
        contract=contract,
        entry_quantity=entry_quantity,
        average_entry=average_entry,
        open_quantity=entry_quantity,
        stop=stop,
        take_profit=take_profit,
    )


def grown(position: Position, entry_quantity: Decimal, average_entry: Decimal) -> Position:
    """The position once its entries have filled ``entry_quantity`` in all (a completion, a
    later fill): the added quantity opens too. A total it already has changes nothing."""
    added = entry_quantity - position.entry_quantity
    if added <= 0:
        return position
    return position.model_copy(
        update={
            "entry_quantity": entry_quantity,
            "average_entry": average_entry,
            "open_quantity": position.open_quantity + added,
            "status": PositionStatus.OPEN
            if position.status is PositionStatus.CLOSED
            else position.status,
        }
    )


def reduced(
    position: Position,
    *,
    execution_id: str,
    client_order_id: str,
    quantity: Decimal,
    price: Decimal,
    cause: CloseCause,
    at: datetime,
) -> tuple[Position, ClosingFill | None]:
    """The position after a fill of one of its protective or closing orders, and the closing
    fill it books; a fill beyond the open quantity books only what was open (the broker closed
    more than we hold: the account's reconciliation will see the rest)."""
    closing = min(quantity, position.open_quantity)
    if closing <= 0:
        return position, None
    pnl = realized_pnl(position.side, position.average_entry, price, closing, position.contract)
    fill = ClosingFill(
        execution_id=execution_id,
        client_order_id=client_order_id,
        quantity=closing,
        price=price,
        cause=cause,
        pnl=pnl,
        at=at,
    )
    left = position.open_quantity - closing
    return (
        position.model_copy(
            update={
                "open_quantity": left,
                "realized_pnl": position.realized_pnl + pnl,
                "closes": [*position.closes, fill],
                "status": PositionStatus.CLOSED if left <= 0 else position.status,
            }
        ),
        fill,
    )


def protection_settled(position: Position) -> bool:
    """Whether its protective orders are what they must be: while open, a working stop for
    exactly the open quantity at its stop price (unless it is UNPROTECTED) and likewise a
    take-profit when it has one (unless the broker refused that price); once flat, nothing
    working."""
    cover = position.to_cover
    if cover <= 0:
        return not any(
            o is not None and o.working for o in (position.stop_order, position.take_profit_order)
        )
    stop_ok = position.status is PositionStatus.UNPROTECTED or _covers(
        position.stop_order, position.stop, cover
    )
    target = position.take_profit_order
    if position.take_profit is None:
        target_ok = target is None or not target.working
    else:
        target_ok = _covers(target, position.take_profit, cover) or (
            _refused(target, position.take_profit)
        )
    return stop_ok and target_ok


def _refused(order: ProtectiveOrder | None, price: Decimal) -> bool:
    """The broker refused a take-profit at this price: it is not sent again (the position keeps
    its stop; a new take-profit price is a new order)."""
    return order is not None and order.status is OrderStatus.REJECTED and order.price == price


def _covers(order: ProtectiveOrder | None, price: Decimal | None, quantity: Decimal) -> bool:
    return (
        order is not None
        and order.working
        and order.price == price
        and order.quantity - order.filled == quantity
    )

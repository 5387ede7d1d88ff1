"""Actions on the positions a signal opened: ``MODIFY`` its stop or take-profit, ``CLOSE`` all
or a fraction of it, ``FLATTEN`` every open position of a symbol, of some accounts, or of the
book. Each is a signal in its own right (its own id, its own workflow ``signal-{id}``); the
positions' keepers carry it out.

Pure: what an action asks, how much a close takes off each position, and which stops would be
through the market.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from enum import StrEnum
from typing import Self

from pydantic import Field, model_validator

from orchestrator.domain.positions import Contract
from orchestrator.domain.values import (
    Fraction,
    Identifier,
    Model,
    NonNegativeDecimal,
    PositiveDecimal,
    Side,
    SymbolName,
)


class ActionKind(StrEnum):
    MODIFY = "MODIFY"
    """A new stop and/or take-profit for the target signal's open positions."""
    CLOSE = "CLOSE"
    """All, or a fraction, of the target signal's open positions, closed at market."""
    FLATTEN = "FLATTEN"
    """Every open position of a symbol, of listed accounts, or of the whole book, closed."""


class TradeAction(Model):
    """An action, as a user sends it (the starter, the webhook, Temporal)."""

    action_id: Identifier
    """Its own id: its workflow is ``signal-{action_id}``; the same id twice acts once."""
    action: ActionKind
    signal_id: Identifier | None = None
    """The signal whose positions it acts on (MODIFY and CLOSE)."""
    accounts: list[Identifier] | None = Field(default=None, min_length=1)
    """Only these accounts' positions (default: all of them)."""
    stop: PositiveDecimal | None = None
    take_profit: PositiveDecimal | None = None
    fraction: Fraction = Decimal(1)
    """CLOSE: the share of each position to close (rounded down to the account's lot step)."""
    symbol: SymbolName | None = None
    """FLATTEN: only positions in this symbol (the signal's symbol, not a broker's name)."""
    note: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Each refusal names its field first (``field: why``): the caller reports it there."""
        if self.action is ActionKind.FLATTEN:
            if self.signal_id is not None:
                raise ValueError("signal_id: FLATTEN acts on positions of any signal: no signal_id")
        elif self.signal_id is None:
            raise ValueError(f"signal_id: {self.action} needs the id of the signal it acts on")
        if self.action is ActionKind.MODIFY and self.stop is None and self.take_profit is None:
            raise ValueError("stop: MODIFY needs a new stop, a new take_profit, or both")
        if self.action is not ActionKind.MODIFY and (
            self.stop is not None or self.take_profit is not None
        ):
            raise ValueError(f"stop: {self.action} takes no stop or take_profit (that is MODIFY)")
        if self.action is not ActionKind.CLOSE and self.fraction != 1:
            raise ValueError("fraction: only CLOSE takes a fraction")
        if self.action is not ActionKind.FLATTEN and self.symbol is not None:
            raise ValueError("symbol: only FLATTEN takes a symbol (a signal has its own)")
        if self.signal_id is not None and self.signal_id == self.action_id:
            raise ValueError("action_id: an action needs an id of its own, not its signal's")
        return self

    @property
    def closes(self) -> bool:
        return self.action is not ActionKind.MODIFY


def close_quantity(open_quantity: Decimal, fraction: Decimal, contract: Contract) -> Decimal:
    """How much of an open position a close of ``fraction`` takes off: the fraction rounded down
    to the lot step; all of it when what would be left is below the minimum lot (no stub that
    cannot be closed); else nothing when the share itself is below the minimum lot (no order
    could carry it)."""
    if open_quantity <= 0:
        return Decimal(0)
    if fraction >= 1:
        return open_quantity
    steps = (open_quantity * fraction / contract.lot_step).to_integral_value(rounding=ROUND_DOWN)
    quantity = steps * contract.lot_step
    if open_quantity - quantity < contract.min_lot:
        return open_quantity
    if quantity < contract.min_lot:
        return Decimal(0)
    return quantity


def stop_through_market(side: Side, stop: Decimal, bid: Decimal, ask: Decimal) -> bool:
    """A position's stop on the wrong side of the current price: it would fill at once. A
    long's stop sells at the bid, so it must be below it; a short's buys at the ask, above."""
    return stop >= bid if side is Side.BUY else stop <= ask


def take_profit_through_market(side: Side, target: Decimal, bid: Decimal, ask: Decimal) -> bool:
    """A take-profit already reached: a long's sells above the bid, a short's buys below."""
    return target <= bid if side is Side.BUY else target >= ask


class AccountOutcome(Model):
    """What an action did to one account's position."""

    signal_id: Identifier
    account_id: Identifier
    done: str
    """In plain words: "stop 1.082 → 1.0835", "closed 0.5 of 1.2 @ 1.0861 (P&L 43.20)"."""
    closed: NonNegativeDecimal = Decimal(0)
    open_quantity: NonNegativeDecimal = Decimal(0)
    """What is left open after it."""
    realized_pnl: Decimal = Decimal(0)
    """What its closing fills realized."""
    refused: str | None = None
    """Why nothing was done (the broker's text verbatim, or ours)."""


class ActionStatus(StrEnum):
    COMPLETED = "COMPLETED"
    REFUSED = "REFUSED"
    """Nothing changed: the action was invalid against what is open (a stop through the
    market, no open position)."""


class ActionReport(Model):
    """An action's result: per account what it did."""

    action_id: Identifier
    action: ActionKind
    signal_id: Identifier | None
    status: ActionStatus
    message: str = ""
    accounts: list[AccountOutcome] = []

    @property
    def positions_closed(self) -> int:
        return sum(1 for a in self.accounts if a.closed > 0 and a.open_quantity == 0)

    @property
    def positions_reduced(self) -> int:
        """Positions partly closed (a CLOSE of a fraction): some closed, some left open."""
        return sum(1 for a in self.accounts if a.closed > 0 and a.open_quantity > 0)

"""A trade signal: one trade idea, to be executed across the eligible accounts of the book."""

from __future__ import annotations

from decimal import Decimal

from pydantic import (
    AwareDatetime,
    Field,
    ValidationInfo,
    field_validator,
)

from orchestrator.domain.values import (
    Identifier,
    Model,
    OrderType,
    PositiveDecimal,
    Side,
    SymbolName,
)


class Signal(Model):
    """One trade idea, to be executed across the eligible accounts of the book."""

    signal_id: Identifier
    symbol: SymbolName
    """Canonical symbol (e.g. ``EURUSD``); each account maps it to its broker's name."""
    side: Side
    entry: PositiveDecimal
    """Reference price: the limit price of LIMIT orders and the slippage benchmark."""
    stop: PositiveDecimal
    """Protective stop; its distance from ``entry`` defines the risk per lot."""
    take_profit: PositiveDecimal | None = None
    order_type: OrderType = OrderType.MARKET
    """How the entries go: MARKET, or LIMIT at ``entry``. (STOP is for protective orders.)"""
    account_ids: list[Identifier] | None = Field(default=None, min_length=1)
    """Restrict the signal to these accounts; ``None`` means the whole book."""
    reroute_on_pause: bool = False
    """A leg whose account is paused while it waits is rerouted instead of skipped."""
    note: str | None = Field(default=None, max_length=500)
    valid_until: AwareDatetime | None = None
    """Entries not sent by then are denied EXPIRED; overrides the service's entry TTL
    (``TEO_ENTRY_TTL_S``). With a timezone (``2026-03-02T14:05:00Z``); a time already past is
    refused when the signal is submitted."""

    @field_validator("stop")
    @classmethod
    def _stop_on_the_losing_side(cls, stop: Decimal, info: ValidationInfo) -> Decimal:
        side, entry = info.data.get("side"), info.data.get("entry")
        if side is Side.BUY and entry is not None and stop >= entry:
            raise ValueError("stop must be below entry for a BUY")
        if side is Side.SELL and entry is not None and stop <= entry:
            raise ValueError("stop must be above entry for a SELL")
        return stop

    @field_validator("take_profit")
    @classmethod
    def _target_on_the_winning_side(
        cls, target: Decimal | None, info: ValidationInfo
    ) -> Decimal | None:
        side, entry = info.data.get("side"), info.data.get("entry")
        if target is None or entry is None:
            return target
        if side is Side.BUY and target <= entry:
            raise ValueError("take_profit must be above entry for a BUY")
        if side is Side.SELL and target >= entry:
            raise ValueError("take_profit must be below entry for a SELL")
        return target

    @field_validator("order_type")
    @classmethod
    def _entry_type(cls, order_type: OrderType) -> OrderType:
        if order_type is OrderType.STOP:
            raise ValueError("an entry is a MARKET or LIMIT order (STOP is for protective orders)")
        return order_type

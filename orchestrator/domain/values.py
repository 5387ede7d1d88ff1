"""Values every part of the domain speaks in: the base of every model, constrained ids,
symbols and amounts, sides and order types, our own denial reasons, and a decimal written plainly.

Money, prices and quantities are ``Decimal`` end to end; delays are whole milliseconds.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.#-]{0,31}$"

Identifier = Annotated[str, Field(pattern=ID_PATTERN)]
"""Signal and account ids: 1–64 of letters, digits, ``_ . -``; first a letter or digit."""

SymbolName = Annotated[str, Field(pattern=SYMBOL_PATTERN)]

PositiveDecimal = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]

NonNegativeDecimal = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]

Fraction = Annotated[Decimal, Field(gt=0, le=1, allow_inf_nan=False)]


class Model(BaseModel):
    """Base for every payload: immutable, unknown fields refused; also built from ORM rows
    by attribute (``from_attributes``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", from_attributes=True)


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell: multiplies a price move into P&L direction."""
        return 1 if self is Side.BUY else -1


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"
    """A protective stop: becomes a market order once the price trades through its stop price
    (FIX OrdType 3 with StopPx). Never an entry."""


class DenialReason(StrEnum):
    """Our own pre-trade refusals. Never used for a broker's rejection."""

    PAUSED = "PAUSED"
    REDUCE_ONLY = "REDUCE_ONLY"
    """The account is in reduce-only: it takes no new risk; exits and protective orders still
    go out."""
    ACCOUNT_DISABLED = "ACCOUNT_DISABLED"
    HALTED = "HALTED"
    STALE_ACCOUNT_DATA = "STALE_ACCOUNT_DATA"
    MANDATE_FORBIDS = "MANDATE_FORBIDS"
    SYMBOL_NOT_TRADABLE = "SYMBOL_NOT_TRADABLE"
    MAX_POSITIONS = "MAX_POSITIONS"
    DRAWDOWN_LIMIT = "DRAWDOWN_LIMIT"
    RISK_BUDGET_EXHAUSTED = "RISK_BUDGET_EXHAUSTED"
    INSUFFICIENT_MARGIN = "INSUFFICIENT_MARGIN"
    SIZE_BELOW_MIN_LOT = "SIZE_BELOW_MIN_LOT"
    NOT_SELECTED = "NOT_SELECTED"
    ACCOUNT_ALREADY_USED = "ACCOUNT_ALREADY_USED"
    """A reroute target already took part in this signal."""
    CURRENCY_DIFFERS = "CURRENCY_DIFFERS"
    """A reroute target whose account currency is not the failed leg's: the risk it would
    carry is an amount in another currency, and there is no exchange rate to convert it."""
    LEG_CLOSED = "LEG_CLOSED"
    """The leg was settled or cancelled before this order could leave: it never will."""
    EXPIRED = "EXPIRED"
    """The entry could not leave before its deadline (the signal's start plus the entry TTL,
    or its ``valid_until``): the market has moved on."""


PositionCount = Annotated[int, Field(ge=0, le=1_000_000)]
"""A count of positions: bounded so that any database stores it (a 64-bit integer)."""


def plain(value: Decimal) -> str:
    """A decimal as a person writes it, the one way every text, table, JSON document and FIX
    field writes one: no exponent, no trailing zeros, and any zero as ``0`` (a negative zero too,
    as a P&L of nothing on a short comes out): ``2``, ``0.5``, ``100`` (not ``1E+2``), ``1.085``
    (not ``1.08500``), ``0`` (not ``0E-10`` or ``-0``)."""
    return format(value.normalize(), "f") if value else "0"

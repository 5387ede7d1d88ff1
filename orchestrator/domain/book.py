"""The account book as planning sees it: accounts, their limits, mandates and state, and the
brokers' contract specifications.
"""

from __future__ import annotations

from datetime import datetime, time
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import (
    Field,
    model_validator,
)

from orchestrator.domain.correlation import CorrelationResult
from orchestrator.domain.values import (
    Fraction,
    Identifier,
    Model,
    NonNegativeDecimal,
    PositionCount,
    PositiveDecimal,
    SymbolName,
)


class AccountStatus(StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    DISABLED = "DISABLED"


class SymbolSpec(Model):
    """A broker's contract specification for one of its symbols."""

    broker: Identifier
    symbol: SymbolName
    """The broker's own name for the symbol (``EURUSD.pro``)."""
    tick_size: PositiveDecimal
    tick_value: PositiveDecimal
    """Account-currency value of one tick for one lot."""
    contract_size: PositiveDecimal
    min_lot: PositiveDecimal
    lot_step: PositiveDecimal
    max_lot: PositiveDecimal
    margin_per_lot: NonNegativeDecimal
    """Account-currency margin one lot ties up."""

    @property
    def key(self) -> str:
        return spec_key(self.broker, self.symbol)

    @model_validator(mode="after")
    def _lots_consistent(self) -> SymbolSpec:
        if self.min_lot > self.max_lot:
            raise ValueError("min_lot must not exceed max_lot")
        if (self.min_lot % self.lot_step) != 0:
            raise ValueError("min_lot must be a multiple of lot_step")
        return self


def spec_key(broker: str, symbol: str) -> str:
    return f"{broker}:{symbol}"


class TradingHours(Model):
    """A daily UTC window; ``start > end`` spans midnight. Start inclusive, end exclusive."""

    start: time
    end: time
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] | None = None
    """Allowed weekdays, Monday = 0; ``None`` means every day."""

    def contains(self, moment: datetime) -> bool:
        if self.weekdays is not None and moment.weekday() not in self.weekdays:
            return False
        t = moment.time().replace(tzinfo=None)
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


class Mandate(Model):
    """Rules the account's owner imposes; the orchestrator enforces them and records denials."""

    allowed_symbols: list[SymbolName] | None = None
    """Canonical symbols this account may trade; ``None`` means any the broker offers."""
    trading_hours: TradingHours | None = None
    exclude_from_multi_account: bool = False
    """The account must not take part in a signal executed on more than one account."""


class OnBreach(StrEnum):
    REDUCE_ONLY = "reduce_only"
    FLATTEN = "flatten"


class AccountLimits(Model):
    risk_per_trade: Fraction
    """Fraction of equity risked by one signal (0.01 = 1 %)."""
    daily_loss_budget: NonNegativeDecimal
    """Account-currency loss the account may risk in one day, realized plus committed."""
    max_drawdown: Fraction
    """Largest tolerated fall from peak equity, as a fraction (0.10 = 10 %)."""
    max_open_positions: PositionCount
    max_lots: PositiveDecimal
    """Largest order this account may send, in lots."""
    on_breach: OnBreach = OnBreach.REDUCE_ONLY
    """What the account sync does when today's loss reaches the daily budget or the drawdown
    reaches its maximum: reduce-only always; ``flatten`` closes its positions too."""


class AccountSnapshot(Model):
    """What planning needs to know about one account, as of ``as_of``."""

    account_id: Identifier
    broker: Identifier
    currency: Annotated[str, Field(min_length=3, max_length=3)]
    status: AccountStatus
    limits: AccountLimits
    mandate: Mandate
    broker_symbol: SymbolName | None
    """The signal's symbol in this broker's naming, or ``None`` if the account has no mapping."""
    balance: Decimal
    equity: Decimal
    peak_equity: Decimal
    free_margin: Decimal
    open_positions: PositionCount
    realized_loss_today: NonNegativeDecimal
    risk_committed_today: NonNegativeDecimal
    """Risk already reserved today by other signals' orders."""
    as_of: datetime
    reserve_only: bool = False
    """Takes part only as a reroute target, never as a first choice."""
    reroute_on_pause: bool = False
    """If paused while a leg of it waits, reroute the leg instead of skipping it."""
    reduce_only: bool = False
    """In reduce-only: no new risk (entries denied); exits and protective orders still go."""


class BookSnapshot(Model):
    """The snapshot activity's result: every candidate account and the specs they need."""

    symbol: SymbolName
    taken_at: datetime
    accounts: list[AccountSnapshot]
    specs: dict[str, SymbolSpec]
    """Keyed by :func:`spec_key` of broker and broker symbol."""
    halted: bool = False
    """The system-wide kill switch was on when the snapshot was taken."""
    page: int = 0
    pages: int = 1
    """A large book arrives in pages (each well under Temporal's payload limits); the workflow
    asks for the rest once the first says how many there are."""
    correlation: CorrelationResult | None = None
    """The accounts' correlation, when the request asked for it (``correlate``) and the book
    came in one page with room for it: one activity instead of two."""

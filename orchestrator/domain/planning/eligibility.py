"""Eligibility: the checks that do not depend on size, each denial with its reason code, and
the account's capacity: the one check of it (:func:`capacity_denial`) that planning and the
risk reservation both apply, and the drawdown and remaining budget sizing reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from orchestrator.domain.book import (
    AccountSnapshot,
    AccountStatus,
    SymbolSpec,
    spec_key,
)
from orchestrator.domain.planning.decisions import (
    Denial,
)
from orchestrator.domain.settings import PlanSettings
from orchestrator.domain.signal import Signal
from orchestrator.domain.values import DenialReason

_ONE = Decimal(1)
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class AccountCapacity:
    """An account's standing and what it has left to take new risk with: what planning reads of
    a snapshot and the reservation of the state row it locked, so both check it by one rule
    (:func:`capacity_denial`). Amounts in the account's currency."""

    account_id: str
    status: AccountStatus
    currency: str
    max_open_positions: int
    open_positions: int
    daily_loss_budget: Decimal
    realized_loss_today: Decimal
    risk_committed_today: Decimal
    """Risk at the stop reserved today and not given back."""
    free_margin: Decimal
    peak_equity: Decimal
    equity: Decimal
    max_drawdown: Decimal
    """The largest tolerated fall from peak equity, as a fraction (0.10 = 10 %)."""
    reduce_only: bool = False
    """The account takes no new risk (an operator's, or later the system's, reduce-only)."""

    @classmethod
    def of(cls, account: AccountSnapshot) -> AccountCapacity:
        limits = account.limits
        return cls(
            account_id=account.account_id,
            status=account.status,
            currency=account.currency,
            max_open_positions=limits.max_open_positions,
            open_positions=account.open_positions,
            daily_loss_budget=limits.daily_loss_budget,
            realized_loss_today=account.realized_loss_today,
            risk_committed_today=account.risk_committed_today,
            free_margin=account.free_margin,
            peak_equity=account.peak_equity,
            equity=account.equity,
            max_drawdown=limits.max_drawdown,
            reduce_only=account.reduce_only,
        )


def check_eligibility(
    signal: Signal,
    account: AccountSnapshot,
    specs: dict[str, SymbolSpec],
    settings: PlanSettings,
    now: datetime,
) -> Denial | None:
    """Checks that do not depend on size. ``None`` means the account may be sized.

    The account's standing first, then its data, mandate and symbol, then its capacity: the
    same :func:`capacity_denial` the reservation applies, before any size is known."""

    def deny(reason: DenialReason, detail: str) -> Denial:
        return Denial(account_id=account.account_id, reason=reason, detail=detail)

    capacity = AccountCapacity.of(account)
    standing = standing_denial(capacity)
    if standing is not None:
        return standing
    age = now - account.as_of
    if age > timedelta(seconds=settings.max_account_data_age_s):
        return deny(
            DenialReason.STALE_ACCOUNT_DATA,
            f"account data is {int(age.total_seconds())} s old "
            f"(limit {settings.max_account_data_age_s} s)",
        )
    mandate = account.mandate
    if mandate.allowed_symbols is not None and signal.symbol not in mandate.allowed_symbols:
        return deny(DenialReason.MANDATE_FORBIDS, f"mandate does not allow {signal.symbol}")
    if mandate.trading_hours is not None and not mandate.trading_hours.contains(now):
        hours = mandate.trading_hours
        return deny(
            DenialReason.MANDATE_FORBIDS,
            f"outside the mandate's trading hours {hours.start:%H:%M}-{hours.end:%H:%M} UTC",
        )
    if account.broker_symbol is None:
        return deny(DenialReason.SYMBOL_NOT_TRADABLE, f"no symbol mapping for {signal.symbol}")
    if spec_key(account.broker, account.broker_symbol) not in specs:
        return deny(
            DenialReason.SYMBOL_NOT_TRADABLE,
            f"broker {account.broker} has no contract {account.broker_symbol}",
        )
    return capacity_denial(capacity)


def capacity_denial(
    state: AccountCapacity,
    *,
    risk: Decimal = _ZERO,
    margin: Decimal = _ZERO,
    halted: bool = False,
    halt_reason: str | None = None,
) -> Denial | None:
    """Whether the account may take a new leg that risks ``risk`` at the stop and ties up
    ``margin``; ``None`` means it may. The one capacity rule: planning applies it before any
    size is known (``risk`` and ``margin`` 0: only an account with nothing left is denied),
    the reservation with the leg's, on the account's state row it locked.

    In order, the first that fails denies: the kill switch, the account's standing
    (:func:`standing_denial`), its open positions against its limit, its drawdown (a peak
    equity of 0 or below measures none: denied), the daily loss budget (nothing left, or less
    than the leg risks), the free margin (none, or less than the leg needs).
    """
    standing = standing_denial(state, halted=halted, halt_reason=halt_reason)
    if standing is not None:
        return standing

    def deny(reason: DenialReason, detail: str) -> Denial:
        return Denial(account_id=state.account_id, reason=reason, detail=detail)

    if state.open_positions >= state.max_open_positions:
        return deny(
            DenialReason.MAX_POSITIONS,
            f"{state.open_positions} open positions, limit {state.max_open_positions}",
        )
    drawdown = fall_from_peak(state.peak_equity, state.equity)
    if drawdown >= state.max_drawdown:
        return deny(
            DenialReason.DRAWDOWN_LIMIT,
            f"drawdown {percent(drawdown)} reached the limit {percent(state.max_drawdown)}",
        )
    remaining = _remaining(
        state.daily_loss_budget, state.realized_loss_today, state.risk_committed_today
    )
    if remaining <= 0 or risk > remaining:
        return deny(
            DenialReason.RISK_BUDGET_EXHAUSTED,
            f"leg risks {risk}, {max(remaining, _ZERO)} left of today's budget"
            if risk > 0
            else f"daily loss budget {state.daily_loss_budget} {state.currency} is used",
        )
    if state.free_margin <= 0 or margin > state.free_margin:
        return deny(
            DenialReason.INSUFFICIENT_MARGIN,
            f"leg needs {margin} margin, {state.free_margin} free"
            if margin > 0
            else "no free margin",
        )
    return None


def standing_denial(
    state: AccountCapacity, *, halted: bool = False, halt_reason: str | None = None
) -> Denial | None:
    """The kill switch and the account's standing: trading halted, the account paused or not
    active, the account in reduce-only (every leg is new risk: an entry). The first checks of
    :func:`capacity_denial`, which planning makes before all others."""
    if halted:
        return halted_denial(state.account_id, halt_reason)
    if state.status is AccountStatus.PAUSED:
        return Denial(
            account_id=state.account_id,
            reason=DenialReason.PAUSED,
            detail="account is paused by an operator",
        )
    if state.status is not AccountStatus.ACTIVE:
        return Denial(
            account_id=state.account_id,
            reason=DenialReason.ACCOUNT_DISABLED,
            detail=f"account is {state.status.value.lower()}",
        )
    if state.reduce_only:
        return reduce_only_denial(state.account_id)
    return None


def reduce_only_denial(account_id: str, reason: str | None = None) -> Denial:
    """An entry denied because its account is in reduce-only (``reason``: why, when known)."""
    detail = "account is reduce-only: no new risk"
    return Denial(
        account_id=account_id,
        reason=DenialReason.REDUCE_ONLY,
        detail=detail if reason is None else f"{detail} ({reason})",
    )


def halted_denial(account_id: str, reason: str | None = None) -> Denial:
    """An account denied because trading is halted (``reason``: the operator's, when known)."""
    detail = "trading halted" if reason is None else f"trading halted: {reason}"
    return Denial(account_id=account_id, reason=DenialReason.HALTED, detail=detail)


def drawdown_of(account: AccountSnapshot) -> Decimal:
    """The account's fall from its peak equity, a fraction of it (see :func:`fall_from_peak`)."""
    return fall_from_peak(account.peak_equity, account.equity)


def remaining_budget(account: AccountSnapshot) -> Decimal:
    """What today's loss budget has left, once realized losses and committed risk are out."""
    return _remaining(
        account.limits.daily_loss_budget, account.realized_loss_today, account.risk_committed_today
    )


def fall_from_peak(peak_equity: Decimal, equity: Decimal) -> Decimal:
    """The fall from the peak as a fraction of it, 0 above it; 1 (the whole of it, past any
    limit) when the peak is 0 or below and no drawdown can be measured."""
    if peak_equity <= 0:
        return _ONE
    return max(_ZERO, (peak_equity - equity) / peak_equity)


def _remaining(budget: Decimal, realized_loss: Decimal, committed: Decimal) -> Decimal:
    return budget - realized_loss - committed


def percent(value: Decimal) -> str:
    return f"{(value * 100).quantize(Decimal('0.01'))} %"

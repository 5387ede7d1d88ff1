"""Eligibility: the checks that do not depend on size, each denial with its reason code, and
the account's capacity (drawdown, remaining budget) that sizing and the reservation read too.
"""

from __future__ import annotations

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


def check_eligibility(
    signal: Signal,
    account: AccountSnapshot,
    specs: dict[str, SymbolSpec],
    settings: PlanSettings,
    now: datetime,
) -> Denial | None:
    """Checks that do not depend on size. ``None`` means the account may be sized."""

    def deny(reason: DenialReason, detail: str) -> Denial:
        return Denial(account_id=account.account_id, reason=reason, detail=detail)

    if account.status is AccountStatus.PAUSED:
        return deny(DenialReason.PAUSED, "account is paused by an operator")
    if account.status is AccountStatus.DISABLED:
        return deny(DenialReason.ACCOUNT_DISABLED, "account is disabled")
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
    if account.open_positions >= account.limits.max_open_positions:
        return deny(
            DenialReason.MAX_POSITIONS,
            f"{account.open_positions} open positions, limit {account.limits.max_open_positions}",
        )
    drawdown = drawdown_of(account)
    if drawdown >= account.limits.max_drawdown:
        return deny(
            DenialReason.DRAWDOWN_LIMIT,
            f"drawdown {_pct(drawdown)} reached the limit {_pct(account.limits.max_drawdown)}",
        )
    remaining = remaining_budget(account)
    if remaining <= 0:
        return deny(
            DenialReason.RISK_BUDGET_EXHAUSTED,
            f"daily loss budget {account.limits.daily_loss_budget} {account.currency} is used",
        )
    if account.free_margin <= 0:
        return deny(DenialReason.INSUFFICIENT_MARGIN, "no free margin")
    return None


def drawdown_of(account: AccountSnapshot) -> Decimal:
    if account.peak_equity <= 0:
        return _ONE
    return max(_ZERO, (account.peak_equity - account.equity) / account.peak_equity)


def remaining_budget(account: AccountSnapshot) -> Decimal:
    return (
        account.limits.daily_loss_budget
        - account.realized_loss_today
        - account.risk_committed_today
    )


def _pct(value: Decimal) -> str:
    return f"{(value * 100).quantize(Decimal('0.01'))} %"

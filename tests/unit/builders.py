"""Hand-written builders for planning tests: valid defaults, override what the test is about.

Money, prices and quantities are ``Decimal`` throughout; never floats.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from orchestrator.config import Settings
from orchestrator.domain.book import (
    AccountLimits,
    AccountSnapshot,
    AccountStatus,
    BookSnapshot,
    Mandate,
    SymbolSpec,
)
from orchestrator.domain.correlation import AccountCorrelation, CorrelationResult
from orchestrator.domain.settings import ExecutionSettings, PlanSettings
from orchestrator.domain.signal import Signal
from orchestrator.domain.values import Side

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
"""A fixed planning instant: Monday 5 January 2026, 12:00 UTC."""

_LIMIT_FIELDS = frozenset(AccountLimits.model_fields)
_MANDATE_FIELDS = frozenset(Mandate.model_fields)


def make_signal(**overrides: Any) -> Signal:
    """A BUY EURUSD at 1.0850 with its stop at 1.0820 (30 pips, 300 ticks of 0.00001)."""
    fields: dict[str, Any] = {
        "signal_id": "sig-1",
        "symbol": "EURUSD",
        "side": Side.BUY,
        "entry": Decimal("1.0850"),
        "stop": Decimal("1.0820"),
    }
    fields.update(overrides)
    return Signal(**fields)


def make_spec(**overrides: Any) -> SymbolSpec:
    """Broker ``alpha``'s EURUSD: tick 0.00001 worth 1 per lot, lots 0.01..100 by 0.01."""
    fields: dict[str, Any] = {
        "broker": "alpha",
        "symbol": "EURUSD",
        "tick_size": Decimal("0.00001"),
        "tick_value": Decimal("1"),
        "contract_size": Decimal("100000"),
        "min_lot": Decimal("0.01"),
        "lot_step": Decimal("0.01"),
        "max_lot": Decimal("100"),
        "margin_per_lot": Decimal("1000"),
    }
    fields.update(overrides)
    return SymbolSpec(**fields)


def make_account(account_id: str, **overrides: Any) -> AccountSnapshot:
    """An ACTIVE USD account with 10,000 equity at its peak, fresh as of :data:`NOW`.

    Overrides may name any field of :class:`AccountSnapshot`, or directly a field of its
    :class:`AccountLimits` (``max_lots=...``) or :class:`Mandate` (``allowed_symbols=...``).
    Passing ``limits=`` or ``mandate=`` replaces the whole object instead.
    """
    limit_overrides = {k: overrides.pop(k) for k in list(overrides) if k in _LIMIT_FIELDS}
    mandate_overrides = {k: overrides.pop(k) for k in list(overrides) if k in _MANDATE_FIELDS}
    limits: dict[str, Any] = {
        "risk_per_trade": Decimal("0.01"),
        "daily_loss_budget": Decimal("500"),
        "max_drawdown": Decimal("0.10"),
        "max_open_positions": 5,
        "max_lots": Decimal("10"),
    }
    limits.update(limit_overrides)
    fields: dict[str, Any] = {
        "account_id": account_id,
        "broker": "alpha",
        "currency": "USD",
        "status": AccountStatus.ACTIVE,
        "limits": AccountLimits(**limits),
        "mandate": Mandate(**mandate_overrides),
        "broker_symbol": "EURUSD",
        "balance": Decimal("10000"),
        "equity": Decimal("10000"),
        "peak_equity": Decimal("10000"),
        "free_margin": Decimal("10000"),
        "open_positions": 0,
        "realized_loss_today": Decimal("0"),
        "risk_committed_today": Decimal("0"),
        "as_of": NOW,
    }
    fields.update(overrides)
    return AccountSnapshot(**fields)


def make_snapshot(
    accounts: Iterable[AccountSnapshot],
    specs: Iterable[SymbolSpec] | None = None,
    **overrides: Any,
) -> BookSnapshot:
    """A snapshot of ``accounts`` for EURUSD; ``specs`` defaults to :func:`make_spec` only."""
    spec_list = [make_spec()] if specs is None else list(specs)
    fields: dict[str, Any] = {
        "symbol": "EURUSD",
        "taken_at": NOW,
        "accounts": list(accounts),
        "specs": {spec.key: spec for spec in spec_list},
    }
    fields.update(overrides)
    return BookSnapshot(**fields)


def make_correlation(
    groups: dict[str, str | None],
    *,
    insufficient: Iterable[str] = (),
    threshold: Decimal = Decimal("0.7"),
) -> CorrelationResult:
    """A correlation result placing each account in its group (``None``: correlated with none).

    Accounts named in ``insufficient`` are marked as lacking history.
    """
    short = set(insufficient)
    entries = []
    for account_id, group in sorted(groups.items()):
        peers = sorted(o for o, g in groups.items() if group is not None and g == group)
        peers = [p for p in peers if p != account_id]
        entries.append(
            AccountCorrelation(
                account_id=account_id,
                group=group,
                max_correlation=Decimal("0.9") if peers else None,
                peers=peers,
                observations=5 if account_id in short else 60,
                insufficient_history=account_id in short,
            )
        )
    return CorrelationResult(threshold=threshold, accounts=entries)


def plan_settings(**overrides: Any) -> PlanSettings:
    """The planning settings a worker with no ``TEO_*`` variables plans with, ``overrides``
    applied (validated: a bound the settings forbid is refused)."""
    return PlanSettings.model_validate(
        Settings.model_construct().plan_settings().model_dump() | overrides
    )


def execution_settings(**overrides: Any) -> ExecutionSettings:
    """The execution settings of a worker with no ``TEO_*`` variables, ``overrides`` applied."""
    return ExecutionSettings.model_validate(
        Settings.model_construct().execution_settings().model_dump() | overrides
    )

"""The one capacity rule, :func:`~orchestrator.domain.planning.capacity_denial`, on its own:
before a size is known (planning) and with a leg's risk and margin (the reservation)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from orchestrator.domain.book import AccountStatus
from orchestrator.domain.planning import AccountCapacity, capacity_denial
from orchestrator.domain.values import DenialReason
from tests.unit.builders import make_account


def capacity(**overrides: Any) -> AccountCapacity:
    """An ACTIVE USD account with 10,000 equity at its peak, budget 500, 5 position slots."""
    return AccountCapacity.of(make_account("acct", **overrides))


def denied(state: AccountCapacity, **leg: Any) -> tuple[DenialReason, str] | None:
    denial = capacity_denial(state, **leg)
    return None if denial is None else (denial.reason, denial.detail)


@pytest.mark.parametrize(
    ("peak", "equity"),
    [("0", "0"), ("-1", "-1"), ("0", "10")],
    ids=["zero", "negative", "zero-under-equity"],
)
def test_a_peak_equity_of_zero_or_below_is_denied_at_the_drawdown_limit(
    peak: str, equity: str
) -> None:
    state = capacity(peak_equity=Decimal(peak), equity=Decimal(equity))

    assert denied(state) == (
        DenialReason.DRAWDOWN_LIMIT,
        "drawdown 100.00 % reached the limit 10.00 %",
    )
    assert denied(state, risk=Decimal(1), margin=Decimal(1)) == denied(state)


def test_the_kill_switch_comes_first_then_the_status_then_the_limits_in_planning_order() -> None:
    everything_gone = capacity(
        status=AccountStatus.PAUSED,
        open_positions=5,
        equity=Decimal(9000),
        realized_loss_today=Decimal(500),
        free_margin=Decimal(0),
    )

    assert denied(everything_gone, halted=True, halt_reason="desk 3") == (
        DenialReason.HALTED,
        "trading halted: desk 3",
    )
    assert denied(everything_gone) == (DenialReason.PAUSED, "account is paused by an operator")
    active = capacity(open_positions=5, equity=Decimal(9000), realized_loss_today=Decimal(500))
    assert denied(active) == (DenialReason.MAX_POSITIONS, "5 open positions, limit 5")
    assert denied(capacity(equity=Decimal(9000), realized_loss_today=Decimal(500))) == (
        DenialReason.DRAWDOWN_LIMIT,
        "drawdown 10.00 % reached the limit 10.00 %",
    )


def test_the_budget_before_a_size_is_known_and_for_a_leg() -> None:
    used = capacity(realized_loss_today=Decimal(300), risk_committed_today=Decimal(200))
    some_left = capacity(realized_loss_today=Decimal(300))

    assert denied(used) == (DenialReason.RISK_BUDGET_EXHAUSTED, "daily loss budget 500 USD is used")
    assert denied(used, risk=Decimal(1)) == (
        DenialReason.RISK_BUDGET_EXHAUSTED,
        "leg risks 1, 0 left of today's budget",
    )
    assert denied(some_left, risk=Decimal(200)) is None
    assert denied(some_left, risk=Decimal("200.01")) == (
        DenialReason.RISK_BUDGET_EXHAUSTED,
        "leg risks 200.01, 200 left of today's budget",
    )


def test_the_free_margin_before_a_size_is_known_and_for_a_leg() -> None:
    none_free = capacity(free_margin=Decimal(0))
    some_free = capacity(free_margin=Decimal(1085))

    assert denied(none_free) == (DenialReason.INSUFFICIENT_MARGIN, "no free margin")
    assert denied(none_free, margin=Decimal(0)) == denied(none_free)
    assert denied(some_free, margin=Decimal(1085)) is None
    assert denied(some_free, margin=Decimal("1085.01")) == (
        DenialReason.INSUFFICIENT_MARGIN,
        "leg needs 1085.01 margin, 1085 free",
    )


def test_reduce_only_is_denied_after_the_kill_switch_and_the_status_before_the_limits() -> None:
    full = capacity(reduce_only=True, open_positions=5)

    assert denied(full, halted=True) == (DenialReason.HALTED, "trading halted")
    assert denied(capacity(reduce_only=True, status=AccountStatus.DISABLED)) == (
        DenialReason.ACCOUNT_DISABLED,
        "account is disabled",
    )
    assert denied(full) == (DenialReason.REDUCE_ONLY, "account is reduce-only: no new risk")
    assert denied(full, risk=Decimal(1), margin=Decimal(1)) == denied(full)
    assert denied(capacity(reduce_only=False)) is None

"""Planning and the reservation agree on an account's capacity, case by case, on both databases.

Each case is planned first on a healthy account (which gives the leg), then the account's state
moves to the case's (as it may between planning and the leg's turn) and both decide again:
planning on a fresh snapshot, the reservation on the account's locked row with the planned leg.
They must give the same denial reason, or both let the leg through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import AccountStateRow
from orchestrator.domain.book import AccountStatus
from orchestrator.domain.contracts.payloads import ReserveRiskRequest, SnapshotRequest
from orchestrator.domain.correlation import CorrelationResult
from orchestrator.domain.planning import plan_signal
from orchestrator.domain.planning.decisions import PlannedLeg
from orchestrator.domain.values import DenialReason
from tests.support import account, book, load, signal
from tests.unit.builders import plan_settings

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SIGNAL = signal("sig-1")


@dataclass(frozen=True)
class Case:
    """The account's state when its leg's turn comes (``acct``: equity 50,000 at its peak,
    budget 5,000, 10 position slots, drawdown limit 10 %), and what both must decide."""

    expected: DenialReason | None
    state: dict[str, Any] = field(default_factory=dict)
    """Columns of the account's state row."""
    status: AccountStatus | None = None
    halted: bool = False
    reduce_only: bool = False
    leg_margin: Decimal | None = None
    """The leg's margin, when its contract's is not the planned one's (``0``: none needed)."""


CASES = {
    "room-to-trade": Case(None),
    "drawdown-within-the-limit": Case(None, {"equity": Decimal(47500)}),
    "halted": Case(DenialReason.HALTED, halted=True),
    "paused": Case(DenialReason.PAUSED, status=AccountStatus.PAUSED),
    "disabled": Case(DenialReason.ACCOUNT_DISABLED, status=AccountStatus.DISABLED),
    "halted-and-paused": Case(DenialReason.HALTED, status=AccountStatus.PAUSED, halted=True),
    "reduce-only": Case(DenialReason.REDUCE_ONLY, reduce_only=True),
    "paused-and-reduce-only": Case(
        DenialReason.PAUSED, status=AccountStatus.PAUSED, reduce_only=True
    ),
    "reduce-only-and-positions-full": Case(
        DenialReason.REDUCE_ONLY, {"open_positions": 10}, reduce_only=True
    ),
    "positions-full": Case(DenialReason.MAX_POSITIONS, {"open_positions": 10}),
    "paused-and-positions-full": Case(
        DenialReason.PAUSED, {"open_positions": 10}, status=AccountStatus.PAUSED
    ),
    "drawdown-at-the-limit": Case(DenialReason.DRAWDOWN_LIMIT, {"equity": Decimal(45000)}),
    "peak-equity-zero": Case(
        DenialReason.DRAWDOWN_LIMIT, {"peak_equity": Decimal(0), "equity": Decimal(0)}
    ),
    "peak-equity-negative": Case(
        DenialReason.DRAWDOWN_LIMIT, {"peak_equity": Decimal(-1), "equity": Decimal(-1)}
    ),
    "budget-lost-today": Case(
        DenialReason.RISK_BUDGET_EXHAUSTED, {"realized_loss_today": Decimal(5000)}
    ),
    "budget-committed-today": Case(
        DenialReason.RISK_BUDGET_EXHAUSTED, {"risk_committed_today": Decimal(5000)}
    ),
    "drawdown-and-budget": Case(
        DenialReason.DRAWDOWN_LIMIT,
        {"equity": Decimal(45000), "realized_loss_today": Decimal(5000)},
    ),
    "no-free-margin": Case(DenialReason.INSUFFICIENT_MARGIN, {"free_margin": Decimal(0)}),
    "no-free-margin-for-a-leg-needing-none": Case(
        DenialReason.INSUFFICIENT_MARGIN, {"free_margin": Decimal(0)}, leg_margin=Decimal(0)
    ),
}


def planning_decision(db: Database) -> tuple[DenialReason | None, PlannedLeg | None]:
    """Planning's decision for ``acct`` on a snapshot of the database: its denial, or its leg."""
    with db.transaction() as session:
        snapshot = repository.load_snapshot(
            session, SnapshotRequest(signal_id=SIGNAL.signal_id, symbol=SIGNAL.symbol), NOW
        )
    plan = plan_signal(
        SIGNAL,
        snapshot,
        CorrelationResult(threshold=Decimal("0.7"), accounts=[]),
        plan_settings(),
        NOW,
    )
    if plan.legs:
        return None, plan.legs[0]
    return plan.denials[0].reason, None


def reservation_decision(db: Database, leg: PlannedLeg, margin: Decimal) -> DenialReason | None:
    """The reservation's decision for the planned leg on the account's row: its denial, or
    ``None`` once reserved."""
    request = ReserveRiskRequest(
        signal_id=SIGNAL.signal_id,
        account_id=leg.account_id,
        client_order_id=leg.client_order_id,
        quantity=leg.quantity,
        risk_amount=leg.risk_amount,
        margin=margin,
    )
    with db.transaction() as session:
        result = repository.reserve_risk(session, request, NOW)
    assert result.reserved == (result.denial is None)
    return result.denial


def move_to(db: Database, case: Case) -> None:
    with db.transaction() as session:
        state = session.get(AccountStateRow, "acct")
        assert state is not None
        for column, value in case.state.items():
            setattr(state, column, value)
        if case.status is not None:
            repository.set_account_status(session, "acct", case.status, "by the test", NOW)
        if case.reduce_only:
            repository.set_reduce_only(
                session, ["acct"], reduce_only=True, by="test", reason="by the test", now=NOW
            )
        if case.halted:
            repository.set_halt(
                session, halted=True, operator="test", reason="fat finger on desk 3", now=NOW
            )


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_planning_and_the_reservation_decide_capacity_alike(db: Database, case: Case) -> None:
    load(db, book(account("acct", as_of=NOW)))
    healthy, leg = planning_decision(db)
    assert healthy is None
    assert leg is not None
    move_to(db, case)

    planned, _ = planning_decision(db)
    reserved = reservation_decision(
        db, leg, leg.margin if case.leg_margin is None else case.leg_margin
    )

    assert {"planning": planned, "reservation": reserved} == {
        "planning": case.expected,
        "reservation": case.expected,
    }

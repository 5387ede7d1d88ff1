"""Invariants of :func:`orchestrator.domain.planning.plan_signal` over random books and settings."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.domain.book import AccountSnapshot, AccountStatus, BookSnapshot, SymbolSpec
from orchestrator.domain.correlation import CorrelationResult
from orchestrator.domain.planning import plan_signal
from orchestrator.domain.planning.decisions import Plan
from orchestrator.domain.settings import PlanSettings
from orchestrator.domain.signal import Signal
from orchestrator.domain.values import DenialReason, Side
from tests.unit.builders import (
    NOW,
    make_account,
    make_correlation,
    make_signal,
    make_snapshot,
    make_spec,
)
from tests.unit.builders import (
    plan_settings as default_plan_settings,
)

BROKERS = ("alpha", "beta", "gamma")
GROUPS = (None, "g1", "g2", "g3")


@dataclass(frozen=True)
class Case:
    signal: Signal
    snapshot: BookSnapshot
    correlation: CorrelationResult
    settings: PlanSettings

    def plan(self) -> Plan:
        return plan_signal(self.signal, self.snapshot, self.correlation, self.settings, NOW)

    def account(self, account_id: str) -> AccountSnapshot:
        (account,) = [a for a in self.snapshot.accounts if a.account_id == account_id]
        return account

    def spec_of(self, account_id: str) -> SymbolSpec:
        account = self.account(account_id)
        return self.snapshot.specs[f"{account.broker}:{account.broker_symbol}"]


def cents(low: int, high: int) -> st.SearchStrategy[Decimal]:
    """Amounts in whole cents from ``low`` to ``high`` cents."""
    return st.integers(low, high).map(lambda c: Decimal(c) / 100)


def ten_thousandths(low: int, high: int) -> st.SearchStrategy[Decimal]:
    return st.integers(low, high).map(lambda n: Decimal(n) / 10_000)


# Strategies are built once here: building them inside the composites dominates run time.
LOT_STEPS = st.sampled_from([Decimal("0.01"), Decimal("0.1"), Decimal("1")])
TICK_SIZES = st.sampled_from([Decimal("0.00001"), Decimal("0.0001"), Decimal("0.01")])
TICK_VALUE_PER_UNIT = cents(50, 200)
"""Tick value per 1/100,000 of price: about 1 per pip-tenth, like a 100,000 contract."""
MIN_LOT_STEPS = st.integers(1, 3)
MAX_LOT_STEPS = st.integers(0, 5_000)
MARGIN_PER_LOT = cents(0, 200_000)
FAULTS = st.sampled_from(
    [
        *([None] * 12),
        "paused",
        "disabled",
        "stale",
        "unmapped",
        "foreign_broker",
        "positions",
        "drawdown",
        "budget",
        "tight_budget",
        "margin",
        "tight_margin",
        "forbidden_symbol",
        "solo",
    ]
)
"""Most accounts are healthy; the others carry one reason to be denied (or squeezed)."""
EQUITY = cents(100_000, 50_000_000)
MAX_DRAWDOWN = ten_thousandths(100, 5_000)
DRAWDOWN_USED_PCT = st.integers(-20, 95)
"""Percent of the drawdown limit already used; negative: equity above its peak."""
DAILY_BUDGET = cents(10_000, 1_000_000)
SPENT_FRACTION_PCT = st.integers(0, 80)
FREE_MARGIN = cents(100_000, 20_000_000)
MAX_POSITIONS = st.integers(1, 10)
AGE_S = st.integers(0, 900)
RISK_PER_TRADE = ten_thousandths(10, 300)
MAX_LOTS = cents(1, 20_000)
BROKER = st.sampled_from(BROKERS)
GROUP = st.sampled_from(GROUPS)
INSUFFICIENT = st.integers(0, 9)
ACCOUNT_COUNT = st.integers(1, 25)
DELAY_MIN = st.integers(0, 10_000)
DELAY_WINDOW = st.sampled_from([0, 1, 500, 5_000, 30_000, 60_000])
VARIANCE = ten_thousandths(0, 5_000)
GAP = st.sampled_from([0, 1, 1_000, 5_000, 20_000])
MAX_LEGS = st.one_of(st.none(), st.integers(1, 25))
PLAN_VERSION = st.integers(1, 3)
SIDE = st.sampled_from(Side)
ENTRY = st.integers(50_000, 200_000).map(lambda n: Decimal(n) / 100_000)
STOP_DISTANCE = st.integers(5, 500).map(lambda n: Decimal(n) / 100_000)
SIGNAL_NUMBER = st.integers(0, 10**6)


@st.composite
def specs(draw: st.DrawFn, broker: str) -> SymbolSpec:
    step = draw(LOT_STEPS)
    min_lot = step * draw(MIN_LOT_STEPS)
    tick_size = draw(TICK_SIZES)
    return make_spec(
        broker=broker,
        tick_size=tick_size,
        tick_value=tick_size * 100_000 * draw(TICK_VALUE_PER_UNIT),
        min_lot=min_lot,
        lot_step=step,
        max_lot=min_lot + step * draw(MAX_LOT_STEPS),
        margin_per_lot=draw(MARGIN_PER_LOT),
    )


@st.composite
def accounts(draw: st.DrawFn, account_id: str) -> AccountSnapshot:
    fault = draw(FAULTS)
    equity = draw(EQUITY)
    max_drawdown = draw(MAX_DRAWDOWN)
    used = 100 if fault == "drawdown" else draw(DRAWDOWN_USED_PCT)
    peak = (equity * (1 + max_drawdown * used / 100)).quantize(Decimal("0.01"))
    budget = draw(DAILY_BUDGET)
    spent = (budget * draw(SPENT_FRACTION_PCT) / 100).quantize(Decimal("0.01"))
    if fault == "budget":
        spent = budget
    elif fault == "tight_budget":
        spent = max(budget - Decimal("0.05"), Decimal(0))
    free_margin = draw(FREE_MARGIN)
    if fault == "margin":
        free_margin = -(free_margin % 100)
    elif fault == "tight_margin":
        free_margin = Decimal("0.01") + free_margin % 10
    max_positions = draw(MAX_POSITIONS)
    return make_account(
        account_id,
        broker="delta" if fault == "foreign_broker" else draw(BROKER),
        status={"paused": AccountStatus.PAUSED, "disabled": AccountStatus.DISABLED}.get(
            fault or "", AccountStatus.ACTIVE
        ),
        broker_symbol=None if fault == "unmapped" else "EURUSD",
        equity=equity,
        balance=equity,
        peak_equity=peak,
        free_margin=free_margin,
        open_positions=max_positions if fault == "positions" else max_positions - 1,
        realized_loss_today=(spent / 2).quantize(Decimal("0.01")),
        risk_committed_today=spent - (spent / 2).quantize(Decimal("0.01")),
        as_of=NOW - timedelta(seconds=901 if fault == "stale" else draw(AGE_S)),
        risk_per_trade=draw(RISK_PER_TRADE),
        daily_loss_budget=budget,
        max_drawdown=max_drawdown,
        max_open_positions=max_positions,
        max_lots=draw(MAX_LOTS),
        allowed_symbols=["GBPUSD"] if fault == "forbidden_symbol" else None,
        exclude_from_multi_account=fault == "solo",
    )


@st.composite
def plan_settings(draw: st.DrawFn) -> PlanSettings:
    low = draw(DELAY_MIN)
    return default_plan_settings(
        plan_version=draw(PLAN_VERSION),
        delay_min_ms=low,
        delay_max_ms=low + draw(DELAY_WINDOW),
        size_variance=draw(VARIANCE),
        correlated_min_gap_ms=draw(GAP),
        max_legs=draw(MAX_LEGS),
    )


@st.composite
def signals(draw: st.DrawFn) -> Signal:
    side = draw(SIDE)
    entry = draw(ENTRY)
    distance = draw(STOP_DISTANCE)
    stop = entry - distance if side is Side.BUY else entry + distance
    return make_signal(signal_id=f"sig-{draw(SIGNAL_NUMBER)}", side=side, entry=entry, stop=stop)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    book = [draw(accounts(f"acc-{i:02d}")) for i in range(draw(ACCOUNT_COUNT))]
    groups = {a.account_id: draw(GROUP) for a in book}
    insufficient = [a.account_id for a in book if draw(INSUFFICIENT) == 0]
    return Case(
        signal=draw(signals()),
        snapshot=make_snapshot(book, [draw(specs(broker)) for broker in BROKERS]),
        correlation=make_correlation(groups, insufficient=insufficient),
        settings=draw(plan_settings()),
    )


def remaining_budget(account: AccountSnapshot) -> Decimal:
    return (
        account.limits.daily_loss_budget
        - account.realized_loss_today
        - account.risk_committed_today
    )


PROPERTY = settings(max_examples=150, deadline=None)


@PROPERTY
@given(cases())
def test_leg_quantity_is_a_lot_step_multiple_within_min_and_max_lots(case: Case):
    for leg in case.plan().legs:
        account = case.account(leg.account_id)
        spec = case.spec_of(leg.account_id)
        assert leg.quantity <= account.limits.max_lots
        assert leg.quantity <= spec.max_lot
        assert leg.quantity >= spec.min_lot
        assert leg.quantity % spec.lot_step == 0
        assert leg.quantity == leg.size.final_lots


@PROPERTY
@given(cases())
def test_quantity_rounds_down_by_less_than_one_lot_step(case: Case):
    for leg in case.plan().legs:
        step = case.spec_of(leg.account_id).lot_step
        size = leg.size
        assert leg.quantity <= size.capped_lots
        assert size.capped_lots - step <= leg.quantity
        assert size.capped_lots <= min(
            size.target_lots, size.budget_cap_lots, size.margin_cap_lots, size.max_lots
        )


@PROPERTY
@given(cases())
def test_every_account_is_either_a_leg_or_a_denial_exactly_once(case: Case):
    plan = case.plan()
    named = [leg.account_id for leg in plan.legs] + [d.account_id for d in plan.denials]
    assert sorted(named) == sorted(a.account_id for a in case.snapshot.accounts)


@PROPERTY
@given(cases())
def test_reserve_is_exactly_the_not_selected_accounts(case: Case):
    plan = case.plan()
    not_selected = [d.account_id for d in plan.denials if d.reason is DenialReason.NOT_SELECTED]
    assert sorted(plan.reserve) == sorted(not_selected)
    if case.settings.max_legs is not None:
        assert len(plan.legs) <= case.settings.max_legs
    if any(not case.account(a).reserve_only for a in plan.reserve):
        assert len(plan.legs) == case.settings.max_legs


@PROPERTY
@given(cases())
def test_leg_risk_fits_the_remaining_daily_budget(case: Case):
    for leg in case.plan().legs:
        account = case.account(leg.account_id)
        assert leg.risk_amount <= remaining_budget(account)
        exact = leg.quantity * abs(case.signal.entry - case.signal.stop)
        exact = exact / case.spec_of(leg.account_id).tick_size
        exact = exact * case.spec_of(leg.account_id).tick_value
        assert abs(leg.risk_amount - exact) <= Decimal("0.0000005")


@PROPERTY
@given(cases())
def test_leg_margin_fits_the_free_margin(case: Case):
    for leg in case.plan().legs:
        account = case.account(leg.account_id)
        spec = case.spec_of(leg.account_id)
        assert leg.margin <= account.free_margin
        assert abs(leg.margin - leg.quantity * spec.margin_per_lot) <= Decimal("0.0000005")


@PROPERTY
@given(cases())
def test_delays_are_within_bounds_and_legs_ordered_by_delay(case: Case):
    plan = case.plan()
    lo, hi = case.settings.delay_min_ms, case.settings.delay_max_ms
    assert all(lo <= leg.delay_ms <= hi for leg in plan.legs)
    assert [leg.delay_ms for leg in plan.legs] == sorted(leg.delay_ms for leg in plan.legs)
    assert [leg.sequence for leg in plan.legs] == list(range(1, len(plan.legs) + 1))


@PROPERTY
@given(cases())
def test_correlated_legs_are_spaced_by_the_effective_gap(case: Case):
    plan = case.plan()
    lo, hi = case.settings.delay_min_ms, case.settings.delay_max_ms
    by_group: dict[str, list[int]] = defaultdict(list)
    gaps: dict[str, set[int]] = defaultdict(set)
    sizes: dict[str, set[int]] = defaultdict(set)
    for leg in plan.legs:
        if leg.delay.group is not None:
            by_group[leg.delay.group].append(leg.delay_ms)
            gaps[leg.delay.group].add(leg.delay.effective_gap_ms)
            sizes[leg.delay.group].add(leg.delay.group_size)
        else:
            assert leg.delay.group_size == 1
            assert leg.delay.effective_gap_ms == 0
    for group, delays in by_group.items():
        k = len(delays)
        assert k >= 2
        assert sizes[group] == {k}
        (gap,) = gaps[group]
        ordered = sorted(delays)
        assert all(b - a >= gap for a, b in pairwise(ordered))
        assert gap <= case.settings.correlated_min_gap_ms
        assert (k - 1) * gap <= hi - lo
        if (k - 1) * case.settings.correlated_min_gap_ms <= hi - lo:
            assert gap == case.settings.correlated_min_gap_ms


@PROPERTY
@given(cases())
def test_correlated_accounts_with_several_legs_are_scheduled_as_a_group(case: Case):
    plan = case.plan()
    correlations = case.correlation.by_account()
    legs_by_group = defaultdict(list)
    for leg in plan.legs:
        corr = correlations[leg.account_id]
        if corr.group is not None and not corr.insufficient_history:
            legs_by_group[corr.group].append(leg)
    for group, legs in legs_by_group.items():
        if len(legs) >= 2:
            assert {leg.delay.group for leg in legs} == {group}
            assert all(leg.size.correlated_accounts >= len(legs) for leg in legs)


@PROPERTY
@given(cases())
def test_same_inputs_give_the_same_plan(case: Case):
    assert case.plan() == case.plan()


@PROPERTY
@given(cases())
def test_variance_factor_is_within_the_configured_bound(case: Case):
    bound = case.settings.size_variance
    for leg in case.plan().legs:
        assert 1 - bound <= leg.size.variance_factor <= 1 + bound


@PROPERTY
@given(cases())
def test_client_order_ids_are_unique_and_derived_from_signal_and_account(case: Case):
    plan = case.plan()
    ids = [leg.client_order_id for leg in plan.legs]
    assert len(set(ids)) == len(ids)
    for leg in plan.legs:
        assert leg.client_order_id == f"{case.signal.signal_id}:{leg.account_id}:1"

"""One rule of :func:`~orchestrator.domain.planning.plan_signal` per test: eligibility, sizing,
delays."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time, timedelta
from decimal import Decimal
from itertools import pairwise

from orchestrator.domain.book import AccountSnapshot, AccountStatus, SymbolSpec, TradingHours
from orchestrator.domain.correlation import CorrelationResult
from orchestrator.domain.planning import plan_seed, plan_signal
from orchestrator.domain.planning.decisions import Denial, Plan, PlannedLeg
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
    plan_settings,
)

NO_VARIANCE = plan_settings(size_variance=Decimal("0"))


def plan_for(
    accounts: Iterable[AccountSnapshot],
    *,
    signal: Signal | None = None,
    specs: Iterable[SymbolSpec] | None = None,
    correlation: CorrelationResult | None = None,
    settings: PlanSettings = NO_VARIANCE,
    now: datetime = NOW,
    halted: bool = False,
) -> Plan:
    accounts = list(accounts)
    return plan_signal(
        signal or make_signal(),
        make_snapshot(accounts, specs, halted=halted),
        correlation or make_correlation({a.account_id: None for a in accounts}),
        settings,
        now,
    )


def only_denial(plan: Plan) -> Denial:
    assert plan.legs == []
    assert len(plan.denials) == 1
    return plan.denials[0]


def only_leg(plan: Plan) -> PlannedLeg:
    assert plan.denials == []
    assert len(plan.legs) == 1
    return plan.legs[0]


def leg_of(plan: Plan, account_id: str) -> PlannedLeg:
    (leg,) = [leg for leg in plan.legs if leg.account_id == account_id]
    return leg


def denial_of(plan: Plan, account_id: str) -> Denial:
    (denial,) = [d for d in plan.denials if d.account_id == account_id]
    return denial


# --------------------------------------------------------------------------------------------
# Eligibility denials


def test_default_account_is_eligible_and_gets_one_leg():
    leg = only_leg(plan_for([make_account("acc-1")]))
    assert leg.account_id == "acc-1"
    assert leg.broker == "alpha"
    assert leg.broker_symbol == "EURUSD"


def test_paused_account_is_denied_paused():
    denial = only_denial(plan_for([make_account("acc-1", status=AccountStatus.PAUSED)]))
    assert denial.account_id == "acc-1"
    assert denial.reason is DenialReason.PAUSED


def test_disabled_account_is_denied_account_disabled():
    denial = only_denial(plan_for([make_account("acc-1", status=AccountStatus.DISABLED)]))
    assert denial.reason is DenialReason.ACCOUNT_DISABLED


def test_reduce_only_account_is_denied_reduce_only_while_the_others_get_legs():
    plan = plan_for([make_account("acc-1", reduce_only=True), make_account("acc-2")])
    assert [leg.account_id for leg in plan.legs] == ["acc-2"]
    denial = denial_of(plan, "acc-1")
    assert denial.reason is DenialReason.REDUCE_ONLY
    assert denial.detail == "account is reduce-only: no new risk"


def test_paused_account_in_reduce_only_is_denied_paused_first():
    account = make_account("acc-1", status=AccountStatus.PAUSED, reduce_only=True)
    assert only_denial(plan_for([account])).reason is DenialReason.PAUSED


def test_halted_snapshot_denies_every_account_halted_and_plans_no_leg():
    accounts = [make_account("acc-1"), make_account("acc-2"), make_account("acc-3")]
    plan = plan_for(accounts, halted=True)
    assert plan.legs == []
    assert plan.reserve == []
    assert [d.account_id for d in plan.denials] == ["acc-1", "acc-2", "acc-3"]
    assert {d.reason for d in plan.denials} == {DenialReason.HALTED}


def test_account_data_older_than_max_age_is_denied_stale_account_data():
    settings = NO_VARIANCE.model_copy(update={"max_account_data_age_s": 900})
    account = make_account("acc-1", as_of=NOW - timedelta(seconds=901))
    denial = only_denial(plan_for([account], settings=settings))
    assert denial.reason is DenialReason.STALE_ACCOUNT_DATA


def test_account_data_exactly_max_age_old_is_still_fresh():
    settings = NO_VARIANCE.model_copy(update={"max_account_data_age_s": 900})
    account = make_account("acc-1", as_of=NOW - timedelta(seconds=900))
    only_leg(plan_for([account], settings=settings))


def test_symbol_outside_allowed_symbols_is_denied_mandate_forbids():
    account = make_account("acc-1", allowed_symbols=["GBPUSD", "USDJPY"])
    denial = only_denial(plan_for([account]))
    assert denial.reason is DenialReason.MANDATE_FORBIDS
    assert "EURUSD" in denial.detail


def test_symbol_in_allowed_symbols_trades():
    account = make_account("acc-1", allowed_symbols=["GBPUSD", "EURUSD"])
    only_leg(plan_for([account]))


def test_now_outside_trading_hours_is_denied_mandate_forbids():
    hours = TradingHours(start=time(13, 0), end=time(17, 0))
    denial = only_denial(plan_for([make_account("acc-1", trading_hours=hours)]))
    assert denial.reason is DenialReason.MANDATE_FORBIDS


def test_trading_hours_end_is_exclusive_so_now_at_end_is_denied_mandate_forbids():
    hours = TradingHours(start=time(8, 0), end=time(12, 0))
    denial = only_denial(plan_for([make_account("acc-1", trading_hours=hours)]))
    assert denial.reason is DenialReason.MANDATE_FORBIDS


def test_weekday_outside_trading_days_is_denied_mandate_forbids():
    hours = TradingHours(start=time(0, 0), end=time(23, 59), weekdays=[5, 6])
    denial = only_denial(plan_for([make_account("acc-1", trading_hours=hours)]))
    assert denial.reason is DenialReason.MANDATE_FORBIDS


def test_trading_hours_spanning_midnight_include_now_so_account_trades():
    hours = TradingHours(start=time(22, 0), end=time(12, 1), weekdays=[0])
    only_leg(plan_for([make_account("acc-1", trading_hours=hours)]))


def test_exclude_from_multi_account_is_denied_mandate_forbids_when_others_are_eligible():
    plan = plan_for([make_account("acc-1", exclude_from_multi_account=True), make_account("acc-2")])
    assert denial_of(plan, "acc-1").reason is DenialReason.MANDATE_FORBIDS
    assert [leg.account_id for leg in plan.legs] == ["acc-2"]


def test_exclude_from_multi_account_trades_when_it_is_the_only_eligible_account():
    plan = plan_for(
        [
            make_account("acc-1", exclude_from_multi_account=True),
            make_account("acc-2", status=AccountStatus.PAUSED),
        ]
    )
    assert [leg.account_id for leg in plan.legs] == ["acc-1"]
    assert denial_of(plan, "acc-2").reason is DenialReason.PAUSED


def test_missing_symbol_mapping_is_denied_symbol_not_tradable():
    denial = only_denial(plan_for([make_account("acc-1", broker_symbol=None)]))
    assert denial.reason is DenialReason.SYMBOL_NOT_TRADABLE


def test_missing_broker_spec_is_denied_symbol_not_tradable():
    account = make_account("acc-1", broker="beta")
    denial = only_denial(plan_for([account], specs=[make_spec(broker="alpha")]))
    assert denial.reason is DenialReason.SYMBOL_NOT_TRADABLE
    assert "beta" in denial.detail


def test_broker_symbol_mapping_selects_the_brokers_spec():
    account = make_account("acc-1", broker="beta", broker_symbol="EURUSD.pro")
    leg = only_leg(plan_for([account], specs=[make_spec(broker="beta", symbol="EURUSD.pro")]))
    assert leg.broker == "beta"
    assert leg.broker_symbol == "EURUSD.pro"


def test_open_positions_at_limit_is_denied_max_positions():
    account = make_account("acc-1", open_positions=5, max_open_positions=5)
    denial = only_denial(plan_for([account]))
    assert denial.reason is DenialReason.MAX_POSITIONS


def test_open_positions_below_limit_trades():
    only_leg(plan_for([make_account("acc-1", open_positions=4, max_open_positions=5)]))


def test_drawdown_at_limit_is_denied_drawdown_limit():
    account = make_account("acc-1", equity=Decimal("9000"), peak_equity=Decimal("10000"))
    denial = only_denial(plan_for([account]))
    assert denial.reason is DenialReason.DRAWDOWN_LIMIT


def test_used_up_daily_budget_is_denied_risk_budget_exhausted():
    account = make_account(
        "acc-1", realized_loss_today=Decimal("300"), risk_committed_today=Decimal("200")
    )
    denial = only_denial(plan_for([account]))
    assert denial.reason is DenialReason.RISK_BUDGET_EXHAUSTED


def test_overspent_daily_budget_is_denied_risk_budget_exhausted():
    account = make_account("acc-1", realized_loss_today=Decimal("650"))
    denial = only_denial(plan_for([account]))
    assert denial.reason is DenialReason.RISK_BUDGET_EXHAUSTED


def test_zero_daily_budget_is_denied_risk_budget_exhausted():
    denial = only_denial(plan_for([make_account("acc-1", daily_loss_budget=Decimal("0"))]))
    assert denial.reason is DenialReason.RISK_BUDGET_EXHAUSTED


def test_budget_cap_below_min_lot_is_denied_risk_budget_exhausted():
    # 2.90 left of the budget / 300 per lot = 0.009667 lots, below the 0.01 minimum.
    account = make_account("acc-1", realized_loss_today=Decimal("497.10"))
    denial = only_denial(plan_for([account]))
    assert denial.reason is DenialReason.RISK_BUDGET_EXHAUSTED
    assert "daily_risk_budget" in denial.detail


def test_budget_cap_above_min_lot_binds_the_size():
    # 60 left / 300 per lot = 0.2 lots, below the 0.33 target.
    account = make_account("acc-1", risk_committed_today=Decimal("440"))
    leg = only_leg(plan_for([account]))
    assert leg.quantity == Decimal("0.20")
    assert leg.size.binding == "daily_risk_budget"
    assert leg.risk_amount == Decimal("60")


def test_no_free_margin_is_denied_insufficient_margin():
    denial = only_denial(plan_for([make_account("acc-1", free_margin=Decimal("0"))]))
    assert denial.reason is DenialReason.INSUFFICIENT_MARGIN


def test_margin_cap_below_min_lot_is_denied_insufficient_margin():
    # 5 free / 1000 per lot = 0.005 lots, below the 0.01 minimum.
    denial = only_denial(plan_for([make_account("acc-1", free_margin=Decimal("5"))]))
    assert denial.reason is DenialReason.INSUFFICIENT_MARGIN
    assert "free_margin" in denial.detail


def test_margin_cap_above_min_lot_binds_the_size():
    # 150 free / 1000 per lot = 0.15 lots, below the 0.33 target.
    leg = only_leg(plan_for([make_account("acc-1", free_margin=Decimal("150"))]))
    assert leg.quantity == Decimal("0.15")
    assert leg.size.binding == "free_margin"
    assert leg.margin == Decimal("150")


def test_target_below_min_lot_is_denied_size_below_min_lot():
    # 100 equity × 1 % = 1 at risk / 300 per lot = 0.003333 lots.
    account = make_account("acc-1", equity=Decimal("100"), peak_equity=Decimal("100"))
    denial = only_denial(plan_for([account]))
    assert denial.reason is DenialReason.SIZE_BELOW_MIN_LOT


def test_a_denial_on_size_carries_every_factor_and_the_cap_that_bound():
    # 2.90 left of the budget: the variance drawn and the budget cap are in the denial.
    account = make_account("acc-1", realized_loss_today=Decimal("497.10"))
    denial = only_denial(plan_for([account], settings=plan_settings(size_variance=Decimal("0.2"))))
    assert denial.reason is DenialReason.RISK_BUDGET_EXHAUSTED
    assert denial.size is not None
    assert denial.size.binding == "daily_risk_budget"
    assert denial.size.budget_cap_lots == Decimal("0.009667")
    assert Decimal("0.8") <= denial.size.variance_factor <= Decimal("1.2")
    assert denial.size.final_lots == 0


def test_a_denial_before_sizing_carries_no_size():
    denial = only_denial(plan_for([make_account("acc-1", free_margin=Decimal("0"))]))
    assert denial.size is None


def test_the_plan_names_its_correlated_groups_and_their_members():
    accounts = [make_account(f"acc-{i}") for i in range(1, 5)]
    correlation = make_correlation({"acc-1": "g1", "acc-2": "g1", "acc-3": "g2", "acc-4": None})
    plan = plan_for(accounts, correlation=correlation)
    assert plan.groups == {"g1": ["acc-1", "acc-2"], "g2": ["acc-3"]}
    assert '"groups":{"g1":["acc-1","acc-2"]' in plan.model_dump_json()


def test_max_lots_below_spec_min_lot_is_denied_size_below_min_lot():
    account = make_account("acc-1", max_lots=Decimal("0.05"))
    denial = only_denial(plan_for([account], specs=[make_spec(min_lot=Decimal("0.1"))]))
    assert denial.reason is DenialReason.SIZE_BELOW_MIN_LOT


def test_eligible_accounts_beyond_max_legs_are_denied_not_selected_and_kept_in_reserve():
    ids = [f"acc-{i}" for i in range(1, 6)]
    settings = NO_VARIANCE.model_copy(update={"max_legs": 2})
    plan = plan_for([make_account(i) for i in ids], settings=settings)

    assert len(plan.legs) == 2
    assert len(plan.reserve) == 3
    leg_ids = {leg.account_id for leg in plan.legs}
    assert leg_ids.isdisjoint(plan.reserve)
    assert leg_ids | set(plan.reserve) == set(ids)
    assert len(plan.denials) == 3
    assert {d.account_id for d in plan.denials} == set(plan.reserve)
    assert {d.reason for d in plan.denials} == {DenialReason.NOT_SELECTED}


def test_max_legs_not_reached_keeps_every_account_and_no_reserve():
    settings = NO_VARIANCE.model_copy(update={"max_legs": 3})
    plan = plan_for([make_account("acc-1"), make_account("acc-2")], settings=settings)
    assert len(plan.legs) == 2
    assert plan.reserve == []
    assert plan.denials == []


def test_reserve_excludes_accounts_denied_for_other_reasons():
    accounts = [
        make_account("acc-1"),
        make_account("acc-2"),
        make_account("acc-3", status=AccountStatus.PAUSED),
        make_account("acc-4", free_margin=Decimal("5")),
    ]
    settings = NO_VARIANCE.model_copy(update={"max_legs": 1})
    plan = plan_for(accounts, settings=settings)
    assert len(plan.legs) == 1
    assert len(plan.reserve) == 1
    assert {plan.legs[0].account_id, plan.reserve[0]} == {"acc-1", "acc-2"}
    assert denial_of(plan, "acc-3").reason is DenialReason.PAUSED
    assert denial_of(plan, "acc-4").reason is DenialReason.INSUFFICIENT_MARGIN


# --------------------------------------------------------------------------------------------
# Sizing


def test_sizing_formula_worked_by_hand():
    # risk 10,000 × 1 % = 100; per lot |1.0850 − 1.0820| / 0.00001 × 1 = 300;
    # base 100 / 300 = 0.333333…; no drawdown, no correlation, no variance → 0.33 lots.
    leg = only_leg(plan_for([make_account("acc-1")]))
    size = leg.size
    assert size.equity == Decimal("10000")
    assert size.risk_per_trade == Decimal("0.01")
    assert size.risk_amount == Decimal("100")
    assert size.per_lot_risk == Decimal("300")
    assert size.base_lots == Decimal("0.333333")
    assert size.drawdown == Decimal("0")
    assert size.drawdown_factor == Decimal("1")
    assert size.correlated_accounts == 1
    assert size.correlation_factor == Decimal("1")
    assert size.variance_factor == Decimal("1")
    assert size.target_lots == Decimal("0.333333")
    assert size.budget_cap_lots == Decimal("1.666667")  # 500 / 300
    assert size.margin_cap_lots == Decimal("10")  # 10,000 / 1,000
    assert size.max_lots == Decimal("10")
    assert size.capped_lots == Decimal("0.333333")
    assert size.binding == "target"
    assert size.final_lots == Decimal("0.33")
    assert leg.quantity == Decimal("0.33")
    assert leg.risk_amount == Decimal("99")  # 0.33 × 300
    assert leg.margin == Decimal("330")  # 0.33 × 1,000


def test_sell_signal_sizes_like_the_mirrored_buy():
    signal = make_signal(side=Side.SELL, entry=Decimal("1.0820"), stop=Decimal("1.0850"))
    leg = only_leg(plan_for([make_account("acc-1")], signal=signal))
    assert leg.size.per_lot_risk == Decimal("300")
    assert leg.quantity == Decimal("0.33")


def test_drawdown_factor_shrinks_size_in_proportion_to_drawdown_used():
    # 5 % down with a 10 % limit → factor 0.5; 9,500 × 1 % / 300 = 0.316667 → 0.158333 → 0.15.
    account = make_account("acc-1", equity=Decimal("9500"), peak_equity=Decimal("10000"))
    leg = only_leg(plan_for([account]))
    assert leg.size.drawdown == Decimal("0.05")
    assert leg.size.drawdown_factor == Decimal("0.5")
    assert leg.size.target_lots == Decimal("0.158333")
    assert leg.quantity == Decimal("0.15")


def test_equity_above_peak_counts_as_no_drawdown():
    account = make_account("acc-1", equity=Decimal("10500"), peak_equity=Decimal("10000"))
    leg = only_leg(plan_for([account]))
    assert leg.size.drawdown == Decimal("0")
    assert leg.size.drawdown_factor == Decimal("1")
    assert leg.quantity == Decimal("0.35")  # 105 / 300 = 0.35


def test_two_correlated_accounts_are_each_sized_by_one_over_sqrt_two():
    accounts = [make_account("acc-1"), make_account("acc-2"), make_account("acc-3")]
    correlation = make_correlation({"acc-1": "g1", "acc-2": "g1", "acc-3": None})
    plan = plan_for(accounts, correlation=correlation)
    for account_id in ("acc-1", "acc-2"):
        leg = leg_of(plan, account_id)
        assert leg.size.correlated_accounts == 2
        assert leg.size.correlation_factor == Decimal("0.707107")
        assert leg.quantity == Decimal("0.23")  # 0.333333 × 0.707107 = 0.2357
    alone = leg_of(plan, "acc-3")
    assert alone.size.correlated_accounts == 1
    assert alone.size.correlation_factor == Decimal("1")
    assert alone.quantity == Decimal("0.33")


def test_four_correlated_accounts_are_each_sized_by_one_half():
    accounts = [make_account(f"acc-{i}") for i in range(1, 5)]
    correlation = make_correlation({a.account_id: "g1" for a in accounts})
    plan = plan_for(accounts, correlation=correlation)
    assert len(plan.legs) == 4
    for leg in plan.legs:
        assert leg.size.correlated_accounts == 4
        assert leg.size.correlation_factor == Decimal("0.5")
        assert leg.quantity == Decimal("0.16")  # 0.333333 × 0.5 = 0.1667


def test_correlation_factor_counts_only_eligible_group_members():
    accounts = [
        make_account("acc-1"),
        make_account("acc-2"),
        make_account("acc-3", status=AccountStatus.PAUSED),
    ]
    correlation = make_correlation({"acc-1": "g1", "acc-2": "g1", "acc-3": "g1"})
    plan = plan_for(accounts, correlation=correlation)
    assert {leg.size.correlated_accounts for leg in plan.legs} == {2}


def test_account_with_insufficient_correlation_history_is_sized_as_uncorrelated():
    accounts = [make_account("acc-1"), make_account("acc-2")]
    correlation = make_correlation({"acc-1": "g1", "acc-2": "g1"}, insufficient=["acc-2"])
    plan = plan_for(accounts, correlation=correlation)
    for leg in plan.legs:
        assert leg.size.correlated_accounts == 1
        assert leg.size.correlation_factor == Decimal("1")
        assert leg.delay.group is None


def test_size_rounds_down_to_lot_step_even_just_below_the_next_step():
    # 10,197 × 1 % = 101.97 / 300 = 0.3399 lots: rounds down to 0.33, never up to 0.34.
    account = make_account("acc-1", equity=Decimal("10197"), peak_equity=Decimal("10197"))
    leg = only_leg(plan_for([account]))
    assert leg.size.target_lots == Decimal("0.3399")
    assert leg.quantity == Decimal("0.33")


def test_size_rounds_down_to_a_coarse_lot_step():
    account = make_account("acc-1", equity=Decimal("29970"), peak_equity=Decimal("29970"))
    spec = make_spec(lot_step=Decimal("0.1"), min_lot=Decimal("0.1"))
    leg = only_leg(plan_for([account], specs=[spec]))
    assert leg.size.target_lots == Decimal("0.999")
    assert leg.quantity == Decimal("0.9")


def test_size_below_a_whole_lot_step_of_one_is_denied_rather_than_rounded_up():
    account = make_account("acc-1", equity=Decimal("29970"), peak_equity=Decimal("29970"))
    spec = make_spec(lot_step=Decimal("1"), min_lot=Decimal("1"))
    denial = only_denial(plan_for([account], specs=[spec]))
    assert denial.reason is DenialReason.SIZE_BELOW_MIN_LOT


def test_size_is_clipped_to_the_account_max_lots():
    account = make_account("acc-1", max_lots=Decimal("0.25"))
    leg = only_leg(plan_for([account]))
    assert leg.quantity == Decimal("0.25")
    assert leg.size.binding == "max_lots"
    assert leg.size.max_lots == Decimal("0.25")


def test_size_is_clipped_to_the_spec_max_lot():
    leg = only_leg(plan_for([make_account("acc-1")], specs=[make_spec(max_lot=Decimal("0.15"))]))
    assert leg.quantity == Decimal("0.15")
    assert leg.size.binding == "max_lots"


def test_max_lots_off_the_lot_step_is_rounded_down_to_the_step():
    account = make_account("acc-1", max_lots=Decimal("0.25"))
    spec = make_spec(lot_step=Decimal("0.1"), min_lot=Decimal("0.1"))
    leg = only_leg(plan_for([account], specs=[spec]))
    assert leg.size.max_lots == Decimal("0.2")
    assert leg.quantity == Decimal("0.2")


def test_size_variance_stays_within_its_bound():
    settings = plan_settings(size_variance=Decimal("0.10"))
    plan = plan_for([make_account(f"acc-{i}") for i in range(20)], settings=settings)
    factors = [leg.size.variance_factor for leg in plan.legs]
    assert len(factors) == 20
    assert all(Decimal("0.9") <= f <= Decimal("1.1") for f in factors)
    assert len(set(factors)) > 1


# --------------------------------------------------------------------------------------------
# Identity and determinism


def test_client_order_id_is_signal_account_and_first_business_sequence():
    leg = only_leg(plan_for([make_account("acc-1")], signal=make_signal(signal_id="sig-42")))
    assert leg.client_order_id == "sig-42:acc-1:1"


def test_same_inputs_give_an_identical_plan():
    accounts = [make_account(f"acc-{i}") for i in range(10)]
    correlation = make_correlation(
        {a.account_id: ("g1" if i < 4 else None) for i, a in enumerate(accounts)}
    )
    settings = plan_settings(max_legs=7)
    first = plan_for(accounts, correlation=correlation, settings=settings)
    second = plan_for(accounts, correlation=correlation, settings=settings)
    assert first == second
    assert first.model_dump_json() == second.model_dump_json()


def test_account_order_in_the_snapshot_does_not_change_the_plan():
    accounts = [make_account(f"acc-{i}") for i in range(10)]
    settings = plan_settings(max_legs=7)
    assert plan_for(accounts, settings=settings) == plan_for(accounts[::-1], settings=settings)


def test_different_signal_id_gives_a_different_seed():
    first = plan_for([make_account("acc-1")], signal=make_signal(signal_id="sig-1"))
    second = plan_for([make_account("acc-1")], signal=make_signal(signal_id="sig-2"))
    assert first.seed == plan_seed("sig-1", 1)
    assert second.seed == plan_seed("sig-2", 1)
    assert first.seed != second.seed


def test_different_plan_version_gives_a_different_seed():
    assert plan_seed("sig-1", 1) != plan_seed("sig-1", 2)
    plan = plan_for(
        [make_account("acc-1")], settings=NO_VARIANCE.model_copy(update={"plan_version": 2})
    )
    assert plan.plan_version == 2
    assert plan.seed == plan_seed("sig-1", 2)


def test_plan_records_signal_and_planning_time():
    plan = plan_for([make_account("acc-1")], signal=make_signal(signal_id="sig-7"))
    assert plan.signal_id == "sig-7"
    assert plan.planned_at == NOW


# --------------------------------------------------------------------------------------------
# Scheduling


def test_legs_are_ordered_by_delay_and_numbered_from_one():
    plan = plan_for([make_account(f"acc-{i}") for i in range(12)])
    delays = [leg.delay_ms for leg in plan.legs]
    assert delays == sorted(delays)
    assert [leg.sequence for leg in plan.legs] == list(range(1, 13))
    assert all(leg.delay_ms == leg.delay.delay_ms for leg in plan.legs)


def test_delays_stay_within_configured_bounds():
    settings = NO_VARIANCE.model_copy(update={"delay_min_ms": 2_000, "delay_max_ms": 3_000})
    plan = plan_for([make_account(f"acc-{i}") for i in range(12)], settings=settings)
    assert all(2_000 <= leg.delay_ms <= 3_000 for leg in plan.legs)


def test_uncorrelated_leg_records_no_group_and_no_gap():
    leg = only_leg(plan_for([make_account("acc-1")]))
    assert leg.delay.group is None
    assert leg.delay.group_size == 1
    assert leg.delay.effective_gap_ms == 0


def test_correlated_accounts_are_spaced_by_the_minimum_gap():
    settings = NO_VARIANCE.model_copy(
        update={"delay_min_ms": 1_000, "delay_max_ms": 30_000, "correlated_min_gap_ms": 5_000}
    )
    accounts = [make_account(f"acc-{i}") for i in range(4)]
    correlation = make_correlation({a.account_id: "g1" for a in accounts})
    plan = plan_for(accounts, correlation=correlation, settings=settings)
    delays = sorted(leg.delay_ms for leg in plan.legs)
    assert all(b - a >= 5_000 for a, b in pairwise(delays))
    for leg in plan.legs:
        assert leg.delay.group == "g1"
        assert leg.delay.group_size == 4
        assert leg.delay.effective_gap_ms == 5_000


def test_too_large_correlated_group_shrinks_the_gap_to_fit_the_bounds_and_records_it():
    # 3 accounts need 2 × 5,000 ms but the window is only 4,000 ms: gap shrinks to 2,000 ms.
    settings = NO_VARIANCE.model_copy(
        update={"delay_min_ms": 1_000, "delay_max_ms": 5_000, "correlated_min_gap_ms": 5_000}
    )
    accounts = [make_account(f"acc-{i}") for i in range(3)]
    correlation = make_correlation({a.account_id: "g1" for a in accounts})
    plan = plan_for(accounts, correlation=correlation, settings=settings)
    delays = sorted(leg.delay_ms for leg in plan.legs)
    assert all(1_000 <= d <= 5_000 for d in delays)
    assert all(b - a >= 2_000 for a, b in pairwise(delays))
    assert {leg.delay.effective_gap_ms for leg in plan.legs} == {2_000}
    assert {leg.delay.group_size for leg in plan.legs} == {3}

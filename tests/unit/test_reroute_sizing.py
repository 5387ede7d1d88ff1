"""Properties of a reroute's sizing over random pairs of contracts and account limits: it moves
risk, not lots. Whatever the two contracts, a target never risks more at the stop than the
failed order did (at most the reroute fraction of it), never more than its own risk per trade,
budget, margin or max lots allow, always a multiple of its lot step; and what one target cannot
take goes on to the next."""

from __future__ import annotations

from decimal import Context, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.domain.book import AccountSnapshot, SymbolSpec
from orchestrator.domain.planning import (
    CARRIED_RISK,
    RerouteSizing,
    commitment,
    floor_to_step,
    per_lot_risk,
    size_order,
)
from orchestrator.domain.signal import Signal
from tests.unit.builders import make_account, make_signal, make_spec


def cents(low: int, high: int) -> st.SearchStrategy[Decimal]:
    return st.integers(low, high).map(lambda c: Decimal(c) / 100)


LOT_STEP = st.sampled_from([Decimal("0.01"), Decimal("0.1"), Decimal("1")])
TICK_SIZE = st.sampled_from([Decimal("0.00001"), Decimal("0.001"), Decimal("0.01"), Decimal(1)])
TICK_VALUE = st.sampled_from(
    [Decimal("0.1"), Decimal("0.5"), Decimal(1), Decimal("6.5"), Decimal(10), Decimal(100)]
)
"""From a micro contract to gold at 100 oz a lot: per-lot value differs by up to 1,000×."""


@st.composite
def contracts(draw: st.DrawFn, broker: str) -> SymbolSpec:
    step = draw(LOT_STEP)
    return make_spec(
        broker=broker,
        symbol="X",
        tick_size=draw(TICK_SIZE),
        tick_value=draw(TICK_VALUE),
        lot_step=step,
        min_lot=step * draw(st.integers(1, 3)),
        max_lot=step * draw(st.integers(3, 100_000)),
        margin_per_lot=draw(cents(0, 500_000)),
    )


@st.composite
def accounts(draw: st.DrawFn, account_id: str, broker: str) -> AccountSnapshot:
    equity = draw(cents(100_000, 10_000_000))
    budget = draw(cents(0, 500_000))
    return make_account(
        account_id,
        broker=broker,
        broker_symbol="X",
        equity=equity,
        peak_equity=equity * draw(st.sampled_from([Decimal(1), Decimal("1.02"), Decimal("1.05")])),
        balance=equity,
        free_margin=draw(cents(0, 10_000_000)),
        risk_per_trade=Decimal(draw(st.integers(10, 300))) / 10_000,
        daily_loss_budget=budget,
        realized_loss_today=budget * Decimal(draw(st.integers(0, 90))) / 100,
        max_drawdown=Decimal("0.10"),
        max_lots=Decimal(draw(st.integers(1, 5_000))) / 10,
    )


@st.composite
def signals(draw: st.DrawFn) -> Signal:
    entry = Decimal(draw(st.integers(100_000, 500_000))) / 100
    distance = Decimal(draw(st.integers(1, 5_000))) / 100
    return make_signal(symbol="X", entry=entry, stop=entry - distance)


@st.composite
def reroutes(draw: st.DrawFn) -> tuple[Signal, Decimal, list[tuple[AccountSnapshot, SymbolSpec]]]:
    """A failed order's risk and up to four targets at brokers with their own contracts."""
    signal = draw(signals())
    origin = draw(contracts("origin"))
    lots = origin.lot_step * draw(st.integers(1, 10_000))
    original_risk, _ = commitment(signal, origin, lots)
    targets = [
        (draw(accounts(f"t{n}", f"b{n}")), draw(contracts(f"b{n}")))
        for n in range(draw(st.integers(1, 4)))
    ]
    return signal, original_risk, targets


@st.composite
def reroutes_with_room(
    draw: st.DrawFn,
) -> tuple[Signal, Decimal, list[tuple[AccountSnapshot, SymbolSpec]]]:
    """As :func:`reroutes`, but each contract's value per lot is drawn against its account's
    risk per trade (from a fraction of one lot step to thousands of them), so most targets can
    take something and the rest moving on is exercised, not only denials: with contracts drawn
    independently of the accounts (:func:`reroutes`), about three cases in four place nothing.
    """
    signal = draw(signals())
    ticks = draw(st.sampled_from([Decimal("0.00001"), Decimal("0.01"), Decimal(1)]))

    def valued(broker: str, lot_risk: Decimal) -> SymbolSpec:
        spec = draw(contracts(broker))
        # tick value so that one lot risks about ``lot_risk`` at the stop, to 8 significant
        # digits as a broker states it (so risks add up exactly, as they do in the product).
        tick_value = EIGHT_DIGITS.create_decimal(lot_risk * ticks / (signal.entry - signal.stop))
        return spec.model_copy(update={"tick_size": ticks, "tick_value": tick_value})

    origin = valued("origin", draw(cents(100, 1_000_000)))
    lots = origin.lot_step * draw(st.integers(1, 2_000))
    original_risk, _ = commitment(signal, origin, lots)
    targets = []
    for n in range(draw(st.integers(1, 4))):
        account = draw(accounts(f"t{n}", f"b{n}"))
        step = draw(LOT_STEP)
        own = account.equity * account.limits.risk_per_trade
        steps = Decimal(draw(st.integers(1, 20_000))) / 10  # 0.1 to 2,000 lot steps
        spec = valued(f"b{n}", own / (step * steps)).model_copy(
            update={"lot_step": step, "min_lot": step, "max_lot": step * 100_000}
        )
        targets.append((account, spec))
    return signal, original_risk, targets


EIGHT_DIGITS = Context(prec=8)

FRACTION = st.sampled_from([Decimal("0.95"), Decimal("0.5"), Decimal(1)])


@settings(max_examples=400, deadline=None)
@given(case=reroutes(), fraction=FRACTION)
def test_a_reroute_moves_risk_within_every_limit_of_every_target(
    case: tuple[Signal, Decimal, list[tuple[AccountSnapshot, SymbolSpec]]], fraction: Decimal
) -> None:
    check_reroute(case, fraction)


@settings(max_examples=400, deadline=None)
@given(case=reroutes_with_room(), fraction=FRACTION)
def test_a_reroute_to_targets_with_room_moves_risk_within_every_limit_of_every_target(
    case: tuple[Signal, Decimal, list[tuple[AccountSnapshot, SymbolSpec]]], fraction: Decimal
) -> None:
    check_reroute(case, fraction)


def check_reroute(
    case: tuple[Signal, Decimal, list[tuple[AccountSnapshot, SymbolSpec]]], fraction: Decimal
) -> None:
    signal, original_risk, targets = case
    sizing = RerouteSizing(original_risk=original_risk, fraction=fraction)
    total = Decimal(0)
    for account, spec in targets:
        if sizing.done:
            break
        remaining_before = sizing.remaining
        decision = sizing.size(signal, account, spec)
        assert decision.rationale.carried_risk is not None
        lots = decision.lots
        if decision.denial is not None:
            assert lots == 0
            continue
        lot_risk = per_lot_risk(signal, spec)
        risk = lots * lot_risk
        # A multiple of the target's own lot step, within its min and max lot.
        assert lots % spec.lot_step == 0
        assert spec.min_lot <= lots <= min(spec.max_lot, account.limits.max_lots)
        # Never more than is left to carry of the failed order's risk.
        assert risk <= remaining_before
        # Never more than the target's own risk per trade (its drawdown factor applied) ...
        own = account.equity * account.limits.risk_per_trade * decision.rationale.drawdown_factor
        assert risk <= own
        # ... its remaining daily budget, or its free margin.
        budget = (
            account.limits.daily_loss_budget
            - account.realized_loss_today
            - account.risk_committed_today
        )
        assert risk <= budget
        assert lots * spec.margin_per_lot <= account.free_margin
        total += sizing.filled(signal, spec, decision, lots)
        if decision.rationale.binding != CARRIED_RISK:
            # Bound by a limit of this target: the rest moves on to the next one.
            assert not sizing.done
            assert sizing.remaining == remaining_before - risk
        else:
            # Bound by what was left: less than one lot step of it remains.
            assert sizing.done
            assert sizing.remaining < spec.lot_step * lot_risk
    # Whatever the contracts, never more than the fraction of the failed order's risk.
    assert total == sizing.placed <= fraction * original_risk <= original_risk


@settings(max_examples=200, deadline=None)
@given(case=reroutes())
def test_a_reroute_sized_twice_is_sized_the_same(
    case: tuple[Signal, Decimal, list[tuple[AccountSnapshot, SymbolSpec]]],
) -> None:
    """The audit re-derives a reroute by driving the same sizing with the recorded inputs."""
    signal, original_risk, targets = case

    def run() -> list[Decimal]:
        sizing = RerouteSizing(original_risk=original_risk, fraction=Decimal("0.95"))
        sizes = []
        for account, spec in targets:
            decision = sizing.size(signal, account, spec)
            sizes.append(decision.lots)
            sizing.filled(signal, spec, decision, decision.lots)
        return sizes

    assert run() == run()


def test_a_leg_and_a_reroute_are_sized_by_one_rule() -> None:
    """Without a carried risk the reroute's rule is a plan's: the same factors and caps."""
    signal, account, spec = make_signal(), make_account("a"), make_spec()
    leg = size_order(signal, account, spec)
    unbounded = size_order(signal, account, spec, carried_risk=Decimal(10**9))
    assert leg.lots == unbounded.lots > 0
    assert leg.rationale.binding == unbounded.rationale.binding
    bounded = size_order(signal, account, spec, carried_risk=leg.risk / 2)
    assert bounded.lots == floor_to_step(leg.lots / 2, spec.lot_step)
    assert bounded.rationale.binding == CARRIED_RISK

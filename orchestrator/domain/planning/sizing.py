"""Sizing: the one rule every new-risk order is sized by, a planned leg or a reroute target,
in risk at the stop through the account's own contract.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from orchestrator.domain.book import (
    AccountSnapshot,
    SymbolSpec,
)
from orchestrator.domain.planning.decisions import (
    SizeRationale,
)
from orchestrator.domain.planning.eligibility import drawdown_of, remaining_budget
from orchestrator.domain.signal import Signal
from orchestrator.domain.values import DenialReason

_ONE = Decimal(1)
_ZERO = Decimal(0)
_FACTOR_PLACES = Decimal("0.000001")


_VARIANCE_RESOLUTION = 10_000


def floor_to_step(lots: Decimal, step: Decimal) -> Decimal:
    """Round *down* to a multiple of ``step``; never up."""
    if lots <= 0:
        return _ZERO
    return (lots / step).to_integral_value(rounding=ROUND_FLOOR) * step


def per_lot_risk(signal: Signal, spec: SymbolSpec) -> Decimal:
    """Account-currency loss of one lot if the stop is hit."""
    return abs(signal.entry - signal.stop) / spec.tick_size * spec.tick_value


@dataclass(frozen=True, slots=True)
class SizeDecision:
    rationale: SizeRationale
    denial: DenialReason | None
    detail: str

    @property
    def lots(self) -> Decimal:
        """The size decided: a multiple of the lot step within [min lot, max lot], or 0."""
        return self.rationale.final_lots

    @property
    def risk(self) -> Decimal:
        """Account-currency risk at the stop of the size decided."""
        return self.rationale.final_lots * self.rationale.per_lot_risk


def size_order(
    signal: Signal,
    account: AccountSnapshot,
    spec: SymbolSpec,
    *,
    correlated_accounts: int = 1,
    variance_factor: Decimal = _ONE,
    carried_risk: Decimal | None = None,
) -> SizeDecision:
    """The one sizing rule of every new-risk order, a planned leg or a reroute: risk-based size
    with every factor and cap recorded, rounded down to the lot step.

    The target is the account's own risk per trade (equity × risk per trade / per-lot risk at
    the stop, through the account's own contract) times the drawdown, correlation and variance
    factors. It is then capped by the remaining daily budget, free margin and max lots, and,
    when ``carried_risk`` is given (a reroute: the share of a failed order's risk at the stop
    that moves on), by the lots that carry at most that much risk here. Rounded *down*; below
    the min lot it is denied, with the reason of the cap that bound."""
    limits = account.limits
    risk_amount = account.equity * limits.risk_per_trade
    lot_risk = per_lot_risk(signal, spec)
    base_lots = risk_amount / lot_risk

    drawdown = drawdown_of(account)
    drawdown_factor = max(_ZERO, _ONE - drawdown / limits.max_drawdown).quantize(_FACTOR_PLACES)
    correlation_factor = (
        (_ONE / Decimal(correlated_accounts).sqrt()).quantize(_FACTOR_PLACES)
        if correlated_accounts > 1
        else _ONE
    )
    target = base_lots * drawdown_factor * correlation_factor * variance_factor

    budget_cap, margin_cap, max_lots = _caps(account, spec, lot_risk)
    caps = [
        ("target", target),
        ("daily_risk_budget", budget_cap),
        ("free_margin", margin_cap),
        ("max_lots", max_lots),
    ]
    carried_cap = None if carried_risk is None else max(carried_risk, _ZERO) / lot_risk
    if carried_cap is not None:
        caps.append((CARRIED_RISK, carried_cap))
    binding, capped = _binding(*caps)
    final = floor_to_step(capped, spec.lot_step)

    denial: DenialReason | None = None
    detail = ""
    if final < spec.min_lot:
        denial = _below_min_lot_reason(binding)
        detail = (
            f"size {_q(capped)} lots (bound by {binding}; drawdown factor {drawdown_factor}, "
            f"correlation factor {correlation_factor}, variance {variance_factor}) rounds "
            f"down to {final}, below the minimum {spec.min_lot}"
        )
        final = _ZERO

    rationale = SizeRationale(
        equity=account.equity,
        risk_per_trade=limits.risk_per_trade,
        risk_amount=_q(risk_amount),
        per_lot_risk=_q(lot_risk),
        base_lots=_q(base_lots),
        drawdown=drawdown.quantize(_FACTOR_PLACES),
        drawdown_factor=drawdown_factor,
        correlated_accounts=correlated_accounts,
        correlation_factor=correlation_factor,
        variance_factor=variance_factor,
        target_lots=_q(target),
        budget_cap_lots=_q(budget_cap),
        margin_cap_lots=_q(margin_cap),
        max_lots=max_lots,
        carried_risk=None if carried_risk is None else _q(carried_risk),
        carried_cap_lots=None if carried_cap is None else _q(carried_cap),
        capped_lots=_q(capped),
        binding=binding,
        final_lots=final,
    )
    return SizeDecision(rationale=rationale, denial=denial, detail=detail)


CARRIED_RISK = "carried_risk"
"""The binding cap of a reroute whose size the carried risk decided: what is left of it after
rounding is less than one lot step here, so it does not move on."""


def _caps(
    account: AccountSnapshot, spec: SymbolSpec, lot_risk: Decimal
) -> tuple[Decimal, Decimal, Decimal]:
    """Lots allowed by the remaining daily risk budget, by free margin, and by max lots."""
    budget_cap = remaining_budget(account) / lot_risk
    margin_cap = (
        account.free_margin / spec.margin_per_lot if spec.margin_per_lot > 0 else spec.max_lot
    )
    max_lots = floor_to_step(min(account.limits.max_lots, spec.max_lot), spec.lot_step)
    return budget_cap, margin_cap, max_lots


def _binding(*caps: tuple[str, Decimal]) -> tuple[str, Decimal]:
    """The smallest cap and its name: the constraint that decides the size."""
    return min(caps, key=lambda cap: cap[1])


def _below_min_lot_reason(binding: str) -> DenialReason:
    """Below the min lot because of the budget or margin cap is that denial, not a size one."""
    return {
        "daily_risk_budget": DenialReason.RISK_BUDGET_EXHAUSTED,
        "free_margin": DenialReason.INSUFFICIENT_MARGIN,
    }.get(binding, DenialReason.SIZE_BELOW_MIN_LOT)


def quantize(value: Decimal) -> Decimal:
    """Rationale and commitment figures to 6 places: enough to explain, small enough to read."""
    return value.quantize(_FACTOR_PLACES)


_q = quantize


def draw_variance(rng: random.Random, bound: Decimal) -> Decimal:
    """A size factor uniformly in [1 − bound, 1 + bound], at 1/10,000 resolution."""
    if bound == 0:
        return _ONE
    step = rng.randint(-_VARIANCE_RESOLUTION, _VARIANCE_RESOLUTION)
    return (_ONE + bound * Decimal(step) / _VARIANCE_RESOLUTION).quantize(_FACTOR_PLACES)


def commitment(signal: Signal, spec: SymbolSpec, quantity: Decimal) -> tuple[Decimal, Decimal]:
    """What an order of ``quantity`` lots commits against the account's limits: its risk at the
    stop (against the daily budget) and its margin, both in the account's currency."""
    return _q(quantity * per_lot_risk(signal, spec)), _q(quantity * spec.margin_per_lot)


NEGLIGIBLE_RISK = Decimal("0.01")
"""Risk left over that a reroute does not move on (a hundredth of the account currency)."""


@dataclass
class RerouteSizing:
    """What is left of a failed order's risk at the stop, moving on from target to target.

    The reroute child and the audit drive it alike: :meth:`size` sizes the next target with
    :func:`size_order`, its carried risk what is still unplaced; :meth:`filled` books what the
    target's orders filled. The carried risk is the reroute fraction of the failed order's
    risk, never more, so a reroute never risks more than the order it replaces."""

    original_risk: Decimal
    fraction: Decimal
    placed: Decimal = _ZERO
    """Risk at the stop that filled at earlier targets, each in its own account's currency."""
    done: bool = False
    """A target the carried risk sized filled all of it: the rest, if any, is less than one of
    that target's lot steps (the reroute is ``PLACED``; the rest still moves on)."""

    @property
    def carried(self) -> Decimal:
        return self.original_risk * self.fraction

    @property
    def remaining(self) -> Decimal:
        return max(self.carried - self.placed, _ZERO)

    @property
    def placed_all(self) -> bool:
        """Less than a hundredth of the currency is left to move on to the next target."""
        return self.remaining < NEGLIGIBLE_RISK

    def size(self, signal: Signal, account: AccountSnapshot, spec: SymbolSpec) -> SizeDecision:
        """The next target's size: its own limits and factors, at most the remaining risk."""
        return size_order(signal, account, spec, carried_risk=self.remaining)

    def filled(
        self, signal: Signal, spec: SymbolSpec, decision: SizeDecision, lots: Decimal
    ) -> Decimal:
        """Book ``lots`` filled at a target sized by ``decision``; the risk they carry."""
        risk = lots * per_lot_risk(signal, spec)
        self.placed += risk
        if decision.rationale.binding == CARRIED_RISK and lots >= decision.lots:
            self.done = True
        return risk

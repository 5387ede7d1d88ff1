"""Pure planning: eligibility, sizing and scheduling of one signal across a book of accounts.

No I/O, no clock, no global randomness: the same signal, snapshot, correlation result, settings
and ``now`` give the same plan, byte for byte, on every run and on replay. Workflow code calls
:func:`plan_signal` directly; ``starter.py plan`` calls the same function for a dry run.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from orchestrator.domain.models import (
    AccountCorrelation,
    AccountSnapshot,
    AccountStatus,
    BookSnapshot,
    CorrelationRequest,
    CorrelationResult,
    DelayRationale,
    Denial,
    DenialReason,
    Plan,
    PlannedLeg,
    PlanSettings,
    Signal,
    SizeRationale,
    SymbolSpec,
    spec_key,
)

RULES_VERSION = 2
"""The version of the planning rules in this module. Bump it with every intended change to what
a plan decides (eligibility, sizing, rounding, scheduling): the signal workflow records it in its
history (:func:`rules_marker`), and ``starter.py audit`` re-derives a recorded plan only under
the rules it was made with, so an intended change of rules is told apart from drift."""

_RULES_MARKER = "planning-rules-v"

_VARIANCE_RESOLUTION = 10_000
_ONE = Decimal(1)
_ZERO = Decimal(0)
_FACTOR_PLACES = Decimal("0.000001")


def rules_marker(version: int | None = None) -> str:
    """The patch id the signal workflow records (``workflow.deprecate_patch``) when it plans: the
    current rules' unless ``version`` says otherwise."""
    return f"{_RULES_MARKER}{RULES_VERSION if version is None else version}"


def rules_version_of(marker: str) -> int | None:
    """The rules version a recorded patch id stands for, or None for any other patch."""
    if not marker.startswith(_RULES_MARKER):
        return None
    number = marker.removeprefix(_RULES_MARKER)
    return int(number) if number.isdigit() else None


def plan_seed(signal_id: str, plan_version: int) -> int:
    """The plan's random seed: a stable function of the signal id and plan version."""
    digest = hashlib.sha256(f"{signal_id}|v{plan_version}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def client_order_id(signal_id: str, account_id: str, business_sequence: int) -> str:
    """Deterministic client order id: the same leg and sequence always gives the same id."""
    return f"{signal_id}:{account_id}:{business_sequence}"


def floor_to_step(lots: Decimal, step: Decimal) -> Decimal:
    """Round *down* to a multiple of ``step``; never up."""
    if lots <= 0:
        return _ZERO
    return (lots / step).to_integral_value(rounding=ROUND_FLOOR) * step


def per_lot_risk(signal: Signal, spec: SymbolSpec) -> Decimal:
    """Account-currency loss of one lot if the stop is hit."""
    return abs(signal.entry - signal.stop) / spec.tick_size * spec.tick_value


# --------------------------------------------------------------------------------------------
# Eligibility


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
    drawdown = _drawdown(account)
    if drawdown >= account.limits.max_drawdown:
        return deny(
            DenialReason.DRAWDOWN_LIMIT,
            f"drawdown {_pct(drawdown)} reached the limit {_pct(account.limits.max_drawdown)}",
        )
    remaining = _remaining_budget(account)
    if remaining <= 0:
        return deny(
            DenialReason.RISK_BUDGET_EXHAUSTED,
            f"daily loss budget {account.limits.daily_loss_budget} {account.currency} is used",
        )
    if account.free_margin <= 0:
        return deny(DenialReason.INSUFFICIENT_MARGIN, "no free margin")
    return None


def _drawdown(account: AccountSnapshot) -> Decimal:
    if account.peak_equity <= 0:
        return _ONE
    return max(_ZERO, (account.peak_equity - account.equity) / account.peak_equity)


def _remaining_budget(account: AccountSnapshot) -> Decimal:
    return (
        account.limits.daily_loss_budget
        - account.realized_loss_today
        - account.risk_committed_today
    )


def _pct(value: Decimal) -> str:
    return f"{(value * 100).quantize(Decimal('0.01'))} %"


# --------------------------------------------------------------------------------------------
# Sizing


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

    drawdown = _drawdown(account)
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
    budget_cap = _remaining_budget(account) / lot_risk
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


# --------------------------------------------------------------------------------------------
# Scheduling


def schedule_delays(
    rng: random.Random,
    account_ids: list[str],
    groups: dict[str, str | None],
    settings: PlanSettings,
) -> dict[str, DelayRationale]:
    """A delay per account within [min, max]; members of one correlated group are spread so
    consecutive ones are at least the correlated gap apart.

    When a group is too large for the window ((k−1) × gap > max − min) the gap is shrunk to fit
    and the rationale records the gap actually kept, so bounds are never exceeded silently.
    """
    lo, hi = settings.delay_min_ms, settings.delay_max_ms
    members: dict[str, list[str]] = defaultdict(list)
    singles: list[str] = []
    for account_id in sorted(account_ids):
        group = groups.get(account_id)
        if group is None:
            singles.append(account_id)
        else:
            members[group].append(account_id)
    for group in [g for g, m in members.items() if len(m) == 1]:
        singles.extend(members.pop(group))
    singles.sort()

    result: dict[str, DelayRationale] = {}
    for account_id in singles:
        result[account_id] = DelayRationale(
            delay_ms=rng.randint(lo, hi), group=None, group_size=1, effective_gap_ms=0
        )
    for group in sorted(members):
        ids = members[group]
        k = len(ids)
        gap = min(settings.correlated_min_gap_ms, (hi - lo) // (k - 1))
        draws = sorted(rng.randint(lo, hi - (k - 1) * gap) for _ in range(k))
        order = list(ids)
        rng.shuffle(order)
        for i, account_id in enumerate(order):
            result[account_id] = DelayRationale(
                delay_ms=draws[i] + i * gap, group=group, group_size=k, effective_gap_ms=gap
            )
    return result


# --------------------------------------------------------------------------------------------
# The plan


def correlation_request(snapshot: BookSnapshot, settings: PlanSettings) -> CorrelationRequest:
    """What to correlate for a plan: every account of the snapshot, with the plan's settings."""
    return correlation_settings(settings).model_copy(
        update={"account_ids": [a.account_id for a in snapshot.accounts]}
    )


def correlation_settings(settings: PlanSettings) -> CorrelationRequest:
    """The plan's correlation settings, for accounts still to be named (the snapshot's)."""
    return CorrelationRequest(
        lookback_days=settings.correlation_lookback_days,
        threshold=settings.correlation_threshold,
        min_observations=settings.correlation_min_observations,
    )


def plan_signal(
    signal: Signal,
    snapshot: BookSnapshot,
    correlation: CorrelationResult,
    settings: PlanSettings,
    now: datetime,
) -> Plan:
    """Decide, for every account of the snapshot, a leg or a denial with its reason."""
    seed = plan_seed(signal.signal_id, settings.plan_version)
    rng = random.Random(seed)
    denials: list[Denial] = []
    accounts = sorted(snapshot.accounts, key=lambda a: a.account_id)

    if snapshot.halted:
        denials = [
            Denial(account_id=a.account_id, reason=DenialReason.HALTED, detail="trading halted")
            for a in accounts
        ]
        return Plan(
            signal_id=signal.signal_id,
            plan_version=settings.plan_version,
            seed=seed,
            planned_at=now,
            legs=[],
            denials=denials,
            reserve=[],
        )

    eligible: list[AccountSnapshot] = []
    for account in accounts:
        denial = check_eligibility(signal, account, snapshot.specs, settings, now)
        if denial is None:
            eligible.append(account)
        else:
            denials.append(denial)

    # Reserve-only accounts take part only if an order fails, so they do not make a signal
    # "multi-account" for a mandate that forbids it.
    if len([a for a in eligible if not a.reserve_only]) > 1:
        solo = [a for a in eligible if a.mandate.exclude_from_multi_account]
        for account in solo:
            denials.append(
                Denial(
                    account_id=account.account_id,
                    reason=DenialReason.MANDATE_FORBIDS,
                    detail="mandate excludes coordinated multi-account signals",
                )
            )
        eligible = [a for a in eligible if not a.mandate.exclude_from_multi_account]

    corr = correlation.by_account()
    groups = {a.account_id: _group_of(corr.get(a.account_id)) for a in eligible}
    group_counts: dict[str, int] = defaultdict(int)
    for group in groups.values():
        if group is not None:
            group_counts[group] += 1

    sized: list[tuple[AccountSnapshot, SymbolSpec, SizeRationale]] = []
    for account in eligible:
        spec = snapshot.specs[spec_key(account.broker, account.broker_symbol or "")]
        group = groups[account.account_id]
        variance = draw_variance(rng, settings.size_variance)
        decision = size_order(
            signal,
            account,
            spec,
            correlated_accounts=group_counts[group] if group is not None else 1,
            variance_factor=variance,
        )
        if decision.denial is not None:
            denials.append(
                Denial(
                    account_id=account.account_id,
                    reason=decision.denial,
                    detail=decision.detail,
                    size=decision.rationale,
                )
            )
        else:
            sized.append((account, spec, decision.rationale))

    reserve: list[str] = [a.account_id for a, _, _ in sized if a.reserve_only]
    for account_id in reserve:
        denials.append(
            Denial(
                account_id=account_id,
                reason=DenialReason.NOT_SELECTED,
                detail="reserve account: used only to reroute a failed order",
            )
        )
    sized = [s for s in sized if not s[0].reserve_only]
    if settings.max_legs is not None and len(sized) > settings.max_legs:
        order = list(range(len(sized)))
        rng.shuffle(order)
        chosen = sorted(order[: settings.max_legs])
        extra = [sized[i][0].account_id for i in order[settings.max_legs :]]
        reserve = extra + reserve
        for account_id in extra:
            denials.append(
                Denial(
                    account_id=account_id,
                    reason=DenialReason.NOT_SELECTED,
                    detail=f"kept in reserve: signal capped at {settings.max_legs} legs",
                )
            )
        sized = [sized[i] for i in chosen]

    delays = schedule_delays(rng, [a.account_id for a, _, _ in sized], groups, settings)
    ordered = sorted(sized, key=lambda s: (delays[s[0].account_id].delay_ms, s[0].account_id))
    legs: list[PlannedLeg] = []
    for position, (account, spec, rationale) in enumerate(ordered, start=1):
        quantity = rationale.final_lots
        risk, margin = commitment(signal, spec, quantity)
        legs.append(
            PlannedLeg(
                sequence=position,
                account_id=account.account_id,
                broker=account.broker,
                broker_symbol=spec.symbol,
                quantity=quantity,
                client_order_id=client_order_id(signal.signal_id, account.account_id, 1),
                delay_ms=delays[account.account_id].delay_ms,
                tick_size=spec.tick_size,
                min_lot=spec.min_lot,
                lot_step=spec.lot_step,
                reroute_on_pause=account.reroute_on_pause,
                risk_amount=risk,
                margin=margin,
                size=rationale,
                delay=delays[account.account_id],
            )
        )
    denials.sort(key=lambda d: d.account_id)
    return Plan(
        signal_id=signal.signal_id,
        plan_version=settings.plan_version,
        seed=seed,
        planned_at=now,
        legs=legs,
        denials=denials,
        reserve=reserve,
        groups=_members(groups),
    )


def _members(groups: dict[str, str | None]) -> dict[str, list[str]]:
    """Group id → the eligible accounts in it, both sorted."""
    members: dict[str, list[str]] = defaultdict(list)
    for account_id, group in sorted(groups.items()):
        if group is not None:
            members[group].append(account_id)
    return dict(sorted(members.items()))


def _group_of(correlation: AccountCorrelation | None) -> str | None:
    if correlation is None or correlation.insufficient_history:
        return None
    return correlation.group


def commitment(signal: Signal, spec: SymbolSpec, quantity: Decimal) -> tuple[Decimal, Decimal]:
    """What an order of ``quantity`` lots commits against the account's limits: its risk at the
    stop (against the daily budget) and its margin, both in the account's currency."""
    return _q(quantity * per_lot_risk(signal, spec)), _q(quantity * spec.margin_per_lot)


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
    """The last target took the rest (less than one of its lot steps is left)."""

    @property
    def carried(self) -> Decimal:
        return self.original_risk * self.fraction

    @property
    def remaining(self) -> Decimal:
        return max(self.carried - self.placed, _ZERO)

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

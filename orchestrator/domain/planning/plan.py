"""The plan of one signal: for every account of the snapshot, a leg or a denial with its reason.

No I/O, no clock, no global randomness: the same signal, snapshot, correlation result, settings
and ``now`` give the same plan, byte for byte, on every run and on replay. Workflow code calls
:func:`plan_signal` directly; ``starter.py plan`` calls the same function for a dry run.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from datetime import datetime

from orchestrator.domain.book import (
    AccountSnapshot,
    BookSnapshot,
    SymbolSpec,
    spec_key,
)
from orchestrator.domain.correlation import (
    AccountCorrelation,
    CorrelationRequest,
    CorrelationResult,
)
from orchestrator.domain.ids import client_order_id
from orchestrator.domain.planning.decisions import (
    Denial,
    Plan,
    PlannedLeg,
    SizeRationale,
)
from orchestrator.domain.planning.eligibility import check_eligibility, halted_denial
from orchestrator.domain.planning.schedule import schedule_delays
from orchestrator.domain.planning.sizing import commitment, draw_variance, size_order
from orchestrator.domain.settings import PlanSettings
from orchestrator.domain.signal import Signal
from orchestrator.domain.values import DenialReason


def plan_seed(signal_id: str, plan_version: int) -> int:
    """The plan's random seed: a stable function of the signal id and plan version."""
    digest = hashlib.sha256(f"{signal_id}|v{plan_version}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


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
        denials = [halted_denial(a.account_id) for a in accounts]
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
                tick_value=spec.tick_value,
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

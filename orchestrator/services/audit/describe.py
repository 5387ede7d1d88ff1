"""The audit in plain words: each recorded event, activity and decision as one line of the
trail, and the whole audit rendered for a terminal.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from orchestrator.domain.actions import ActionReport
from orchestrator.domain.book import BookSnapshot
from orchestrator.domain.contracts.actions import ActionInput
from orchestrator.domain.contracts.operators import (
    ActionReceipt,
    ActionRecorded,
    KillSwitch,
    KillSwitchResult,
)
from orchestrator.domain.contracts.payloads import (
    CancelOrderRequest,
    CompletionInput,
    LegBatchInput,
    LegBatchResult,
    PlaceOrderRequest,
    RerouteInput,
    SettleLegRequest,
    SignalWorkflowInput,
    SliceOutcome,
)
from orchestrator.domain.contracts.positions import PositionsInput, PositionsResult
from orchestrator.domain.correlation import CorrelationResult
from orchestrator.domain.orders import OrderOutcome
from orchestrator.domain.planning.decisions import Plan
from orchestrator.domain.report import CompletionResult, RerouteResult, SignalReport
from orchestrator.domain.settings import PlanSettings, ServiceSettings
from orchestrator.domain.values import plain
from orchestrator.services.audit.document import Activity, Audit, Read, TrailEntry, ValueVerdict
from orchestrator.services.audit.positions import (
    describe_action,
    describe_keeper_input,
    describe_keeper_result,
)


def describe_start(kind: str, value: Any, identity: str) -> str:
    if isinstance(value, SignalWorkflowInput):
        s = value.signal
        return (
            f"signal {s.signal_id} received from {identity or 'unknown'}: {s.side} {s.symbol} "
            f"{s.order_type}, entry {s.entry}, stop {s.stop}"
            + (f", take profit {s.take_profit}" if s.take_profit else "")
            + "; "
            + (
                "settings pinned by the input: " + describe_settings(value.settings)
                if value.settings is not None
                else "with the worker's settings"
            )
        )
    return f"{kind} started: {describe_child_input(value)}"


def describe_settings(settings: PlanSettings) -> str:
    return (
        f"plan version {settings.plan_version}, delays {settings.delay_min_ms}-"
        f"{settings.delay_max_ms} ms, correlated gap {settings.correlated_min_gap_ms} ms, "
        f"size variance ±{settings.size_variance}"
    )


def describe_child_input(value: Any) -> str:
    if isinstance(value, PositionsInput):
        return describe_keeper_input(value)
    if isinstance(value, ActionInput):
        return describe_action(value.action)
    if isinstance(value, LegBatchInput):
        return f"{len(value.legs)} legs ({', '.join(leg.account_id for leg in value.legs)})"
    if isinstance(value, CompletionInput):
        return f"complete {value.account_id}: {value.remaining} lots remaining"
    if isinstance(value, RerouteInput):
        return (
            f"reroute {value.original_quantity} lots (risk {value.original_risk} at the stop) "
            f"from {value.from_account} ({value.reason}); candidates "
            f"{', '.join(value.candidates) or 'none'}"
        )
    return "input not recognised"


def describe_child_result(value: Any) -> str:
    if isinstance(value, PositionsResult):
        return describe_keeper_result(value)
    if isinstance(value, ActionReport):
        return f"{value.status}: {value.message}" + "".join(
            f"; {a.signal_id}/{a.account_id} {a.done}" for a in value.accounts
        )
    if isinstance(value, LegBatchResult):
        return f"{len(value.accounts)} report lines"
    if isinstance(value, CompletionResult):
        return (
            f"{value.stopped}: filled {value.filled} in {value.attempts} order(s), "
            f"unfilled {value.unfilled}, dust {value.dust}; {value.detail}"
        )
    if isinstance(value, RerouteResult):
        taken = ", ".join(
            f"{h.to_account} {h.outcome} {h.filled} lots (risk {h.risk_filled})"
            for h in value.hops
            if h.filled > 0
        )
        return (
            f"{value.outcome}: risk {value.risk_placed} of {value.risk_original} found a home "
            f"(at most {value.risk_carried}); " + (taken or "no account took it")
        )
    return "result not recognised"


def child_account(value: Any) -> str | None:
    if isinstance(value, CompletionInput):
        return value.account_id
    if isinstance(value, RerouteInput):
        return value.from_account
    return None


def describe_operator(name: str, request: dict[str, Any], how: str) -> str:
    who = request.get("operator") or "unknown"
    why = request.get("reason") or "no reason given"
    target = f" {request['account_id']}" if request.get("account_id") else ""
    extra = " (cancel working orders)" if request.get("cancel_working") else ""
    return f"operator {who}: {name}{target}{extra} ({how}); reason: {why}"


def account_of(activity: Activity) -> str | None:
    account = getattr(activity.input, "account_id", None)
    return str(account) if account is not None else None


def activity_label(activity: Activity) -> str:
    value = activity.input
    if isinstance(value, PlaceOrderRequest):
        return f"order {value.client_order_id}"
    if isinstance(value, CancelOrderRequest):
        return f"cancel {value.client_order_id}"
    return f"{activity.name} {account_of(activity) or ''}".strip()


def activity_end(event: HistoryEvent, scheduled: dict[int, Activity]) -> tuple[Activity, str]:
    t = event.event_type
    if t == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
        attrs = event.activity_task_failed_event_attributes
        return scheduled[attrs.scheduled_event_id], f"failed: {attrs.failure.message}"
    if t == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
        timed_out = event.activity_task_timed_out_event_attributes
        return scheduled[timed_out.scheduled_event_id], f"timed out: {timed_out.failure.message}"
    cancelled = event.activity_task_canceled_event_attributes
    return scheduled[cancelled.scheduled_event_id], "cancelled"


def describe_correlation(result: CorrelationResult) -> tuple[str, str, str | None]:
    groups: dict[str, list[str]] = defaultdict(list)
    for c in result.accounts:
        if c.group is not None and not c.insufficient_history:
            groups[c.group].append(c.account_id)
    short = [c.account_id for c in result.accounts if c.insufficient_history]
    text = f"correlation (threshold {result.threshold}): " + (
        "; ".join(f"group {g}: {', '.join(ids)}" for g, ids in sorted(groups.items()))
        or "no correlated groups"
    )
    if short:
        text += f"; too little history: {', '.join(short)}"
    return "correlation", text, None


def describe_activity(activity: Activity) -> tuple[str, str, str | None] | None:
    value, result = activity.input, activity.result
    if isinstance(result, BookSnapshot):
        states = defaultdict(list)
        for a in result.accounts:
            states[a.status].append(a.account_id)
        return (
            "snapshot",
            f"snapshot of {len(result.accounts)} accounts taken {result.taken_at:%H:%M:%S}, "
            f"{len(result.specs)} contract spec(s), "
            f"trading {'HALTED' if result.halted else 'open'}; "
            + ", ".join(f"{status}: {len(ids)}" for status, ids in sorted(states.items())),
            None,
        )
    if isinstance(result, CorrelationResult):
        return describe_correlation(result)
    if isinstance(result, ServiceSettings):
        return "settings", "the worker's settings: " + describe_settings(result.plan), None
    if isinstance(value, ActionReceipt) and isinstance(result, ActionRecorded):
        return (
            "operator",
            f"recorded in operator_actions: {value.action} by {value.operator} ({value.via}, "
            f"sent by {result.identity or 'an unknown client'})",
            value.target,
        )
    if isinstance(value, KillSwitch) and isinstance(result, KillSwitchResult):
        what = "thrown" if value.halted else "lifted"
        return (
            "operator",
            f"kill switch {what} by {value.operator}: persisted and sent to "
            f"{len(result.reached)} other running workflow(s)",
            None,
        )
    if isinstance(value, PlaceOrderRequest) and isinstance(result, OrderOutcome):
        return "order", describe_order(value, result), value.account_id
    if isinstance(value, CancelOrderRequest):
        ended = (
            f"{result.status}, filled {result.filled_quantity}"
            if isinstance(result, OrderOutcome)
            else "nothing at the broker"
        )
        return (
            "order",
            f"cancel {value.client_order_id} ({value.reason}): {ended}",
            value.account_id,
        )
    if isinstance(value, SettleLegRequest):
        return "settle", "leg settled: unused reservation released", value.account_id
    return None


def describe_order(request: PlaceOrderRequest, outcome: OrderOutcome) -> str:
    price = f" at {request.limit_price}" if request.limit_price is not None else ""
    text = (
        f"order {request.client_order_id}: {request.side} {request.quantity} "
        f"{request.broker_symbol} {request.order_type}{price} at {request.broker} → "
        f"{outcome.status}, filled {outcome.filled_quantity}"
    )
    if outcome.average_price is not None:
        text += f" @ {outcome.average_price}"
    if outcome.reject_text:
        text += f" ({outcome.reject_text})"
    if request.reservation is not None:
        held = request.reservation
        text += f"; reserved risk {held.risk_amount} and margin {held.margin} with it"
    return text


def describe_finish(value: Any) -> str:
    if isinstance(value, SignalReport):
        counts: dict[str, int] = defaultdict(int)
        for line in value.accounts:
            counts[line.status] += 1
        return (
            f"signal {value.status}: filled {value.filled_total} of {value.requested_total} "
            f"lots; " + ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
        )
    return f"completed: {describe_child_result(value)}"


def describe_plan(plan: Plan, read: Read) -> Iterator[TrailEntry]:
    """The plan's decisions, account by account, at the time it was made."""
    at = plan.planned_at
    wid = read.history.workflow_id
    yield TrailEntry(
        at=at,
        workflow_id=wid,
        kind="plan",
        text=f"plan v{plan.plan_version} (seed {plan.seed}): {len(plan.legs)} legs, "
        f"{len(plan.denials)} denied, reserve {', '.join(plan.reserve) or 'none'}",
    )
    for denial in plan.denials:
        yield TrailEntry(
            at=at,
            workflow_id=wid,
            kind="denied",
            account_id=denial.account_id,
            text=f"{denial.account_id} not traded: {denial.reason}: {denial.detail}",
        )
    for leg in plan.legs:
        s = leg.size
        yield TrailEntry(
            at=at,
            workflow_id=wid,
            kind="planned",
            account_id=leg.account_id,
            text=(
                f"{leg.account_id} planned {leg.quantity} lots {leg.broker_symbol} at "
                f"{leg.broker} as {leg.client_order_id}, after {leg.delay_ms} ms: equity "
                f"{s.equity} x risk {s.risk_per_trade} = {s.risk_amount} / {s.per_lot_risk} per "
                f"lot = {s.base_lots} x drawdown {s.drawdown_factor} x correlation "
                f"{s.correlation_factor} ({s.correlated_accounts} correlated) x variance "
                f"{s.variance_factor} = {s.target_lots}; bound by {s.binding}; "
                f"rounded to {s.final_lots}"
            ),
        )


def render(audit: Audit) -> list[str]:
    """The audit as lines of plain text: verdicts first, then the trail in order."""
    lines = [
        f"Audit of signal {audit.signal_id}: workflow {audit.workflow_id} (run {audit.run_id}), "
        f"{'closed' if audit.closed else 'STILL RUNNING: partial history'}",
    ]
    clean = sum(r.failure is None for r in audit.replay)
    lines.append(
        f"Replay: {clean} of {len(audit.replay)} histories replay clean against the current code"
    )
    lines += [
        f"  FAILED {r.workflow_id} ({r.workflow_type}): {r.failure}"
        for r in audit.replay
        if r.failure is not None
    ]
    v = audit.values
    recorded = v.recorded_rules_version or 1
    if v.verdict is ValueVerdict.MATCH:
        lines.append(
            f"Plan values: MATCH. {v.legs} legs and {v.denials} denials re-derived under planning "
            f"rules v{recorded}; {v.values_compared} recorded values compared, all equal"
        )
    elif v.verdict is ValueVerdict.DRIFT:
        lines.append(
            f"Plan values: DRIFT. Under the same planning rules (v{recorded}) the current code "
            f"derives {len(v.differences)} value(s) other than those recorded:"
        )
        lines += [
            f"  {d.account_id} {d.field} in {d.where}: recorded {d.recorded}, derived {d.derived}"
            for d in v.differences
        ]
    elif v.verdict is ValueVerdict.RULES_CHANGED:
        lines.append(
            f"Plan values: not compared. Planned under rules v{recorded}; this code has rules "
            f"v{v.current_rules_version} (an intended change of rules, not drift)"
        )
    else:
        lines.append("Plan values: nothing to compare yet (the history stops before the plan)")
    if audit.accounts:
        disagree = [a for a in audit.accounts if not a.agrees]
        lines.append(
            f"Fills: the orders in the histories add up to the report for "
            f"{len(audit.accounts) - len(disagree)} of {len(audit.accounts)} accounts"
        )
        lines += [
            f"  {a.account_id}: report says filled {a.filled}, orders add up to "
            f"{a.filled_by_orders}"
            for a in disagree
        ]
    if audit.positions is not None:
        p = audit.positions
        lines.append(
            f"Positions: {len(p.positions)}; {p.compared} protective target(s) re-derived from "
            f"the fills, {len(p.differences)} differ"
        )
        lines += [
            f"  {d.account_id} {d.field} in {d.where}: recorded {d.recorded}, derived {d.derived}"
            for d in p.differences
        ]
        for position in p.positions:
            lines.append(
                f"  {position.account_id:<16} {position.status:<11} open "
                f"{plain(position.open_quantity)} of {plain(position.entry_quantity)}, realized "
                f"{plain(position.realized_pnl)}"
                + (f"  ({position.note})" if position.note else "")
            )
            lines += [f"    {close}" for close in position.closes]
            lines += [f"    PROBLEM: {problem}" for problem in position.problems]
    if audit.plaintext:
        lines.append(
            f"PLAINTEXT: {len(audit.plaintext)} payload(s) of this encrypted signal were sent "
            "without the codec and are stored in clear: " + "; ".join(audit.plaintext)
        )
    lines.append(f"Verdict: {'OK' if audit.ok else 'FAILED'}")
    lines.append("")
    lines.append("Decision trail:")
    for entry in audit.trail:
        where = entry.workflow_id.removeprefix(audit.workflow_id) or "."
        lines.append(f"  {entry.at:%Y-%m-%d %H:%M:%S.%f}"[:-3] + f"  {where:<24} {entry.text}")
    if audit.report is not None:
        lines.append("")
        lines.append("Accounts:")
        for a in audit.accounts:
            detail = f"{a.denial}: {a.reason}" if a.denial else (a.reason or "")
            lines.append(
                f"  {a.account_id:<16} {a.status:<15} requested {a.requested} filled {a.filled}"
                + (f"  ({detail})" if detail else "")
            )
    return lines


def slice_lines(orders: list[Activity], outcome: Any) -> list[tuple[str, str, str | None]]:
    """A completed slice, leg by leg: each order's result set on its own activity (as a
    per-order activity's would be), and its line of the trail."""
    results = (
        {r.client_order_id: r for r in outcome.results} if isinstance(outcome, SliceOutcome) else {}
    )
    lines: list[tuple[str, str, str | None]] = []
    for activity in orders:
        request = activity.input
        result = results.get(request.client_order_id)
        if result is None:
            continue
        activity.result = result.outcome
        activity.completed = result.outcome is not None
        coid, where = request.client_order_id, f"(in a slice of {len(orders)})"
        if result.denied is not None:
            text = f"order {coid} {where}: not sent, reservation denied: {result.denied}: "
            text += result.detail
        elif result.refused is not None:
            text = f"order {coid} {where}: not sent, refused: {result.refused}: {result.detail}"
        elif result.failure is not None:
            text = f"order {coid} {where}: could not be booked: {result.failure}"
        elif result.working or result.outcome is None:
            text = f"order {coid} {where}: sent, still working: its leg follows it"
        else:
            text = f"{describe_order(request, result.outcome)} {where}"
        lines.append(("order", text, request.account_id))
    return lines

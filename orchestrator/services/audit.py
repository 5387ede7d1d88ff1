"""The audit of one signal, read from its workflow histories (the signal's and all its
children's): the decision trail in order, replay against the current code, a value-level check
of the plan, and a check that the orders' fills add up to the execution report.

Replay proves the current code issues the same *sequence* of commands; it does not compare
their values (a changed order quantity replays clean). So the audit also re-derives the plan
from the inputs the history recorded (the signal and settings the workflow started with, the
snapshot and correlation results, the workflow time it planned at) with the current planning
code, and compares every recorded quantity, delay and client order id with it. The history
records which planning rules made the plan (a ``planning-rules-vN`` marker): under other
rules than the current code's, a difference is an intended change of rules, not drift, and
the values are not compared.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

from orchestrator.adapters.codec import ENCODING, CodecError
from orchestrator.domain import paging, planning, reports
from orchestrator.domain.book import BookSnapshot, spec_key
from orchestrator.domain.contracts import summaries
from orchestrator.domain.contracts.activities import Control, Execution, activity_name
from orchestrator.domain.contracts.operators import (
    ActionReceipt,
    ActionRecorded,
    CancellationRequest,
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
    ReserveRiskRequest,
    SettleLegRequest,
    SignalWorkflowInput,
    SnapshotRequest,
)
from orchestrator.domain.correlation import CorrelationRequest, CorrelationResult
from orchestrator.domain.errors import OrchestratorError
from orchestrator.domain.orders import OrderOutcome
from orchestrator.domain.planning.decisions import Plan, PlannedLeg
from orchestrator.domain.report import CompletionResult, LegStatus, RerouteResult, SignalReport
from orchestrator.domain.settings import PlanSettings, ServiceSettings
from orchestrator.domain.values import Model
from orchestrator.services import history as histories
from workflows.batch import LegBatchWorkflow
from workflows.completion import PartialFillCompletionWorkflow
from workflows.reroute import OrderRerouteWorkflow
from workflows.signal import SignalExecutionWorkflow

ACTIVITY_TYPES: dict[str, tuple[type[Any], Any]] = {
    activity_name(Execution.load_snapshot): (SnapshotRequest, BookSnapshot),
    activity_name(Execution.compute_correlation): (CorrelationRequest, CorrelationResult),
    activity_name(Execution.place_and_follow_order): (PlaceOrderRequest, OrderOutcome),
    activity_name(Execution.cancel_order): (CancelOrderRequest, OrderOutcome | None),
    activity_name(Execution.settle_leg): (SettleLegRequest, type(None)),
    activity_name(Execution.service_settings): (type(None), ServiceSettings),
    activity_name(Control.record_operator_action): (ActionReceipt, ActionRecorded),
    activity_name(Control.apply_kill_switch): (KillSwitch, KillSwitchResult),
    activity_name(Control.cancellation_request): (str, CancellationRequest),
}
"""Activity name → (input type, result type): how to read the payloads a history holds."""

CHILD_TYPES: dict[str, tuple[type[Any], type[Any]]] = {
    LegBatchWorkflow.__name__: (LegBatchInput, LegBatchResult),
    PartialFillCompletionWorkflow.__name__: (CompletionInput, CompletionResult),
    OrderRerouteWorkflow.__name__: (RerouteInput, RerouteResult),
}

SIGNAL_WORKFLOW = SignalExecutionWorkflow.__name__


class UnreadableHistory(OrchestratorError):
    """A payload could not be decoded: encrypted with a key not configured here."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"cannot read the history's payloads ({detail}); if it is encrypted, configure its "
            "key (TEO_CODEC_KEYS or TEO_CODEC_KEY_FILE)"
        )


# --------------------------------------------------------------------------------------------
# The audit document


class TrailEntry(Model):
    at: datetime
    workflow_id: str
    kind: str
    account_id: str | None = None
    text: str


class Difference(Model):
    """A recorded value that the current planning code does not derive."""

    account_id: str
    field: str
    where: str
    recorded: str
    derived: str


class ValueVerdict(StrEnum):
    MATCH = "MATCH"
    DRIFT = "DRIFT"
    """Same rules, different values: the code changed what it decides without saying so."""
    RULES_CHANGED = "RULES_CHANGED"
    """Planned under other rules than the current code's: not compared."""
    NOT_PLANNED = "NOT_PLANNED"
    """The history stops before the plan was made."""


class ValueCheck(Model):
    verdict: ValueVerdict
    recorded_rules_version: int | None
    """None: recorded before the marker existed, read as version 1."""
    current_rules_version: int
    planned_at: datetime | None = None
    legs: int = 0
    denials: int = 0
    values_compared: int = 0
    differences: list[Difference] = []


class ReplayCheck(Model):
    workflow_id: str
    workflow_type: str
    events: int
    closed: bool
    failure: str | None = None


class OrderTrail(Model):
    client_order_id: str
    quantity: Decimal
    status: str | None
    filled: Decimal
    average_price: Decimal | None


class AccountAudit(Model):
    """One report line beside what the orders in the histories add up to."""

    account_id: str
    status: LegStatus
    requested: Decimal
    filled: Decimal
    """As the execution report says."""
    filled_by_orders: Decimal
    """The sum of the last known fill of each of the account's orders in the histories."""
    denial: str | None = None
    reason: str | None = None
    orders: list[OrderTrail] = []

    @property
    def agrees(self) -> bool:
        return self.filled == self.filled_by_orders


class Audit(Model):
    signal_id: str
    workflow_id: str
    run_id: str
    closed: bool
    replay: list[ReplayCheck]
    values: ValueCheck
    accounts: list[AccountAudit]
    """Empty while the signal runs: there is no report yet."""
    report: SignalReport | None
    trail: list[TrailEntry]
    plaintext: list[str] = []
    """Payloads of an encrypted history sent without the codec (kept in clear by the server):
    a security finding, reported, not a failure of the audit."""

    @property
    def replay_ok(self) -> bool:
        return all(r.failure is None for r in self.replay)

    @property
    def fills_agree(self) -> bool:
        return all(a.agrees for a in self.accounts)

    @property
    def ok(self) -> bool:
        return self.replay_ok and self.values.verdict is not ValueVerdict.DRIFT and self.fills_agree


# --------------------------------------------------------------------------------------------
# Reading one history


@dataclass
class _Activity:
    name: str
    input: Any
    scheduled_at: datetime
    result: Any = None
    completed: bool = False


@dataclass
class _Read:
    """What one history recorded, decoded."""

    history: WorkflowHistory
    input: Any = None
    result: Any = None
    activities: list[_Activity] = field(default_factory=list)
    delay_timers: dict[str, int] = field(default_factory=dict)
    """Account → the duration (ms) its delay timer was started with."""
    child_inputs: dict[str, Any] = field(default_factory=dict)
    rules_versions: list[int] = field(default_factory=list)
    planned_at: datetime | None = None
    trail: list[TrailEntry] = field(default_factory=list)
    plaintext: list[str] = field(default_factory=list)
    """Payloads of an encrypted history that a client sent unencrypted (where they are)."""


def _time(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(tzinfo=UTC)


ENCRYPTED = ENCODING
"""The encoding of an encrypted payload."""


def _encrypted(history: WorkflowHistory) -> bool:
    """Whether the history was written by a deployment that encrypts: its start input (and
    every payload its workers wrote) is encrypted."""
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            return any(p.metadata.get("encoding") == ENCRYPTED for p in payloads)
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            payloads = event.activity_task_scheduled_event_attributes.input.payloads
            if any(p.metadata.get("encoding") == ENCRYPTED for p in payloads):
                return True
    return False


class _Reader:
    def __init__(self, converter: DataConverter) -> None:
        self._converter = converter

    async def decode(self, payloads: Payloads | Sequence[Payload], kind: Any) -> Any:
        items = list(payloads.payloads if isinstance(payloads, Payloads) else payloads)
        if not items:
            return None
        [value] = await self._converter.decode(items[:1], [kind])
        return value

    async def read(self, history: WorkflowHistory) -> _Read:
        read = _Read(history)
        wid = history.workflow_id
        kind = histories.workflow_type(history)
        scheduled: dict[int, _Activity] = {}
        timers: dict[str, str] = {}
        children: dict[int, tuple[str, str]] = {}
        correlated_at: int | None = None
        last_task_started: datetime | None = None

        def note(event: HistoryEvent, what: str, text: str, account: str | None = None) -> None:
            read.trail.append(
                TrailEntry(
                    at=_time(event), workflow_id=wid, kind=what, account_id=account, text=text
                )
            )

        encrypted = _encrypted(history)

        def plaintext(payloads: Payloads, what: str, identity: str) -> None:
            if encrypted and any(
                p.metadata.get("encoding") != ENCRYPTED for p in payloads.payloads
            ):
                read.plaintext.append(f"{wid} event {event.event_id}: {what}")
                note(
                    event,
                    "plaintext",
                    f"PLAINTEXT: {what} from {identity or 'unknown'} was sent without the "
                    "codec: the server keeps it in clear",
                )

        for event in history.events:
            t = event.event_type
            if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                started = event.workflow_execution_started_event_attributes
                plaintext(started.input, f"the start input of {kind}", started.identity)
                input_type = (
                    SignalWorkflowInput
                    if kind == SIGNAL_WORKFLOW
                    else CHILD_TYPES.get(kind, (Any, Any))[0]
                )
                read.input = await self.decode(started.input, input_type)
                note(event, "started", _describe_start(kind, read.input, started.identity))
            elif t == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                last_task_started = _time(event)
            elif t == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                if correlated_at is not None and read.planned_at is None:
                    # workflow.now() in the task that planned is that task's start time.
                    read.planned_at = last_task_started
            elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                sched = event.activity_task_scheduled_event_attributes
                name = sched.activity_type.name
                input_type = ACTIVITY_TYPES.get(name, (Any, Any))[0]
                activity = _Activity(
                    name=name,
                    input=await self.decode(sched.input, input_type),
                    scheduled_at=_time(event),
                )
                scheduled[event.event_id] = activity
                read.activities.append(activity)
            elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                done = event.activity_task_completed_event_attributes
                activity = scheduled[done.scheduled_event_id]
                activity.result = await self.decode(
                    done.result, ACTIVITY_TYPES.get(activity.name, (Any, Any))[1]
                )
                activity.completed = True
                if activity.name == activity_name(Execution.compute_correlation):
                    correlated_at = event.event_id
                entry = _describe_activity(activity)
                if entry is not None:
                    note(event, *entry)
                if (
                    isinstance(activity.result, BookSnapshot)
                    and activity.result.correlation is not None
                ):  # read with the snapshot, in the same activity
                    correlated_at = event.event_id
                    note(event, *_describe_correlation(activity.result.correlation))
            elif t in (
                EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
                EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
                EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
            ):
                activity, outcome = _activity_end(event, scheduled)
                note(
                    event, "activity", f"{_activity_label(activity)}: {outcome}", _account(activity)
                )
            elif t == EventType.EVENT_TYPE_TIMER_STARTED:
                timer = event.timer_started_event_attributes
                summary = ""
                if event.user_metadata.HasField("summary"):
                    summary = await self.decode([event.user_metadata.summary], str) or ""
                timers[timer.timer_id] = summary
                ms = int(timer.start_to_fire_timeout.ToTimedelta() / timedelta(milliseconds=1))
                account = summaries.delay_timer_account(summary)
                if account is not None:
                    read.delay_timers[account] = ms
                note(
                    event,
                    "timer",
                    f"timer started: {summary or 'timer'} {ms / 1000:.3f} s",
                    account,
                )
            elif t in (EventType.EVENT_TYPE_TIMER_FIRED, EventType.EVENT_TYPE_TIMER_CANCELED):
                fired = t == EventType.EVENT_TYPE_TIMER_FIRED
                timer_id = (
                    event.timer_fired_event_attributes.timer_id
                    if fired
                    else event.timer_canceled_event_attributes.timer_id
                )
                summary = timers.get(timer_id, "timer")
                account = summaries.delay_timer_account(summary)
                verb = "fired" if fired else "cancelled (woken early by an operator)"
                note(event, "timer", f"timer {verb}: {summary}", account)
            elif t == EventType.EVENT_TYPE_MARKER_RECORDED:
                version = await self._rules_version(event)
                if version is not None:
                    read.rules_versions.append(version)
                    note(event, "plan", f"planned under planning rules v{version}")
            elif t == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
                initiated = event.start_child_workflow_execution_initiated_event_attributes
                child_kind = initiated.workflow_type.name
                child_input = await self.decode(
                    initiated.input, CHILD_TYPES.get(child_kind, (Any, Any))[0]
                )
                read.child_inputs[initiated.workflow_id] = child_input
                children[event.event_id] = (initiated.workflow_id, child_kind)
                note(
                    event,
                    "child",
                    f"started {child_kind} {initiated.workflow_id}: "
                    + _describe_child_input(child_input),
                    _child_account(child_input),
                )
            elif t == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
                child_done = event.child_workflow_execution_completed_event_attributes
                child_id, child_kind = children[child_done.initiated_event_id]
                result = await self.decode(
                    child_done.result, CHILD_TYPES.get(child_kind, (Any, Any))[1]
                )
                note(
                    event,
                    "child",
                    f"{child_kind} {child_id} completed: {_describe_child_result(result)}",
                    _child_account(read.child_inputs.get(child_id)),
                )
            elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                signaled = event.workflow_execution_signaled_event_attributes
                plaintext(signaled.input, f"signal {signaled.signal_name}", signaled.identity)
                request = await self.decode(signaled.input, dict[str, Any]) or {}
                note(
                    event,
                    "operator",
                    _describe_operator(signaled.signal_name, request, "signal"),
                    request.get("account_id"),
                )
            elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
                accepted = event.workflow_execution_update_accepted_event_attributes
                request_input = accepted.accepted_request.input
                plaintext(
                    request_input.args,
                    f"update {request_input.name}",
                    accepted.accepted_request.meta.identity,
                )
                request = await self.decode(request_input.args, dict[str, Any]) or {}
                note(event, "operator", _describe_operator(request_input.name, request, "update"))
            elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
                asked = event.workflow_execution_cancel_requested_event_attributes
                note(
                    event,
                    "operator",
                    f"Temporal cancellation requested by {asked.identity or 'unknown'}"
                    + (f": {asked.cause}" if asked.cause else "")
                    + " (handled like cancel_signal)",
                )
            elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
                completed = event.workflow_execution_completed_event_attributes
                result_type = (
                    SignalReport
                    if kind == SIGNAL_WORKFLOW
                    else CHILD_TYPES.get(kind, (Any, Any))[1]
                )
                read.result = await self.decode(completed.result, result_type)
                note(event, "finished", _describe_finish(read.result))
            elif t in histories.CLOSED_EVENTS:
                note(
                    event,
                    "finished",
                    f"workflow ended: {EventType.Name(t).removeprefix('EVENT_TYPE_')}",
                )
        return read

    async def _rules_version(self, event: HistoryEvent) -> int | None:
        attrs = event.marker_recorded_event_attributes
        data = attrs.details.get("patch-data")
        if attrs.marker_name != "core_patch" or data is None:
            return None
        patch = await self.decode(data, dict[str, Any]) or {}
        return planning.rules_version_of(str(patch.get("id", "")))


# --------------------------------------------------------------------------------------------
# Plain words


def _describe_start(kind: str, value: Any, identity: str) -> str:
    if isinstance(value, SignalWorkflowInput):
        s = value.signal
        return (
            f"signal {s.signal_id} received from {identity or 'unknown'}: {s.side} {s.symbol} "
            f"{s.order_type}, entry {s.entry}, stop {s.stop}"
            + (f", take profit {s.take_profit}" if s.take_profit else "")
            + "; "
            + (
                "settings pinned by the input: " + _describe_settings(value.settings)
                if value.settings is not None
                else "with the worker's settings"
            )
        )
    return f"{kind} started: {_describe_child_input(value)}"


def _describe_settings(settings: PlanSettings) -> str:
    return (
        f"plan version {settings.plan_version}, delays {settings.delay_min_ms}-"
        f"{settings.delay_max_ms} ms, correlated gap {settings.correlated_min_gap_ms} ms, "
        f"size variance ±{settings.size_variance}"
    )


def _describe_child_input(value: Any) -> str:
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


def _describe_child_result(value: Any) -> str:
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


def _child_account(value: Any) -> str | None:
    if isinstance(value, CompletionInput):
        return value.account_id
    if isinstance(value, RerouteInput):
        return value.from_account
    return None


def _describe_operator(name: str, request: dict[str, Any], how: str) -> str:
    who = request.get("operator") or "unknown"
    why = request.get("reason") or "no reason given"
    target = f" {request['account_id']}" if request.get("account_id") else ""
    extra = " (cancel working orders)" if request.get("cancel_working") else ""
    return f"operator {who}: {name}{target}{extra} ({how}); reason: {why}"


def _account(activity: _Activity) -> str | None:
    account = getattr(activity.input, "account_id", None)
    return str(account) if account is not None else None


def _activity_label(activity: _Activity) -> str:
    value = activity.input
    if isinstance(value, PlaceOrderRequest):
        return f"order {value.client_order_id}"
    if isinstance(value, CancelOrderRequest):
        return f"cancel {value.client_order_id}"
    return f"{activity.name} {_account(activity) or ''}".strip()


def _activity_end(event: HistoryEvent, scheduled: dict[int, _Activity]) -> tuple[_Activity, str]:
    t = event.event_type
    if t == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
        attrs = event.activity_task_failed_event_attributes
        return scheduled[attrs.scheduled_event_id], f"failed: {attrs.failure.message}"
    if t == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
        timed_out = event.activity_task_timed_out_event_attributes
        return scheduled[timed_out.scheduled_event_id], f"timed out: {timed_out.failure.message}"
    cancelled = event.activity_task_canceled_event_attributes
    return scheduled[cancelled.scheduled_event_id], "cancelled"


def _describe_correlation(result: CorrelationResult) -> tuple[str, str, str | None]:
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


def _describe_activity(activity: _Activity) -> tuple[str, str, str | None] | None:
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
        return _describe_correlation(result)
    if isinstance(result, ServiceSettings):
        return "settings", "the worker's settings: " + _describe_settings(result.plan), None
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
        return "order", _describe_order(value, result), value.account_id
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


def _describe_order(request: PlaceOrderRequest, outcome: OrderOutcome) -> str:
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


def _describe_finish(value: Any) -> str:
    if isinstance(value, SignalReport):
        counts: dict[str, int] = defaultdict(int)
        for line in value.accounts:
            counts[line.status] += 1
        return (
            f"signal {value.status}: filled {value.filled_total} of {value.requested_total} "
            f"lots; " + ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
        )
    return f"completed: {_describe_child_result(value)}"


def _describe_plan(plan: Plan, read: _Read) -> Iterator[TrailEntry]:
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


# --------------------------------------------------------------------------------------------
# Value-level verification


Values = tuple[tuple[str, object, object], ...]
"""(field, recorded, derived) triples."""


class _Comparison:
    """Recorded values against the re-derived plan's legs, differences collected."""

    def __init__(self, legs: dict[str, PlannedLeg]) -> None:
        self.legs = legs
        self.differences: list[Difference] = []
        self.compared = 0

    def leg(self, account: str, where: str, recorded: object) -> PlannedLeg | None:
        """The derived leg of ``account``; a recorded value for an account the plan gives no
        leg is itself a difference."""
        leg = self.legs.get(account)
        if leg is None:
            self.values(account, where, (("leg", recorded, "no leg for this account"),))
        return leg

    def values(self, account: str, where: str, values: Values) -> None:
        for name, recorded, derived in values:
            self.compared += 1
            if recorded != derived:
                self.differences.append(
                    Difference(
                        account_id=account,
                        field=name,
                        where=where,
                        recorded=str(recorded),
                        derived=str(derived),
                    )
                )


def verify_reroutes(reroutes: Sequence[_Read], compare: _Comparison) -> None:
    """Re-derive each reroute's sizes with the one sizing rule, from what its history recorded:
    the failed order's risk, each target's snapshot and what each target filled; compare the
    orders and reservations it sent, and the risk it reports placed."""
    for read in reroutes:
        request, result = read.input, read.result
        if not isinstance(request, RerouteInput):
            continue
        wid = read.history.workflow_id
        sizing = planning.RerouteSizing(
            original_risk=request.original_risk, fraction=request.execution.reroute_fraction
        )
        hops = result.hops if isinstance(result, RerouteResult) else []
        filled = {h.to_account: h.filled for h in hops}
        pending: tuple[Any, Any, planning.SizeDecision] | None = None
        for activity in read.activities:
            value = activity.result
            if isinstance(value, BookSnapshot) and len(value.accounts) == 1:
                account = value.accounts[0]
                spec = value.specs.get(spec_key(account.broker, account.broker_symbol or ""))
                if spec is not None:
                    pending = (account, spec, sizing.size(request.signal, account, spec))
                continue
            order = activity.input
            if not isinstance(order, PlaceOrderRequest) or order.business_sequence != 1:
                continue
            if pending is None or pending[0].account_id != order.account_id:
                compare.values(
                    order.account_id,
                    f"{wid} order",
                    (("snapshot before the order", "none", "the target's snapshot"),),
                )
                continue
            account, spec, decision = pending
            pending = None
            risk, margin = planning.commitment(request.signal, spec, decision.lots)
            where = f"{wid} place_and_follow_order input"
            compare.values(order.account_id, where, (("quantity", order.quantity, decision.lots),))
            if order.reservation is not None:
                compare.values(
                    order.account_id,
                    f"{where} (reservation)",
                    (
                        ("risk_amount", order.reservation.risk_amount, risk),
                        ("margin", order.reservation.margin, margin),
                    ),
                )
            sizing.filled(request.signal, spec, decision, filled.get(order.account_id, Decimal(0)))
        if isinstance(result, RerouteResult):
            compare.values(
                request.from_account,
                f"{wid} result",
                (
                    ("risk_carried", result.risk_carried, planning.quantize(sizing.carried)),
                    ("risk_placed", result.risk_placed, planning.quantize(sizing.placed)),
                ),
            )


def verify_plan(
    root: _Read,
    batches: Sequence[_Read],
    report: SignalReport | None,
    reroutes: Sequence[_Read] = (),
) -> tuple[ValueCheck, Plan | None]:
    """Re-derive the plan from the root history's recorded inputs and compare every value the
    histories recorded for it, and the report's lines (``report``: every line, a large
    signal's joined from its batches)."""
    recorded_version = root.rules_versions[0] if root.rules_versions else None
    check = ValueCheck(
        verdict=ValueVerdict.NOT_PLANNED,
        recorded_rules_version=recorded_version,
        current_rules_version=planning.RULES_VERSION,
    )
    snapshots = [a.result for a in root.activities if isinstance(a.result, BookSnapshot)]
    correlations = [a.result for a in root.activities if isinstance(a.result, CorrelationResult)]
    correlations += [s.correlation for s in snapshots if s.correlation is not None]
    # A large book was read in pages: the plan saw them joined, in page order.
    snapshot = paging.join_snapshot(sorted(snapshots, key=lambda p: p.page)) if snapshots else None
    correlation = (
        paging.join_correlation(sorted(correlations, key=lambda p: p.page))
        if correlations
        else None
    )
    request = root.input
    service = [a.result for a in root.activities if isinstance(a.result, ServiceSettings)]
    settings = (
        (request.settings or (service[0].plan if service else None))
        if isinstance(request, SignalWorkflowInput)
        else None
    )
    if (
        not isinstance(request, SignalWorkflowInput)
        or settings is None
        or snapshot is None
        or correlation is None
        or root.planned_at is None
    ):
        return check, None
    planned_at = root.planned_at
    if (recorded_version or 1) != planning.RULES_VERSION:
        return check.model_copy(
            update={"verdict": ValueVerdict.RULES_CHANGED, "planned_at": planned_at}
        ), None
    plan = planning.plan_signal(request.signal, snapshot, correlation, settings, planned_at)
    denials = {d.account_id: d for d in plan.denials}
    compare = _Comparison({leg.account_id: leg for leg in plan.legs})

    def reservation(value: ReserveRiskRequest, where: str) -> None:
        leg = compare.leg(value.account_id, where, value.client_order_id)
        if leg is not None:
            compare.values(
                leg.account_id,
                where,
                (
                    ("quantity", value.quantity, leg.quantity),
                    ("client_order_id", value.client_order_id, leg.client_order_id),
                    ("risk_amount", value.risk_amount, leg.risk_amount),
                    ("margin", value.margin, leg.margin),
                ),
            )

    for read in [root, *batches]:
        wid = read.history.workflow_id
        for activity in read.activities:
            value = activity.input
            if isinstance(value, PlaceOrderRequest) and value.business_sequence == 1:
                where = f"{wid} place_and_follow_order input"
                leg = compare.leg(value.account_id, where, value.client_order_id)
                if leg is not None:
                    compare.values(
                        leg.account_id,
                        where,
                        (
                            ("quantity", value.quantity, leg.quantity),
                            ("client_order_id", value.client_order_id, leg.client_order_id),
                        ),
                    )
                if value.reservation is not None:  # reserved by the order activity itself
                    reservation(value.reservation, f"{where} (reservation)")
        for account, ms in read.delay_timers.items():
            where = f"{wid} delay timer"
            leg = compare.leg(account, where, f"{ms} ms")
            if leg is not None:
                compare.values(account, where, (("delay_ms", ms, leg.delay_ms),))
        for child_id, child_input in read.child_inputs.items():
            if not isinstance(child_input, LegBatchInput):
                continue
            for recorded in child_input.legs:
                where = f"{child_id} input"
                leg = compare.leg(recorded.account_id, where, recorded.client_order_id)
                if leg is not None:
                    # Batches get legs without their rationale (recorded before: with it).
                    derived = leg if isinstance(recorded, PlannedLeg) else leg.slim()
                    compare.values(
                        leg.account_id,
                        where,
                        (("planned leg", recorded.model_dump_json(), derived.model_dump_json()),),
                    )
    if report is not None:
        where = "execution report"
        for line in report.accounts:
            if line.rerouted_from is not None:
                continue  # sized by the reroute, not the plan
            denial = denials.get(line.account_id)
            if denial is not None:
                compare.values(denial.account_id, where, (("denial", line.denial, denial.reason),))
                continue
            leg = compare.leg(line.account_id, where, line.status)
            if leg is not None:
                compare.values(
                    leg.account_id,
                    where,
                    (
                        ("requested", line.requested, leg.quantity),
                        ("client_order_id", line.client_order_id, leg.client_order_id),
                        ("delay_ms", line.delay_ms, leg.delay_ms),
                    ),
                )
    verify_reroutes(reroutes, compare)
    differences = compare.differences
    return (
        check.model_copy(
            update={
                "verdict": ValueVerdict.DRIFT if differences else ValueVerdict.MATCH,
                "planned_at": planned_at,
                "legs": len(plan.legs),
                "denials": len(plan.denials),
                "values_compared": compare.compared,
                "differences": differences,
            }
        ),
        plan,
    )


# --------------------------------------------------------------------------------------------
# Fills: what the orders add up to, beside the report


def account_audits(report: SignalReport, reads: Sequence[_Read]) -> list[AccountAudit]:
    """Each report line beside the last known state of each of the account's orders."""
    orders: dict[str, OrderTrail] = {}
    owner: dict[str, str] = {}
    for read in reads:
        for activity in read.activities:
            value, result = activity.input, activity.result
            if isinstance(value, PlaceOrderRequest):
                owner[value.client_order_id] = value.account_id
                known = orders.get(value.client_order_id)
                orders[value.client_order_id] = _order_state(
                    value.client_order_id, value.quantity, result, known
                )
            elif isinstance(value, CancelOrderRequest) and isinstance(result, OrderOutcome):
                known = orders.get(value.client_order_id)
                quantity = known.quantity if known else result.quantity
                owner.setdefault(value.client_order_id, value.account_id)
                orders[value.client_order_id] = _order_state(
                    value.client_order_id, quantity, result, known
                )
    by_account: dict[str, list[OrderTrail]] = defaultdict(list)
    for coid, order in orders.items():
        by_account[owner[coid]].append(order)
    return [
        AccountAudit(
            account_id=line.account_id,
            status=line.status,
            requested=line.requested,
            filled=line.filled,
            filled_by_orders=sum((o.filled for o in by_account[line.account_id]), Decimal(0)),
            denial=line.denial,
            reason=line.reason,
            orders=by_account[line.account_id],
        )
        for line in report.accounts
    ]


def _order_state(coid: str, quantity: Decimal, result: Any, known: OrderTrail | None) -> OrderTrail:
    if isinstance(result, OrderOutcome):
        return OrderTrail(
            client_order_id=coid,
            quantity=quantity,
            status=result.status,
            filled=result.filled_quantity,
            average_price=result.average_price,
        )
    if known is not None:
        return known
    return OrderTrail(
        client_order_id=coid, quantity=quantity, status=None, filled=Decimal(0), average_price=None
    )


# --------------------------------------------------------------------------------------------
# The audit


async def audit_histories(
    loaded: Sequence[WorkflowHistory], *, converter: DataConverter | None = None
) -> Audit:
    """Audit a signal from its histories: the signal workflow's (the one whose id has no
    ``/``) and its children's."""
    roots = [h for h in loaded if "/" not in h.workflow_id]
    if len(roots) != 1:
        raise ValueError(
            f"expected the histories of one signal workflow, found {len(roots)}: "
            + ", ".join(h.workflow_id for h in roots)
        )
    converter = converter or pydantic_data_converter
    reader = _Reader(converter)
    try:
        reads = [await reader.read(h) for h in loaded]
    except (CodecError, KeyError) as err:
        raise UnreadableHistory(histories.describe_error(err)) from err
    root = next(r for r in reads if r.history is roots[0])
    batches = [r for r in reads if histories.workflow_type(r.history) == LegBatchWorkflow.__name__]
    failures = await histories.replay_histories(loaded, converter=converter)
    replay = [
        ReplayCheck(
            workflow_id=h.workflow_id,
            workflow_type=histories.workflow_type(h),
            events=len(h.events),
            closed=histories.is_closed(h),
            failure=histories.describe_error(failure) if failure else None,
        )
        for h, failure in zip(loaded, failures, strict=True)
    ]
    report = root.result if isinstance(root.result, SignalReport) else None
    if report is not None and report.accounts_in_batches:
        # A large signal's lines are its batches' results.
        lines = [
            line
            for read in batches
            if isinstance(read.result, LegBatchResult)
            for line in read.result.accounts
        ]
        report = report.model_copy(
            update={"accounts": reports.merge_lines(lines), "accounts_in_batches": False}
        )
    reroutes = [
        r for r in reads if histories.workflow_type(r.history) == OrderRerouteWorkflow.__name__
    ]
    values, plan = verify_plan(root, batches, report, reroutes)
    trail = [entry for read in reads for entry in read.trail]
    if plan is not None:
        trail += _describe_plan(plan, root)
    # In time order; at one instant, the signal's own entries first, then its children's.
    order = {r.history.workflow_id: n for n, r in enumerate(reads)}
    trail.sort(key=lambda e: (e.at, order[e.workflow_id]))
    signal = root.input.signal.signal_id if isinstance(root.input, SignalWorkflowInput) else ""
    return Audit(
        signal_id=signal,
        workflow_id=root.history.workflow_id,
        run_id=roots[0].run_id or "",
        closed=histories.is_closed(root.history),
        replay=replay,
        values=values,
        accounts=account_audits(report, reads) if report else [],
        report=report,
        trail=trail,
        plaintext=[p for read in reads for p in read.plaintext],
    )


# --------------------------------------------------------------------------------------------
# Plain words


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

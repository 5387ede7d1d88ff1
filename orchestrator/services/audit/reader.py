"""Reading one history: every payload decoded by its type (activity inputs and results, child
inputs and results, signals and updates), the trail of what happened, and what the value check
needs (the plan's time, the delay timers, the rules marker).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter

from orchestrator.adapters.codec import ENCODING
from orchestrator.domain import planning
from orchestrator.domain.actions import AccountOutcome, ActionReport
from orchestrator.domain.book import BookSnapshot
from orchestrator.domain.contracts import summaries
from orchestrator.domain.contracts.actions import ActionInput
from orchestrator.domain.contracts.activities import Control, Execution, Positions, activity_name
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
    PlaceSliceRequest,
    RerouteInput,
    SettleLegRequest,
    SignalWorkflowInput,
    SliceOutcome,
    SnapshotRequest,
)
from orchestrator.domain.contracts.positions import (
    ClosedAtBroker,
    CloseOutcome,
    CloseRequest,
    EntryFillsRequest,
    KeeperAction,
    OrderNews,
    PositionFill,
    PositionFills,
    PositionsInput,
    PositionsRecord,
    PositionsResult,
    ProtectionOutcome,
    ProtectionRequest,
    WatchRequest,
)
from orchestrator.domain.correlation import CorrelationRequest, CorrelationResult
from orchestrator.domain.orders import OrderOutcome
from orchestrator.domain.report import CompletionResult, RerouteResult, SignalReport
from orchestrator.domain.settings import ServiceSettings
from orchestrator.services import history as histories
from orchestrator.services.audit.describe import (
    account_of,
    activity_end,
    activity_label,
    child_account,
    describe_activity,
    describe_child_input,
    describe_child_result,
    describe_correlation,
    describe_finish,
    describe_operator,
    describe_start,
    slice_lines,
)
from orchestrator.services.audit.document import Activity, Read, TrailEntry
from orchestrator.services.audit.positions import (
    KEEPER_ACTION,
    KEEPER_SIGNALS,
    describe_action,
    describe_action_outcome,
    describe_keeper_activity,
    describe_keeper_signal,
    keeper_step,
)
from workflows.actions import TradeActionWorkflow
from workflows.batch import LegBatchWorkflow
from workflows.completion import PartialFillCompletionWorkflow
from workflows.positions import PositionsWorkflow
from workflows.reroute import OrderRerouteWorkflow
from workflows.signal import SignalExecutionWorkflow

ACTIVITY_TYPES: dict[str, tuple[type[Any], Any]] = {
    activity_name(Execution.load_snapshot): (SnapshotRequest, BookSnapshot),
    activity_name(Execution.compute_correlation): (CorrelationRequest, CorrelationResult),
    activity_name(Execution.place_and_follow_order): (PlaceOrderRequest, OrderOutcome),
    activity_name(Execution.place_and_follow_slice): (PlaceSliceRequest, SliceOutcome),
    activity_name(Execution.cancel_order): (CancelOrderRequest, OrderOutcome | None),
    activity_name(Execution.settle_leg): (SettleLegRequest, type(None)),
    activity_name(Execution.service_settings): (type(None), ServiceSettings),
    activity_name(Control.record_operator_action): (ActionReceipt, ActionRecorded),
    activity_name(Control.apply_kill_switch): (KillSwitch, KillSwitchResult),
    activity_name(Control.cancellation_request): (str, CancellationRequest),
    activity_name(Positions.protect): (ProtectionRequest, list[ProtectionOutcome]),
    activity_name(Positions.check_orders): (WatchRequest, list[OrderNews]),
    activity_name(Positions.close_positions): (CloseRequest, list[CloseOutcome]),
    activity_name(Positions.entry_fills): (EntryFillsRequest, list[PositionFill]),
    activity_name(Positions.record_positions): (PositionsRecord, type(None)),
}
"""Activity name → (input type, result type): how to read the payloads a history holds."""

CHILD_TYPES: dict[str, tuple[type[Any], type[Any]]] = {
    LegBatchWorkflow.__name__: (LegBatchInput, LegBatchResult),
    PartialFillCompletionWorkflow.__name__: (CompletionInput, CompletionResult),
    OrderRerouteWorkflow.__name__: (RerouteInput, RerouteResult),
    PositionsWorkflow.__name__: (PositionsInput, PositionsResult),
    TradeActionWorkflow.__name__: (ActionInput, ActionReport),
}

SIGNAL_WORKFLOW = SignalExecutionWorkflow.__name__


def event_time(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(tzinfo=UTC)


ENCRYPTED = ENCODING
"""The encoding of an encrypted payload."""


def is_encrypted(history: WorkflowHistory) -> bool:
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


class Reader:
    def __init__(self, converter: DataConverter) -> None:
        self._converter = converter

    async def decode(self, payloads: Payloads | Sequence[Payload], kind: Any) -> Any:
        items = list(payloads.payloads if isinstance(payloads, Payloads) else payloads)
        if not items:
            return None
        [value] = await self._converter.decode(items[:1], [kind])
        return value

    async def read(self, history: WorkflowHistory) -> Read:
        read = Read(history)
        wid = history.workflow_id
        kind = histories.workflow_type(history)
        scheduled: dict[int, Activity] = {}
        slices: dict[int, list[Activity]] = {}  # a slice's scheduled event → its legs' orders
        updates: dict[str, str] = {}
        timers: dict[str, str] = {}
        children: dict[int, tuple[str, str]] = {}
        correlated_at: int | None = None
        last_task_started: datetime | None = None

        def note(event: HistoryEvent, what: str, text: str, account: str | None = None) -> None:
            read.trail.append(
                TrailEntry(
                    at=event_time(event), workflow_id=wid, kind=what, account_id=account, text=text
                )
            )

        encrypted = is_encrypted(history)

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
                note(event, "started", describe_start(kind, read.input, started.identity))
            elif t == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                last_task_started = event_time(event)
            elif t == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                if correlated_at is not None and read.planned_at is None:
                    # workflow.now() in the task that planned is that task's start time.
                    read.planned_at = last_task_started
            elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                sched = event.activity_task_scheduled_event_attributes
                name = sched.activity_type.name
                input_type = ACTIVITY_TYPES.get(name, (Any, Any))[0]
                activity = Activity(
                    name=name,
                    input=await self.decode(sched.input, input_type),
                    scheduled_at=event_time(event),
                )
                scheduled[event.event_id] = activity
                if isinstance(activity.input, PlaceSliceRequest):
                    # Each leg's order of a slice reads as a per-order activity of its own.
                    slices[event.event_id] = [
                        Activity(name=name, input=order, scheduled_at=activity.scheduled_at)
                        for order in activity.input.orders
                    ]
                    read.activities.extend(slices[event.event_id])
                    continue
                read.activities.append(activity)
                step = keeper_step(activity)
                if step is not None:
                    read.steps.append(step)
            elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                done = event.activity_task_completed_event_attributes
                activity = scheduled[done.scheduled_event_id]
                activity.result = await self.decode(
                    done.result, ACTIVITY_TYPES.get(activity.name, (Any, Any))[1]
                )
                activity.completed = True
                if done.scheduled_event_id in slices:
                    for line in slice_lines(slices[done.scheduled_event_id], activity.result):
                        note(event, *line)
                    continue
                if activity.name == activity_name(Execution.compute_correlation):
                    correlated_at = event.event_id
                step = keeper_step(activity)
                if step is not None:
                    read.steps.append(step)
                keeper_lines = describe_keeper_activity(activity)
                entry = None if keeper_lines is not None else describe_activity(activity)
                for line in keeper_lines or ([entry] if entry is not None else []):
                    note(event, *line)
                if (
                    isinstance(activity.result, BookSnapshot)
                    and activity.result.correlation is not None
                ):  # read with the snapshot, in the same activity
                    correlated_at = event.event_id
                    note(event, *describe_correlation(activity.result.correlation))
            elif t in (
                EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
                EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
                EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
            ):
                activity, outcome = activity_end(event, scheduled)
                note(
                    event,
                    "activity",
                    f"{activity_label(activity)}: {outcome}",
                    account_of(activity),
                )
            elif t == EventType.EVENT_TYPE_TIMER_STARTED:
                timer = event.timer_started_event_attributes
                summary = ""
                if event.user_metadata.HasField("summary"):
                    summary = await self.decode([event.user_metadata.summary], str) or ""
                timers[timer.timer_id] = summary
                # Rounded, not truncated: the SDK turns a timeout into a float of seconds, so
                # a 1,037 ms delay can be stored as 1.036999999 s.
                ms = round(timer.start_to_fire_timeout.ToTimedelta() / timedelta(milliseconds=1))
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
                    + describe_child_input(child_input),
                    child_account(child_input),
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
                    f"{child_kind} {child_id} completed: {describe_child_result(result)}",
                    child_account(read.child_inputs.get(child_id)),
                )
            elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                signaled = event.workflow_execution_signaled_event_attributes
                plaintext(signaled.input, f"signal {signaled.signal_name}", signaled.identity)
                internal = KEEPER_SIGNALS.get(signaled.signal_name)
                if internal is not None:  # from the legs, not an operator
                    value = await self.decode(signaled.input, internal)
                    told = value.fills if isinstance(value, PositionFills) else [value]
                    for each in told:
                        if isinstance(each, PositionFill):
                            read.steps.append(("fill", each))
                        elif isinstance(each, ClosedAtBroker):
                            read.steps.append(("at_broker", each))
                        note(event, *describe_keeper_signal(signaled.signal_name, each))
                    continue
                request = await self.decode(signaled.input, dict[str, Any]) or {}
                note(
                    event,
                    "operator",
                    describe_operator(signaled.signal_name, request, "signal"),
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
                if request_input.name == KEEPER_ACTION:
                    action = await self.decode(request_input.args, KeeperAction)
                    updates[accepted.accepted_request.meta.update_id] = action.action_id
                    note(event, "action", f"action {describe_action(action)}")
                    continue
                request = await self.decode(request_input.args, dict[str, Any]) or {}
                note(event, "operator", describe_operator(request_input.name, request, "update"))
            elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
                answered = event.workflow_execution_update_completed_event_attributes
                action_id = updates.get(answered.meta.update_id)
                if action_id is not None and answered.outcome.HasField("success"):
                    outcome = await self.decode(answered.outcome.success, list[AccountOutcome])
                    note(event, "action", describe_action_outcome(action_id, outcome or []))
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
                note(event, "finished", describe_finish(read.result))
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

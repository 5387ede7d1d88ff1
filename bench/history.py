"""What a run's histories say: events, workflow tasks and bytes per leg, the largest history
and payload, activity queue and run times, timers, and the delays a signal's legs waited.

Read from the histories the server recorded (parent and every child), after the run, never
timed.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter

from orchestrator.domain.contracts import summaries


def _event_name(event: HistoryEvent) -> str:
    return EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")


PAYLOAD = "temporal.api.common.v1.Payload"
_HOLDS_PAYLOAD: dict[str, bool] = {}


def _holds_payload(descriptor: Descriptor) -> bool:
    """Whether a message of this type can contain a ``Payload`` (memoized; a type met again
    while it is being decided counts as not holding one, which only prunes a cycle)."""
    name = descriptor.full_name
    if name not in _HOLDS_PAYLOAD:
        _HOLDS_PAYLOAD[name] = False
        _HOLDS_PAYLOAD[name] = name == PAYLOAD or any(
            f.message_type is not None and _holds_payload(f.message_type) for f in descriptor.fields
        )
    return _HOLDS_PAYLOAD[name]


def _payload_sizes(message: Message) -> Iterator[int]:
    """The serialized size of every ``Payload`` inside ``message`` (inputs, results, details,
    headers, memos, search attributes, failures)."""
    if message.DESCRIPTOR.full_name == PAYLOAD:
        yield message.ByteSize()
        return
    for fd, value in message.ListFields():
        kind = fd.message_type
        if fd.type != FieldDescriptor.TYPE_MESSAGE or kind is None or not _holds_payload(kind):
            continue
        if kind.GetOptions().map_entry:
            for item in value.values():
                if isinstance(item, Message):
                    yield from _payload_sizes(item)
        elif fd.is_repeated:
            for item in value:
                yield from _payload_sizes(item)
        else:
            yield from _payload_sizes(value)


def history_figures(histories: Sequence[WorkflowHistory], legs: int) -> dict[str, Any]:
    types: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    events: list[tuple[int, str, str]] = []
    payload = (0, "", "")
    per_history: list[tuple[int, int, str]] = []
    for history in histories:
        names: dict[int, str] = {}
        history_bytes = 0
        for e in history.events:
            kind = _event_name(e)
            size = e.ByteSize()
            types[kind] += 1
            sizes[kind] += size
            history_bytes += size
            detail = history.workflow_id
            if e.HasField("activity_task_scheduled_event_attributes"):
                names[e.event_id] = e.activity_task_scheduled_event_attributes.activity_type.name
                detail = names[e.event_id]
            elif e.HasField("activity_task_completed_event_attributes"):
                scheduled = e.activity_task_completed_event_attributes.scheduled_event_id
                detail = names.get(scheduled, history.workflow_id)
            events.append((size, kind, detail))
            for payload_size in _payload_sizes(e):
                if payload_size > payload[0]:
                    payload = (payload_size, kind, detail)
        per_history.append((history_bytes, len(history.events), history.workflow_id))
    total = sum(b for b, _, _ in per_history)
    count = sum(n for _, n, _ in per_history)
    largest_bytes, largest_events, largest_id = max(per_history)
    top = histories[0].events
    result_bytes = 0
    if top[-1].HasField("workflow_execution_completed_event_attributes"):
        payloads = top[-1].workflow_execution_completed_event_attributes.result.payloads
        result_bytes = sum(p.ByteSize() for p in payloads)
    span = top[-1].event_time.ToDatetime() - top[0].event_time.ToDatetime()
    wft = types.get("WORKFLOW_TASK_COMPLETED", 0)
    activities = _activity_figures(histories)
    return {
        "events": count,
        "events_per_leg": count / legs,
        "workflow_tasks": wft,
        "workflow_tasks_per_leg": wft / legs,
        "history_bytes": total,
        "history_bytes_per_leg": total / legs,
        "histories": len(histories),
        "largest_history_events": max(n for _, n, _ in per_history),
        "largest_history_bytes": largest_bytes,
        "largest_history": f"{largest_id} ({largest_events} events)",
        "largest_event_bytes": max(size for size, _, _ in events),
        "largest_events": [
            {"bytes": size, "type": kind, "of": detail}
            for size, kind, detail in heapq.nlargest(5, events)
        ],
        "largest_payload_bytes": payload[0],
        "largest_payload": {"bytes": payload[0], "event": payload[1], "of": payload[2]},
        "result_payload_bytes": result_bytes,
        "server_span_ms": _ms(span),
        "event_types": dict(types.most_common()),
        "event_bytes": dict(sizes.most_common()),
        "activities": activities,
        "timers": _timer_figures(histories),
        "retries": sum(int(a["retried"]) for a in activities.values()),
    }


def _timer_figures(histories: Sequence[WorkflowHistory]) -> dict[str, float]:
    """How long the server took to fire the timers (the floor's are zero-length)."""
    fired: list[float] = []
    count = 0
    for history in histories:
        started: dict[int, datetime] = {}
        for e in history.events:
            if e.HasField("timer_started_event_attributes"):
                count += 1
                started[e.event_id] = e.event_time.ToDatetime()
            elif e.HasField("timer_fired_event_attributes"):
                at = started.get(e.timer_fired_event_attributes.started_event_id)
                if at is not None:
                    fired.append(_ms(e.event_time.ToDatetime() - at))
    if not fired:
        return {"count": count}
    return {
        "count": count,
        "fire_ms_p50": pct(fired, 50),
        "fire_ms_p95": pct(fired, 95),
        "fire_ms_max": max(fired),
    }


def _activity_figures(histories: Sequence[WorkflowHistory]) -> dict[str, dict[str, float]]:
    """Queue time (scheduled → started) and run time (started → completed) per activity type,
    as the server recorded them, and how many completions came from a retried attempt."""
    queue: dict[str, list[float]] = {}
    run: dict[str, list[float]] = {}
    retried: Counter[str] = Counter()
    for history in histories:
        scheduled: dict[int, tuple[str, datetime]] = {}
        started: dict[int, tuple[datetime, int]] = {}
        for e in history.events:
            at = e.event_time.ToDatetime()
            if e.HasField("activity_task_scheduled_event_attributes"):
                name = e.activity_task_scheduled_event_attributes.activity_type.name
                scheduled[e.event_id] = (name, at)
            elif e.HasField("activity_task_started_event_attributes"):
                a = e.activity_task_started_event_attributes
                started[a.scheduled_event_id] = (at, a.attempt)
            elif e.HasField("activity_task_completed_event_attributes"):
                key = e.activity_task_completed_event_attributes.scheduled_event_id
                if key not in scheduled or key not in started:
                    continue
                name, queued_at = scheduled[key]
                started_at, attempt = started[key]
                queue.setdefault(name, []).append(_ms(started_at - queued_at))
                run.setdefault(name, []).append(_ms(at - started_at))
                if attempt > 1:
                    retried[name] += 1
    return {
        name: {
            "count": len(queue[name]),
            "retried": retried[name],
            "queue_ms_p50": pct(queue[name], 50),
            "queue_ms_p95": pct(queue[name], 95),
            "run_ms_p50": pct(run[name], 50),
            "run_ms_p95": pct(run[name], 95),
            "run_ms_max": max(run[name]),
            "run_ms_sum": sum(run[name]),
        }
        for name in queue
    }


def _ms(delta: timedelta) -> float:
    return delta.total_seconds() * 1000


def pct(values: Sequence[float], pct: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, len(ordered) * pct // 100)]


async def delay_timers_ms(
    histories: Sequence[WorkflowHistory], converter: DataConverter
) -> list[int]:
    """The durations (ms) of the legs' delay timers in a signal's histories (recognised by their
    summary, ``delay {account}``), as the audit reads them."""
    delays: list[int] = []
    for history in histories:
        for event in history.events:
            if not event.HasField("timer_started_event_attributes"):
                continue
            if not event.user_metadata.HasField("summary"):
                continue
            (summary,) = await converter.decode([event.user_metadata.summary], [str])
            if summaries.delay_timer_account(str(summary)) is None:
                continue
            timeout = event.timer_started_event_attributes.start_to_fire_timeout
            delays.append(round(timeout.ToTimedelta() / timedelta(milliseconds=1)))
    return delays


def event_counts(histories: Sequence[WorkflowHistory]) -> Counter[str]:
    """Events by type (``TIMER_STARTED``, ``ACTIVITY_TASK_SCHEDULED``, …) over the histories."""
    return Counter(_event_name(e) for history in histories for e in history.events)

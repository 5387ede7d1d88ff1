"""The bench's floor has the shape issue 22 asks for, read from its history on the
time-skipping server: zero delays, one no-op activity per leg and no timer; given delays, a
timer of each non-zero delay and then the activity. No timing is asserted."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Worker

from bench.floor import FloorWorkflow, arrivals, noop
from bench.history import event_counts


async def _floor_history(
    client: Client, executor: ThreadPoolExecutor, n: int, delays_ms: list[int] | None
) -> tuple[list[WorkflowHistory], int]:
    queue = f"bench-floor-{uuid.uuid4().hex[:8]}"
    workflow_id = f"bench-floor-shape-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[FloorWorkflow],
        activities=[noop],
        activity_executor=executor,
    ):
        handle = await client.start_workflow(
            FloorWorkflow.run, args=[n, delays_ms], id=workflow_id, task_queue=queue
        )
        assert await handle.result() == n
        history = await handle.fetch_history()
    return [history], len(arrivals([workflow_id]))


async def test_zero_delays_are_one_noop_activity_per_leg_and_no_timer(
    ts_client: Client, executor: ThreadPoolExecutor
) -> None:
    histories, ran = await _floor_history(ts_client, executor, 3, None)

    counts = event_counts(histories)
    assert counts["TIMER_STARTED"] == 0
    assert counts["ACTIVITY_TASK_SCHEDULED"] == 3
    assert counts["ACTIVITY_TASK_COMPLETED"] == 3
    assert ran == 3


async def test_given_delays_each_non_zero_one_is_a_timer_then_the_activity(
    ts_client: Client, executor: ThreadPoolExecutor
) -> None:
    histories, ran = await _floor_history(ts_client, executor, 3, [0, 1500, 2500])

    counts = event_counts(histories)
    assert counts["TIMER_STARTED"] == 2
    assert counts["ACTIVITY_TASK_SCHEDULED"] == 3
    timers = sorted(
        e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
        for e in histories[0].events
        if e.HasField("timer_started_event_attributes")
    )
    assert timers == [timedelta(milliseconds=1500), timedelta(milliseconds=2500)]
    assert ran == 3

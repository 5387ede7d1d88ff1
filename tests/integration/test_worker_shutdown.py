"""A worker stopped by SIGTERM while a slice follows its orders: it stops taking tasks, lets
the activity in flight finish within ``TEO_WORKER_SHUTDOWN_GRACE_S``, then exits 0. The real
``worker.py`` process, the dev server, PostgreSQL and the paper broker."""

from __future__ import annotations

import asyncio
import signal as signals
import subprocess
from decimal import Decimal
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from orchestrator.adapters.db.engine import Database
from orchestrator.domain.contracts.activities import Execution, activity_name
from orchestrator.domain.ids import signal_workflow_id
from orchestrator.domain.report import LegStatus
from orchestrator.services.submit import submit_signal
from tests.integration.test_end_to_end import (
    _terminate_if_running,
    dev_settings,
    stop_workers,
    worker_env,
    worker_process,
)
from tests.support import (
    account,
    book,
    broker_orders,
    load,
    paper_orders,
    poll_until,
    signal,
    uncorrelated_returns,
)

SLICE = activity_name(Execution.place_and_follow_slice)


async def test_sigterm_lets_the_slice_in_flight_finish_before_the_worker_exits(
    dev_server: WorkflowEnvironment, postgres_db: Database, tmp_path: Path
) -> None:
    """The paper broker fills each order 1.5 s after it arrives; SIGTERM comes once both are
    at the broker, unfilled. The slice completes in its first attempt before the process exits
    0 (with no grace it was cancelled, and only a retry on another worker would complete it);
    a second worker then ends the signal with one order per account."""
    ids = ["grace-1", "grace-2"]
    slow = {"latency_ms": 1500}
    load(
        postgres_db,
        book(*(account(i, paper=slow) for i in ids), returns=uncorrelated_returns(ids)),
    )
    settings = dev_settings(dev_server, postgres_db, delay_min_s=Decimal(0), delay_max_s=Decimal(0))
    client = dev_server.client
    env = worker_env(
        settings,
        TEO_DELAY_MIN_S="0",
        TEO_DELAY_MAX_S="0",
        TEO_WORKER_SHUTDOWN_GRACE_S="30",
        TEO_METRICS_PORT="0",
        TEO_TEMPORAL_METRICS_PORT="0",
        TEO_ARCHIVE_EVERY_S="0",
    )
    first = worker_process(env, tmp_path / "worker-1.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        handle = await submit_signal(client, postgres_db, settings, signal("it-grace"))

        def both_working() -> bool:
            orders = paper_orders(postgres_db)
            return len(orders) == 2 and all(o.filled_quantity == 0 for o in orders.values())

        await poll_until(both_working, timeout_s=60)
        first.send_signal(signals.SIGTERM)
        code = await asyncio.to_thread(first.wait, 60)
        history = await handle.fetch_history()
        scheduled = {
            e.event_id
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and e.activity_task_scheduled_event_attributes.activity_type.name == SLICE
        }
        slice_done = [
            e.activity_task_completed_event_attributes.scheduled_event_id
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
            and e.activity_task_completed_event_attributes.scheduled_event_id in scheduled
        ]
        attempts = [
            e.activity_task_started_event_attributes.attempt
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
            and e.activity_task_started_event_attributes.scheduled_event_id in scheduled
        ]

        second = worker_process(env, tmp_path / "worker-2.log")
        report = await handle.result()
    finally:
        stop_workers(first, second)
        await _terminate_if_running(client, signal_workflow_id("it-grace"))

    assert code == 0
    assert len(scheduled) == 1
    assert slice_done == list(scheduled) and attempts == [1]
    assert [line.status for line in report.accounts] == [LegStatus.FILLED] * 2
    assert broker_orders(postgres_db) == dict.fromkeys(ids, 1)
    log = (tmp_path / "worker-1.log").read_text()
    assert "activities in flight have 30.0 s to finish" in log

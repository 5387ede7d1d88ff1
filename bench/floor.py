"""The floor: a bare workflow doing, per leg, what any leg of the same shape must at least do on
Temporal.

The shape follows ours (``workflows/legs.py``): a leg whose delay is zero takes no timer and
runs one no-op activity; a leg with a delay first waits on one durable timer of that delay.
Given the delays our signal drew, the floor does the same waits; with zero delays it is one
no-op activity per leg and nothing else.

Kept in its own module with only temporalio imports: the workflow sandbox re-imports the module
that defines a workflow class, so it must be cheap and side-effect free. The activity runs
outside the sandbox, in the worker's thread pool, and notes when it ran (``ARRIVALS``): the
floor's counterpart of an order arriving at the broker.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

from temporalio import activity, workflow

ARRIVALS: dict[str, list[float]] = {}
"""Workflow id → wall-clock times (``time.time()``) at which its no-op activities ran."""
_ARRIVALS_LOCK = threading.Lock()


@activity.defn(name="bench-noop")
def noop() -> None:
    """A no-op activity, run on the worker's thread pool like the project's activities; it only
    notes when it ran."""
    at = time.time()
    workflow_id = activity.info().workflow_id or ""
    with _ARRIVALS_LOCK:
        ARRIVALS.setdefault(workflow_id, []).append(at)


def arrivals(workflow_ids: list[str]) -> list[float]:
    """When the no-op activities of these workflows ran (and forget them)."""
    with _ARRIVALS_LOCK:
        return sorted(t for wid in workflow_ids for t in ARRIVALS.pop(wid, []))


@workflow.defn(name="BenchFloorWorkflow")
class FloorWorkflow:
    """``n`` legs gathered; leg ``i`` waits ``delays_ms[i]`` on a durable timer when that is
    above zero (no timer otherwise, as ours), then runs one no-op activity. No delays given:
    every leg's delay is zero."""

    @workflow.run
    async def run(self, n: int, delays_ms: list[int] | None = None) -> int:
        delays = delays_ms if delays_ms is not None else [0] * n
        if len(delays) != n:
            raise ValueError(f"{n} legs but {len(delays)} delays")
        await asyncio.gather(*(self._leg(delay) for delay in delays))
        return n

    @staticmethod
    async def _leg(delay_ms: int) -> None:
        if delay_ms > 0:
            await workflow.sleep(timedelta(milliseconds=delay_ms))
        await workflow.execute_activity(noop, start_to_close_timeout=timedelta(seconds=30))

"""The floor: a bare workflow doing, per leg, what any leg must at least do on Temporal.

Kept in its own module with only temporalio imports: the workflow sandbox re-imports the module
that defines a workflow class, so it must be cheap and side-effect free.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bench-noop")
def noop() -> None:
    """A no-op activity, run on the worker's thread pool like the project's activities."""


@workflow.defn(name="BenchFloorWorkflow")
class FloorWorkflow:
    """``n`` coroutines, each a zero-length timer then one no-op activity, gathered."""

    @workflow.run
    async def run(self, n: int) -> int:
        await asyncio.gather(*(self._leg() for _ in range(n)))
        return n

    @staticmethod
    async def _leg() -> None:
        await workflow.sleep(0)
        await workflow.execute_activity(noop, start_to_close_timeout=timedelta(seconds=30))


@workflow.defn(name="BenchFloorTwoActivitiesWorkflow")
class FloorTwoActivitiesWorkflow:
    """Per leg two no-op activities in sequence, no timer. Not part of the floor's definition;
    reported alongside it (N <= 1000) as a reference without the floor's zero-length timer, which
    the dev server fires about a second late."""

    @workflow.run
    async def run(self, n: int) -> int:
        await asyncio.gather(*(self._leg() for _ in range(n)))
        return n

    @staticmethod
    async def _leg() -> None:
        for _ in range(2):
            await workflow.execute_activity(noop, start_to_close_timeout=timedelta(seconds=30))

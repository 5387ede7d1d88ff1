"""Legs due together go out together: the first orders of the legs that come due in the same
workflow task (or, with ``slice_window_ms``, within that window) are gathered per broker and
placed by one activity, ``Execution.place_and_follow_slice`` (see ``activities/order_slice.py``).
Each leg still has its own client order id, reservation and ledger row, and takes its slice's
result for its own order on its own path, as after ``place_and_follow_order``.

Deterministic: a slice is formed from the legs that joined before the workflow task's coroutines
ran out of work (``workflow.wait_condition`` resolves only then), in the order they came due,
so a replay forms the same slices.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from orchestrator.domain.contracts.activities import Execution
    from orchestrator.domain.contracts.payloads import (
        PlaceOrderRequest,
        PlaceSliceRequest,
        SliceLegResult,
    )
    from orchestrator.domain.settings import ExecutionSettings
    from workflows.steps import ORDER_RETRY, OrderAttempt, cancel_order, place_order

SLICE_MAX_ORDERS = 100
"""Orders of one slice at most (never more than a batch's legs, nor than the workflow's order
slots: each leg holds one). Bounds the payload (about 1 KB an order) and how many legs one
workflow task takes up at once when the slice returns; larger groups go out as several slices,
in parallel."""

SLICE_FOLLOW_MS = 2000
"""A slice follows its orders this long at most; one still working then is followed by its own
leg (``place_and_follow_order`` with ``resume``), so a slow order holds up no other leg."""


class _Alone:
    """A slice of one: the leg places its order itself, with the per-order activity (exactly
    as before slices: a staggered leg costs what it did)."""


class _Resume:
    """The order may be at the broker, working or unanswered: the leg follows it itself."""


ALONE = _Alone()
RESUME = _Resume()
Placed = OrderAttempt | _Alone | _Resume


@dataclass
class _Slice:
    broker: str
    requests: list[PlaceOrderRequest] = field(default_factory=list)
    waiting: dict[str, asyncio.Future[Placed]] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)
    task: asyncio.Task[None] | None = None


class Slicer:
    """Gathers legs' first orders into slices and places them; one per leg runner."""

    def __init__(self, execution: ExecutionSettings) -> None:
        self._execution = execution
        self._forming: dict[str, _Slice] = {}
        self._flushing = False
        self._flush_task: asyncio.Task[None] | None = None
        self._window = timedelta(milliseconds=execution.slice_window_ms)
        self._pull_until: datetime | None = None
        self._timers: dict[str, datetime] = {}
        self._arriving: set[str] = set()

    # ----------------------------------------------------------------------------------------
    # The window: legs on their timers that a forming slice wakes early

    def timer_started(self, account_id: str, due_at: datetime) -> None:
        self._timers[account_id] = due_at

    def pulled(self, due_at: datetime) -> bool:
        """A forming slice takes this leg now: it was due within the window anyway."""
        return self._pull_until is not None and due_at <= self._pull_until

    def woke(self, account_id: str) -> None:
        """The leg left its timer (fired, pulled or stopped). It joins a slice, or not, before
        its coroutine next waits: the slice forming waits for it no longer."""
        self._timers.pop(account_id, None)
        self._arriving.discard(account_id)

    # ----------------------------------------------------------------------------------------
    # Placing

    async def place(self, request: PlaceOrderRequest) -> OrderAttempt:
        """Place the leg's first order (with its reservation) in the slice forming now; what
        became of it, as ``place_order`` would say."""
        part, placed = self._join(request)
        try:
            result = await placed
        except asyncio.CancelledError:
            await self._leave(part, request)
            raise
        if isinstance(result, OrderAttempt):
            return result
        if isinstance(result, _Resume):
            request = request.model_copy(update={"resume": True})
        return await place_order(request, self._execution)

    def _join(self, request: PlaceOrderRequest) -> tuple[_Slice, asyncio.Future[Placed]]:
        part = self._forming.get(request.broker)
        if part is not None and len(part.requests) >= SLICE_MAX_ORDERS:
            self._launch(self._forming.pop(request.broker))
            part = None
        if part is None:
            part = self._forming[request.broker] = _Slice(request.broker)
        placed: asyncio.Future[Placed] = asyncio.get_running_loop().create_future()
        part.requests.append(request)
        part.waiting[request.client_order_id] = placed
        if not self._flushing:
            self._flushing = True
            if self._window:
                self._pull_until = workflow.now() + self._window
                self._arriving = {a for a, due in self._timers.items() if due <= self._pull_until}
            self._flush_task = asyncio.create_task(self._flush())
        return part, placed

    async def _flush(self) -> None:
        """Once every leg due now has joined (the workflow task's coroutines have run, and
        every leg the window woke has come), the slices forming go."""
        await workflow.wait_condition(lambda: not self._arriving)
        self._flushing = False
        self._pull_until = None
        forming, self._forming = self._forming, {}
        for part in forming.values():
            self._launch(part)

    def _launch(self, part: _Slice) -> None:
        if len(part.requests) == 1:
            for placed in part.waiting.values():
                if not placed.done():
                    placed.set_result(ALONE)
            return
        part.task = asyncio.create_task(self._run(part))

    async def _run(self, part: _Slice) -> None:
        execution = self._execution
        n = len(part.requests)
        paced = math.ceil(n / execution.broker_orders_per_s) if execution.broker_orders_per_s else 0
        handle = workflow.start_activity_method(
            Execution.place_and_follow_slice,
            PlaceSliceRequest(orders=part.requests, follow_ms=SLICE_FOLLOW_MS),
            task_queue=execution.broker_queue(part.broker),
            start_to_close_timeout=timedelta(seconds=execution.order_start_to_close_s + paced),
            schedule_to_close_timeout=timedelta(
                seconds=execution.order_schedule_to_close_s + paced
            ),
            heartbeat_timeout=timedelta(seconds=execution.order_heartbeat_s),
            retry_policy=ORDER_RETRY,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=f"slice of {n} orders: {part.requests[0].client_order_id} …",
        )
        results: dict[str, Placed] = {}
        try:
            outcome = await handle
            results = {r.client_order_id: attempt_of(r) for r in outcome.results}
        except asyncio.CancelledError:
            # Every leg of the slice was cancelled (see _leave): no order stays working.
            handle.cancel()
            with contextlib.suppress(ActivityError, asyncio.CancelledError):
                await handle
        except ActivityError:
            # The slice could not finish (retries spent): each leg asks the broker about its
            # own order and takes it from there.
            pass
        for cid, placed in part.waiting.items():
            if not placed.done():
                placed.set_result(results.get(cid, RESUME))

    async def _leave(self, part: _Slice, request: PlaceOrderRequest) -> None:
        """The leg was cancelled while its slice was forming or working. A slice not sent
        yet goes without it; one working is cancelled once all its legs are, and waited for;
        then the leg cancels its own order at the broker, as a single order's leg does."""
        cid = request.client_order_id
        if part.task is None and self._forming.get(part.broker) is part:
            part.requests.remove(request)
            del part.waiting[cid]
            if not part.requests:
                del self._forming[part.broker]
            return
        part.cancelled.add(cid)
        task = part.task
        if task is not None:
            if part.cancelled >= set(part.waiting):
                task.cancel()
            await workflow.wait_condition(task.done)
        await cancel_order(
            request.signal_id,
            request.account_id,
            cid,
            "cancelled",
            queue=self._execution.broker_queue(request.broker),
        )


def attempt_of(result: SliceLegResult) -> Placed:
    """One leg's result of a slice, as the per-order path classifies it."""
    if result.denied is not None:
        return OrderAttempt(denied=(result.denied, result.detail))
    if result.refused is not None:
        return OrderAttempt(refused=(result.refused, result.detail))
    if result.rejected is not None:
        return OrderAttempt(rejected=result.rejected)
    if result.failure is not None:
        return OrderAttempt(failure=result.failure)
    if result.working or result.outcome is None:
        return RESUME
    return OrderAttempt(outcome=result.outcome)

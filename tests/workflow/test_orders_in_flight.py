"""A signal's orders in flight (``max_orders_in_flight``), on the time-skipping server with the
real activities, SQLite and the paper broker: the bound holds, batches share it out, every
leg still trades, and operators reach the legs waiting for a slot."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.execution import ExecutionActivities
from orchestrator.adapters.brokers.paper import PaperBroker
from orchestrator.adapters.db.engine import Database
from orchestrator.config import Settings
from orchestrator.domain.contracts.operators import HaltRequest, PauseAccount
from orchestrator.domain.contracts.payloads import (
    LegBatchInput,
    PlaceOrderRequest,
    PlaceSliceRequest,
    SliceOutcome,
)
from orchestrator.domain.orders import OrderOutcome
from orchestrator.domain.progress import SignalProgress
from orchestrator.domain.report import LegStatus, SignalReport
from orchestrator.services.history import fetch_with_children
from orchestrator.services.submit import submit_signal
from tests.support import account, book, broker_orders, load, paper_orders, poll_until, signal
from worker import build_worker
from workflows.batch import LegBatchWorkflow
from workflows.signal import SignalExecutionWorkflow

SLOW = {"latency_ms": 400, "slices": 2}
"""Fills that take long enough for every order let through at once to overlap."""


class CountingActivities(ExecutionActivities):
    """The real activities, counting how many orders their activities work at once (a slice
    works all of its orders)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        super().__init__(
            db, PaperBroker(db), service=settings.service_settings(), poll_interval_s=0.05
        )
        self._lock = threading.Lock()
        self._running = 0
        self.most = 0

    @activity.defn
    def place_and_follow_order(self, request: PlaceOrderRequest) -> OrderOutcome:
        with self._counted(1):
            return super().place_and_follow_order(request)

    @activity.defn
    def place_and_follow_slice(self, request: PlaceSliceRequest) -> SliceOutcome:
        with self._counted(len(request.orders)):
            return super().place_and_follow_slice(request)

    @contextlib.contextmanager
    def _counted(self, orders: int) -> Iterator[None]:
        with self._lock:
            self._running += orders
            self.most = max(self.most, self._running)
        try:
            yield
        finally:
            with self._lock:
                self._running -= orders


@pytest.fixture
def settings(test_settings: Settings) -> Settings:
    return test_settings.model_copy(update={"delay_min_s": Decimal(0), "delay_max_s": Decimal(0)})


async def test_a_signal_keeps_at_most_its_orders_in_flight_and_every_leg_fills(
    ts_client: Client, sqlite_db: Database, settings: Settings, executor
) -> None:
    ids = [f"acc-{i}" for i in range(1, 6)]
    load(sqlite_db, book(*(account(i, paper=SLOW) for i in ids)))
    capped = settings.model_copy(update={"max_orders_in_flight": 2})
    activities = CountingActivities(sqlite_db, capped)
    async with build_worker(ts_client, capped, activities, executor):
        handle = await submit_signal(ts_client, sqlite_db, capped, signal("cap-one"))
        report: SignalReport = await handle.result()

    assert [a.status for a in report.accounts] == [LegStatus.FILLED] * 5
    assert broker_orders(sqlite_db) == dict.fromkeys(ids, 1)
    # Two at once, never more: the bound is used, and held.
    assert activities.most == 2


async def test_batches_share_the_signals_orders_in_flight(
    ts_client: Client, sqlite_db: Database, settings: Settings, executor
) -> None:
    ids = [f"acc-{i}" for i in range(1, 7)]
    load(sqlite_db, book(*(account(i, paper=SLOW) for i in ids)))
    capped = settings.model_copy(update={"max_orders_in_flight": 3, "batch_size": 2})
    activities = CountingActivities(sqlite_db, capped)
    async with build_worker(ts_client, capped, activities, executor):
        handle = await submit_signal(ts_client, sqlite_db, capped, signal("cap-batches"))
        report: SignalReport = await handle.result()
        histories = await fetch_with_children(ts_client, handle.id)

    assert [a.status for a in report.accounts] == [LegStatus.FILLED] * 6
    assert report.batches and len(report.batches) == 3
    # Each of the three batches of two legs has one order working at a time: three in all,
    # where each batch alone, under the signal's bound of three, would have sent both.
    assert activities.most == 3
    shares = {batch.execution.max_orders_in_flight for batch in batch_inputs(histories)}
    assert shares == {1}


async def test_batches_share_the_orders_in_flight_by_their_legs(
    ts_client: Client, sqlite_db: Database, settings: Settings, executor
) -> None:
    """Five legs in batches of two, two and one, and a bound of five: each batch takes its
    legs' share (2, 2, 1), so every order goes at once. An equal share (five among three
    batches: one each) held three of them back."""
    ids = [f"acc-{i}" for i in range(1, 6)]
    load(sqlite_db, book(*(account(i, paper=SLOW) for i in ids)))
    capped = settings.model_copy(update={"max_orders_in_flight": 5, "batch_size": 2})
    activities = CountingActivities(sqlite_db, capped)
    async with build_worker(ts_client, capped, activities, executor):
        handle = await submit_signal(ts_client, sqlite_db, capped, signal("share-by-legs"))
        report: SignalReport = await handle.result()
        histories = await fetch_with_children(ts_client, handle.id)

    assert [a.status for a in report.accounts] == [LegStatus.FILLED] * 5
    inputs = batch_inputs(histories)
    assert [(len(i.legs), i.execution.max_orders_in_flight) for i in inputs] == [
        (2, 2),
        (2, 2),
        (1, 1),
    ]
    assert activities.most == 5


def batch_inputs(histories: list[Any]) -> list[LegBatchInput]:
    """The input of every batch workflow among ``histories``, in workflow id order."""
    return [
        LegBatchInput.model_validate_json(
            h.events[0].workflow_execution_started_event_attributes.input.payloads[0].data
        )
        for h in sorted(histories, key=lambda h: h.workflow_id)
        if h.events[0].workflow_execution_started_event_attributes.workflow_type.name
        == LegBatchWorkflow.__name__
    ]


async def progress_of(handle: WorkflowHandle[Any, Any]) -> SignalProgress:
    return await handle.query(SignalExecutionWorkflow.progress)


async def test_operators_reach_legs_waiting_for_an_order_slot(
    time_skipping_env: WorkflowEnvironment,
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    executor,
) -> None:
    """One slot, every order stalls at the broker: one leg works, the others wait for the
    slot. A pause skips a waiting leg at once; a halt that cancels the working order frees the
    slot, and the leg it passes to, halted too, sends nothing."""
    ids = ["acc-1", "acc-2", "acc-3"]
    load(sqlite_db, book(*(account(i, paper={"stall_after": 0}) for i in ids)))
    capped = settings.model_copy(update={"max_orders_in_flight": 1})
    activities = ExecutionActivities(
        sqlite_db, PaperBroker(sqlite_db), service=capped.service_settings(), poll_interval_s=0.05
    )
    async with build_worker(ts_client, capped, activities, executor):
        handle = await submit_signal(ts_client, sqlite_db, capped, signal("cap-ops"))
        with time_skipping_env.auto_time_skipping_disabled():

            async def one_working_two_waiting() -> bool:
                legs = (await progress_of(handle)).legs
                waiting = [
                    leg
                    for leg in legs
                    if leg.status is LegStatus.WAITING and "order slot" in (leg.reason or "")
                ]
                working = [leg for leg in legs if leg.status is LegStatus.WORKING]
                return len(waiting) == 2 and len(working) == 1

            await poll_until(one_working_two_waiting, timeout_s=30)
            legs = (await progress_of(handle)).legs
            working = next(leg.account_id for leg in legs if leg.status is LegStatus.WORKING)
            first, second = [leg.account_id for leg in legs if leg.status is LegStatus.WAITING]
            await handle.signal(
                SignalExecutionWorkflow.pause_account,
                PauseAccount(account_id=first, operator="desk", reason="client call"),
            )

            async def skipped() -> bool:
                statuses = {leg.account_id: leg.status for leg in (await progress_of(handle)).legs}
                return statuses[first] is LegStatus.SKIPPED_PAUSED

            await poll_until(skipped, timeout_s=10)
            answer = await handle.execute_update(
                SignalExecutionWorkflow.halt,
                HaltRequest(
                    operator="risk", reason="outage", cancel_working=True, from_kill_switch=True
                ),
            )
        report: SignalReport = await handle.result()

    assert (answer.legs_stopped, answer.orders_cancelled) == (1, 1)
    lines = {line.account_id: line.status for line in report.accounts}
    assert lines == {
        working: LegStatus.CANCELLED,
        first: LegStatus.SKIPPED_PAUSED,
        second: LegStatus.HALTED,
    }
    # Only the working leg's order ever reached the broker, and it was cancelled there.
    assert list(paper_orders(sqlite_db)) == [f"cap-ops:{working}:1"]
    assert paper_orders(sqlite_db)[f"cap-ops:{working}:1"].status == "CANCELLED"

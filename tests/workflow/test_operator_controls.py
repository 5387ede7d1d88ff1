"""Operator controls on the time-skipping server: pause, halt, cancel, validators, and a pause
racing the reservation. (The broadcast through visibility is tested on the dev server.)"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from activities.execution import ExecutionActivities
from orchestrator.adapters.brokers.paper import PaperBroker
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.config import Settings
from orchestrator.domain.book import AccountStatus
from orchestrator.domain.contracts.operators import (
    CancelSignalRequest,
    HaltRequest,
    PauseAccount,
    StopResult,
)
from orchestrator.domain.contracts.payloads import PlaceOrderRequest
from orchestrator.domain.orders import OrderOutcome
from orchestrator.domain.progress import SignalProgress
from orchestrator.domain.report import LegStatus, SignalReport
from orchestrator.domain.values import DenialReason
from orchestrator.services.submit import submit_signal
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
from worker import build_worker
from workflows.signal import SignalExecutionWorkflow


@pytest.fixture
def settings(test_settings: Settings) -> Settings:
    return test_settings.model_copy(update={"delay_min_s": Decimal(30), "delay_max_s": Decimal(30)})


async def progress_of(handle: WorkflowHandle[Any, Any]) -> SignalProgress:
    return await handle.query(SignalExecutionWorkflow.progress)


async def wait_for(handle: WorkflowHandle[Any, Any], statuses: set[LegStatus], legs: int) -> None:
    async def reached() -> bool:
        progress = await progress_of(handle)
        return len(progress.legs) == legs and {leg.status for leg in progress.legs} <= statuses

    await poll_until(reached)


async def test_pause_during_a_30s_delay_skips_the_leg_at_once_with_no_order(
    time_skipping_env: WorkflowEnvironment,
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    harness_factory,
) -> None:
    ids = ["stays", "paused"]
    load(sqlite_db, book(*(account(i) for i in ids), returns=uncorrelated_returns(ids)))
    async with harness_factory(ts_client, sqlite_db, settings).running():
        handle = await submit_signal(ts_client, sqlite_db, settings, signal("op-pause"))
        with time_skipping_env.auto_time_skipping_disabled():
            await wait_for(handle, {LegStatus.WAITING}, 2)
            await handle.signal(
                SignalExecutionWorkflow.pause_account,
                PauseAccount(account_id="paused", operator="jane", reason="margin call"),
            )
            # Virtual time is held still: only the signal can have ended the leg.
            await poll_until(
                lambda: _leg_status(handle, "paused", LegStatus.SKIPPED_PAUSED), timeout_s=10
            )
            progress = await progress_of(handle)
            assert {leg.account_id: leg.status for leg in progress.legs}["stays"] is (
                LegStatus.WAITING
            )
        report: SignalReport = await handle.result()
        history = await handle.fetch_history()

    lines = {line.account_id: line for line in report.accounts}
    assert lines["paused"].status is LegStatus.SKIPPED_PAUSED
    assert lines["paused"].reason == "account paused by jane: margin call"
    assert lines["stays"].status is LegStatus.FILLED
    assert broker_orders(sqlite_db) == {"stays": 1}
    # The operator's action, who and why, is in the history.
    signalled = [
        e.workflow_execution_signaled_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
    assert [s.signal_name for s in signalled] == ["pause_account"]
    assert b"jane" in signalled[0].input.payloads[0].data


async def _leg_status(handle: WorkflowHandle[Any, Any], account_id: str, status: LegStatus) -> bool:
    progress = await progress_of(handle)
    return any(leg.account_id == account_id and leg.status is status for leg in progress.legs)


async def test_pause_with_reroute_moves_the_waiting_leg_to_a_reserve_account(
    time_skipping_env: WorkflowEnvironment,
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    harness_factory,
) -> None:
    load(sqlite_db, book(account("paused"), account("spare", reserve_only=True)))
    async with harness_factory(ts_client, sqlite_db, settings).running():
        handle = await submit_signal(ts_client, sqlite_db, settings, signal("op-reroute"))
        with time_skipping_env.auto_time_skipping_disabled():
            await wait_for(handle, {LegStatus.WAITING}, 1)
            await handle.signal(
                SignalExecutionWorkflow.pause_account,
                PauseAccount(account_id="paused", operator="jane", reason="x", reroute=True),
            )
        report: SignalReport = await handle.result()

    lines = {line.account_id: line for line in report.accounts}
    assert lines["paused"].status is LegStatus.SKIPPED_PAUSED
    assert lines["spare"].rerouted_from == "paused"
    assert broker_orders(sqlite_db) == {"spare": 1}


async def test_halt_stops_every_waiting_leg_and_answers_with_counts(
    time_skipping_env: WorkflowEnvironment,
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    harness_factory,
) -> None:
    ids = ["a", "b", "c"]
    load(sqlite_db, book(*(account(i) for i in ids), returns=uncorrelated_returns(ids)))
    async with harness_factory(ts_client, sqlite_db, settings).running():
        handle = await submit_signal(ts_client, sqlite_db, settings, signal("op-halt"))
        with time_skipping_env.auto_time_skipping_disabled():
            await wait_for(handle, {LegStatus.WAITING}, 3)
            answer = await handle.execute_update(
                SignalExecutionWorkflow.halt,
                HaltRequest(operator="risk", reason="outage", from_kill_switch=True),
            )
        report: SignalReport = await handle.result()

    assert answer == StopResult(workflow_id="signal-op-halt", legs_stopped=3, orders_cancelled=0)
    assert {line.status for line in report.accounts} == {LegStatus.HALTED}
    assert broker_orders(sqlite_db) == {}


async def test_halt_without_a_reason_is_refused_and_says_why(
    time_skipping_env: WorkflowEnvironment,
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    harness_factory,
) -> None:
    load(sqlite_db, book(account("a")))
    async with harness_factory(ts_client, sqlite_db, settings).running():
        handle = await submit_signal(ts_client, sqlite_db, settings, signal("op-refused"))
        with time_skipping_env.auto_time_skipping_disabled():
            await wait_for(handle, {LegStatus.WAITING}, 1)
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(
                    SignalExecutionWorkflow.halt, HaltRequest(operator="risk", reason=" ")
                )
        report: SignalReport = await handle.result()

    assert "halt refused: give a reason" in str(refused.value.cause)
    # The refused halt changed nothing: the leg still traded.
    assert report.accounts[0].status is LegStatus.FILLED


async def test_cancel_cancels_the_working_order_at_the_broker(
    time_skipping_env: WorkflowEnvironment,
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    harness_factory,
) -> None:
    load(sqlite_db, book(account("stuck", paper={"stall_after": 0}), account("waits")))
    quick = settings.model_copy(update={"delay_min_s": Decimal(0), "delay_max_s": Decimal(0)})
    async with harness_factory(ts_client, sqlite_db, quick).running():
        handle = await submit_signal(ts_client, sqlite_db, quick, signal("op-cancel"))
        with time_skipping_env.auto_time_skipping_disabled():
            await poll_until(lambda: len(paper_orders(sqlite_db)) == 2, timeout_s=30)
            answer = await handle.execute_update(
                SignalExecutionWorkflow.cancel_signal,
                CancelSignalRequest(operator="desk", reason="wrong symbol"),
            )
        report: SignalReport = await handle.result()

    assert answer.orders_cancelled >= 1
    assert report.status == "CANCELLED"
    lines = {line.account_id: line for line in report.accounts}
    assert lines["stuck"].status is LegStatus.CANCELLED
    assert paper_orders(sqlite_db)["op-cancel:stuck:1"].status == "CANCELLED"


class PausingActivities(ExecutionActivities):
    """Injects an operator's pause between a leg's timer and its reservation (which the order
    activity makes)."""

    @activity.defn
    def place_and_follow_order(self, request: PlaceOrderRequest) -> OrderOutcome:
        assert request.reservation is not None
        with self._db.transaction() as session:
            repository.set_account_status(
                session, request.account_id, AccountStatus.PAUSED, "race", _now()
            )
        return super().place_and_follow_order(request)


def _now() -> datetime:
    return datetime.now(UTC)


async def test_pause_racing_the_reservation_places_no_order(
    ts_client: Client, sqlite_db: Database, settings: Settings, executor
) -> None:
    load(sqlite_db, book(account("raced")))
    activities = PausingActivities(
        sqlite_db,
        PaperBroker(sqlite_db),
        service=settings.service_settings(),
        poll_interval_s=0.05,
    )
    async with build_worker(ts_client, settings, activities, executor):
        handle = await submit_signal(ts_client, sqlite_db, settings, signal("op-race"))
        report: SignalReport = await handle.result()

    line = report.accounts[0]
    assert (line.status, line.denial) == (LegStatus.DENIED, DenialReason.PAUSED)
    assert broker_orders(sqlite_db) == {}


async def test_halt_with_cancel_working_cancels_the_order_at_the_broker(
    time_skipping_env: WorkflowEnvironment,
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    harness_factory,
) -> None:
    load(sqlite_db, book(account("stuck", paper={"stall_after": 0})))
    quick = settings.model_copy(update={"delay_min_s": Decimal(0), "delay_max_s": Decimal(0)})
    async with harness_factory(ts_client, sqlite_db, quick).running():
        handle = await submit_signal(ts_client, sqlite_db, quick, signal("op-halt-working"))
        with time_skipping_env.auto_time_skipping_disabled():
            await poll_until(lambda: len(paper_orders(sqlite_db)) == 1, timeout_s=30)
            answer = await handle.execute_update(
                SignalExecutionWorkflow.halt,
                HaltRequest(
                    operator="risk", reason="outage", cancel_working=True, from_kill_switch=True
                ),
            )
        report: SignalReport = await handle.result()

    assert (answer.legs_stopped, answer.orders_cancelled) == (0, 1)
    assert report.accounts[0].status is LegStatus.CANCELLED
    assert paper_orders(sqlite_db)["op-halt-working:stuck:1"].status == "CANCELLED"


async def test_pause_after_the_order_was_sent_leaves_it_alone_and_says_so(
    time_skipping_env: WorkflowEnvironment,
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    harness_factory,
) -> None:
    slow = {"latency_ms": 3000, "slices": 2}
    load(sqlite_db, book(account("sent", paper=slow)))
    quick = settings.model_copy(update={"delay_min_s": Decimal(0), "delay_max_s": Decimal(0)})
    async with harness_factory(ts_client, sqlite_db, quick).running():
        handle = await submit_signal(ts_client, sqlite_db, quick, signal("op-late-pause"))
        with time_skipping_env.auto_time_skipping_disabled():
            await poll_until(lambda: len(paper_orders(sqlite_db)) == 1, timeout_s=30)
            await handle.signal(
                SignalExecutionWorkflow.pause_account,
                PauseAccount(account_id="sent", operator="jane", reason="too late"),
            )

            async def noted() -> bool:
                progress = await progress_of(handle)
                reason = progress.legs[0].reason or ""
                return "the order is not touched" in reason

            await poll_until(noted, timeout_s=10)
        report: SignalReport = await handle.result()

    assert report.accounts[0].status is LegStatus.FILLED
    assert paper_orders(sqlite_db)["op-late-pause:sent:1"].status == "FILLED"

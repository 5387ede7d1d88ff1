"""Entries expire, on the time-skipping server with the real activities, SQLite and the paper
broker: a leg whose order could not leave by the signal's deadline (its start plus
``TEO_ENTRY_TTL_S``, or its own ``valid_until``) is denied EXPIRED and sends nothing, checked
after its timer and after a wait for an order slot; a completion past the deadline stops."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.execution import ExecutionActivities
from orchestrator.adapters.brokers.paper import PaperBroker
from orchestrator.adapters.db.engine import Database
from orchestrator.config import Settings
from orchestrator.domain.contracts.operators import PauseAccount
from orchestrator.domain.report import AccountReport, CompletionStop, LegStatus, SignalReport
from orchestrator.domain.values import DenialReason
from orchestrator.services.submit import submit_signal
from tests.support import (
    account,
    book,
    broker_orders,
    load,
    poll_until,
    reservations,
    signal,
    uncorrelated_returns,
)
from worker import build_worker
from workflows.signal import SignalExecutionWorkflow

IDS = ["acc-1", "acc-2"]


@pytest.fixture
def settings(test_settings: Settings) -> Settings:
    """Every leg waits 30 s on its timer."""
    return test_settings.model_copy(
        update={"delay_min_s": Decimal(30), "delay_max_s": Decimal(30), "size_variance": Decimal(0)}
    )


def lines_of(report: SignalReport) -> dict[str, AccountReport]:
    return {line.account_id: line for line in report.accounts}


async def run(
    client: Client, db: Database, settings: Settings, signal_id: str, **overrides: object
) -> dict[str, AccountReport]:
    handle = await submit_signal(client, db, settings, signal(signal_id, **overrides))
    return lines_of(await handle.result())


def assert_expired(line: AccountReport) -> None:
    assert (line.status, line.denial) == (LegStatus.DENIED, DenialReason.EXPIRED)
    assert line.reason is not None and "the market has moved on" in line.reason


async def test_legs_still_on_their_timer_when_the_ttl_passes_are_denied_expired(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    load(sqlite_db, book(*(account(i) for i in IDS), returns=uncorrelated_returns(IDS)))
    short = settings.model_copy(update={"entry_ttl_s": 10})
    async with harness_factory(ts_client, sqlite_db, short).running():
        lines = await run(ts_client, sqlite_db, short, "exp-ttl")

    for account_id in IDS:
        assert_expired(lines[account_id])
    assert broker_orders(sqlite_db) == {}
    assert reservations(sqlite_db) == []


async def test_a_ttl_of_zero_never_expires(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    load(sqlite_db, book(account("acc")))
    never = settings.model_copy(
        update={"entry_ttl_s": 0, "delay_min_s": Decimal(3600), "delay_max_s": Decimal(3600)}
    )
    async with harness_factory(ts_client, sqlite_db, never).running():
        lines = await run(ts_client, sqlite_db, never, "exp-never")

    assert lines["acc"].status is LegStatus.FILLED


async def test_valid_until_before_the_ttl_expires_the_legs_it_overrides(
    time_skipping_env: WorkflowEnvironment,
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    harness_factory,
) -> None:
    load(sqlite_db, book(account("acc")))
    long_ttl = settings.model_copy(update={"entry_ttl_s": 600})
    valid_until = await time_skipping_env.get_current_time() + timedelta(seconds=15)
    async with harness_factory(ts_client, sqlite_db, long_ttl).running():
        lines = await run(ts_client, sqlite_db, long_ttl, "exp-until", valid_until=valid_until)

    assert_expired(lines["acc"])
    assert valid_until.isoformat(timespec="seconds") in (lines["acc"].reason or "")
    assert broker_orders(sqlite_db) == {}


async def test_valid_until_after_the_ttl_lets_the_legs_go(
    time_skipping_env: WorkflowEnvironment,
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    harness_factory,
) -> None:
    load(sqlite_db, book(account("acc")))
    short = settings.model_copy(update={"entry_ttl_s": 10})
    valid_until = await time_skipping_env.get_current_time() + timedelta(hours=1)
    async with harness_factory(ts_client, sqlite_db, short).running():
        lines = await run(ts_client, sqlite_db, short, "exp-later", valid_until=valid_until)

    assert lines["acc"].status is LegStatus.FILLED


class ShiftedClock:
    """The wall clock, moved forward only when told: the paper broker's, so a test decides
    when an order's latency has passed."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


async def past_the_deadline(
    env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any], ttl_s: int
) -> Callable[[], Awaitable[bool]]:
    started = (await handle.describe()).start_time

    async def passed() -> bool:
        return await env.get_current_time() > started + timedelta(seconds=ttl_s)

    return passed


async def test_a_leg_that_waited_past_the_deadline_for_an_order_slot_is_denied_expired(
    time_skipping_env: WorkflowEnvironment,
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    executor,
) -> None:
    """One order slot; the first order takes until the test moves the broker's clock. The
    other leg, due at once, waits for the slot past the deadline: once it gets the slot, it
    is denied EXPIRED and sends nothing."""
    slow = {"latency_ms": 10_000}
    load(sqlite_db, book(*(account(i, paper=slow) for i in IDS), returns=uncorrelated_returns(IDS)))
    ttl_s = 5
    capped = settings.model_copy(
        update={
            "max_orders_in_flight": 1,
            "delay_min_s": Decimal(0),
            "delay_max_s": Decimal(0),
            "entry_ttl_s": ttl_s,
        }
    )
    clock = ShiftedClock()
    activities = ExecutionActivities(
        sqlite_db,
        PaperBroker(sqlite_db, clock=clock),
        service=capped.service_settings(),
        poll_interval_s=0.05,
    )
    async with build_worker(ts_client, capped, activities, executor):
        handle = await submit_signal(ts_client, sqlite_db, capped, signal("exp-slot"))
        with time_skipping_env.auto_time_skipping_disabled():

            async def one_working_one_waiting() -> bool:
                legs = (await handle.query(SignalExecutionWorkflow.progress)).legs
                return sorted(leg.status for leg in legs) == [
                    LegStatus.WAITING,
                    LegStatus.WORKING,
                ]

            await poll_until(one_working_one_waiting)
            await poll_until(await past_the_deadline(time_skipping_env, handle, ttl_s))
            clock.offset = timedelta(seconds=11)  # the first order fills
            lines = lines_of(await handle.result())

    statuses = sorted((line.status, line.denial) for line in lines.values())
    assert statuses == [(LegStatus.DENIED, DenialReason.EXPIRED), (LegStatus.FILLED, None)]
    filled = next(a for a, line in lines.items() if line.status is LegStatus.FILLED)
    assert broker_orders(sqlite_db) == {filled: 1}


async def test_a_completion_past_the_deadline_sends_nothing_and_stops_expired(
    time_skipping_env: WorkflowEnvironment,
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    executor,
) -> None:
    """The first order fills half, after the deadline: the completion for the rest is not
    sent; what filled stays filled."""
    half_slow = {"fill": "partial", "partial_ratio": "0.5", "latency_ms": 10_000}
    load(sqlite_db, book(account("acc", paper=half_slow)))
    ttl_s = 5
    quick = settings.model_copy(
        update={"delay_min_s": Decimal(0), "delay_max_s": Decimal(0), "entry_ttl_s": ttl_s}
    )
    clock = ShiftedClock()
    activities = ExecutionActivities(
        sqlite_db,
        PaperBroker(sqlite_db, clock=clock),
        service=quick.service_settings(),
        poll_interval_s=0.05,
    )
    async with build_worker(ts_client, quick, activities, executor):
        handle = await submit_signal(ts_client, sqlite_db, quick, signal("exp-completion"))
        with time_skipping_env.auto_time_skipping_disabled():
            await poll_until(lambda: broker_orders(sqlite_db) == {"acc": 1})
            await poll_until(await past_the_deadline(time_skipping_env, handle, ttl_s))
            clock.offset = timedelta(seconds=11)
            line = lines_of(await handle.result())["acc"]

    assert line.status is LegStatus.PARTIALLY_FILLED
    assert line.completion is not None
    assert line.completion.stopped is CompletionStop.EXPIRED
    assert line.completion.attempts == 0
    assert broker_orders(sqlite_db) == {"acc": 1}


async def test_a_reroute_past_the_deadline_sends_nothing_to_its_target(
    time_skipping_env: WorkflowEnvironment,
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    harness_factory,
) -> None:
    """A leg on its timer is paused with reroute after the deadline: its reroute's target is
    sized, then denied EXPIRED instead of sent."""
    load(sqlite_db, book(account("paused"), account("spare", reserve_only=True)))
    ttl_s = 5
    short = settings.model_copy(update={"entry_ttl_s": ttl_s})
    async with harness_factory(ts_client, sqlite_db, short).running():
        handle = await submit_signal(ts_client, sqlite_db, short, signal("exp-reroute"))
        with time_skipping_env.auto_time_skipping_disabled():
            await poll_until(await past_the_deadline(time_skipping_env, handle, ttl_s))
            await handle.signal(
                SignalExecutionWorkflow.pause_account,
                PauseAccount(account_id="paused", operator="desk", reason="x", reroute=True),
            )
            line = lines_of(await handle.result())["paused"]

    assert line.status is LegStatus.SKIPPED_PAUSED
    assert line.reroute is not None
    [hop] = line.reroute.hops
    assert (hop.to_account, hop.outcome) == ("spare", LegStatus.DENIED)
    assert hop.reason.startswith(f"{DenialReason.EXPIRED}: entry expired")
    assert broker_orders(sqlite_db) == {}

"""SignalExecutionWorkflow on the time-skipping server, with the real activities, a real
SQLite database and the paper broker."""

from __future__ import annotations

from decimal import Decimal

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from orchestrator.db.engine import Database
from orchestrator.db.schema import AccountRow, SignalRow
from orchestrator.errors import DuplicateSignal, ValidationFailed
from orchestrator.models import DenialReason, LegStatus, SignalProgress
from orchestrator.service import submit_signal
from orchestrator.settings import Settings
from tests.support import (
    account,
    book,
    broker_orders,
    ledger_orders,
    load,
    poll_until,
    reservations,
    signal,
    uncorrelated_returns,
)
from workflows.signal import SignalExecutionWorkflow


@pytest.fixture
def settings(test_settings: Settings) -> Settings:
    return test_settings.model_copy(update={"delay_min_s": Decimal(30), "delay_max_s": Decimal(30)})


async def test_signal_with_30s_delays_fills_every_account_in_virtual_time(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    ids = ["acc-1", "acc-2", "acc-3"]
    load(sqlite_db, book(*(account(i) for i in ids), returns=uncorrelated_returns(ids)))
    harness = harness_factory(ts_client, sqlite_db, settings)
    async with harness.running():
        handle = await submit_signal(ts_client, sqlite_db, settings, signal("ts-fill"))
        report = await handle.result()

    assert [a.status for a in report.accounts] == [LegStatus.FILLED] * 3
    assert all(a.delay_ms == 30_000 for a in report.accounts)
    assert all(a.latency_ms is not None and a.latency_ms >= 30_000 for a in report.accounts)
    assert broker_orders(sqlite_db) == {"acc-1": 1, "acc-2": 1, "acc-3": 1}
    assert report.filled_total == report.requested_total > 0
    assert {r.status for r in reservations(sqlite_db)} == {"SETTLED"}


async def test_duplicate_submission_starts_one_workflow_and_one_set_of_orders(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    load(sqlite_db, book(account("acc-1"), account("acc-2")))
    harness = harness_factory(ts_client, sqlite_db, settings)
    async with harness.running():
        handle = await submit_signal(ts_client, sqlite_db, settings, signal("ts-dup"))
        with pytest.raises(DuplicateSignal):
            await submit_signal(ts_client, sqlite_db, settings, signal("ts-dup"))
        await handle.result()
        with pytest.raises(DuplicateSignal):
            await submit_signal(ts_client, sqlite_db, settings, signal("ts-dup"))
    assert broker_orders(sqlite_db) == {"acc-1": 1, "acc-2": 1}
    assert len(ledger_orders(sqlite_db)) == 2


async def test_every_leg_outcome_in_one_signal(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    load(
        sqlite_db,
        book(
            account("fills"),
            account(
                "partial",
                paper={"fill": "partial", "partial_ratio": "0.5", "slices": 2, "partial_orders": 1},
            ),
            account("rejects", paper={"fill": "reject", "reject_text": "Market closed [10018]"}),
            account("expires", paper={"fill": "partial", "partial_ratio": "0.001"}),
            account("paused", status="PAUSED"),
            account("no-margin", free_margin="1"),
        ),
    )
    harness = harness_factory(ts_client, sqlite_db, settings)
    async with harness.running():
        handle = await submit_signal(ts_client, sqlite_db, settings, signal("ts-outcomes"))
        report = await handle.result()

    by_account = {a.account_id: a for a in report.accounts}
    assert by_account["fills"].status is LegStatus.FILLED
    partial = by_account["partial"]
    assert partial.status is LegStatus.FILLED
    assert partial.completion is not None
    assert partial.completion.attempts == 1
    assert partial.filled == partial.requested
    assert by_account["rejects"].status is LegStatus.REJECTED
    assert by_account["rejects"].reason == "Market closed [10018]"
    assert by_account["rejects"].denial is None
    assert by_account["expires"].status is LegStatus.CANCELLED
    assert by_account["expires"].filled == 0
    assert by_account["paused"].denial is DenialReason.PAUSED
    assert by_account["no-margin"].denial is DenialReason.INSUFFICIENT_MARGIN
    assert broker_orders(sqlite_db) == {"fills": 1, "partial": 2, "rejects": 1, "expires": 1}
    # Rejected and unfilled legs gave their reserved risk back.
    assert {r.account_id: r.status for r in reservations(sqlite_db)} == {
        "fills": "SETTLED",
        "partial": "SETTLED",
        "rejects": "SETTLED",
        "expires": "SETTLED",
    }


async def test_account_paused_after_planning_is_denied_at_reservation_with_no_order(
    time_skipping_env: WorkflowEnvironment,
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    harness_factory,
) -> None:

    load(sqlite_db, book(account("stays"), account("paused-later")))
    harness = harness_factory(ts_client, sqlite_db, settings)
    async with harness.running():
        handle = await submit_signal(ts_client, sqlite_db, settings, signal("ts-pause-race"))

        async def all_waiting() -> bool:
            progress: SignalProgress = await handle.query(SignalExecutionWorkflow.progress)
            return len(progress.legs) == 2 and all(
                leg.status is LegStatus.WAITING for leg in progress.legs
            )

        # Hold virtual time still while we look, so the 30 s timers cannot fire meanwhile.
        with time_skipping_env.auto_time_skipping_disabled():
            await poll_until(all_waiting)
            with sqlite_db.transaction() as session:
                row = session.get(AccountRow, "paused-later")
                assert row is not None
                row.status = "PAUSED"
        report = await handle.result()

    by_account = {a.account_id: a for a in report.accounts}
    assert by_account["stays"].status is LegStatus.FILLED
    assert by_account["paused-later"].status is LegStatus.DENIED
    assert by_account["paused-later"].denial is DenialReason.PAUSED
    assert broker_orders(sqlite_db) == {"stays": 1}


async def test_unknown_symbol_is_refused_and_nothing_is_started_or_written(
    ts_client: Client, sqlite_db: Database, settings: Settings
) -> None:

    load(sqlite_db, book(account("acc-1")))
    with pytest.raises(ValidationFailed) as refused:
        await submit_signal(ts_client, sqlite_db, settings, signal("ts-unknown", symbol="NOPE"))
    assert refused.value.problems[0][0] == "symbol"
    with pytest.raises(RPCError):
        await ts_client.get_workflow_handle("signal-ts-unknown").describe()
    with sqlite_db.transaction() as session:
        assert session.get(SignalRow, "ts-unknown") is None


async def test_signal_larger_than_batch_size_runs_legs_in_batch_children(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    ids = [f"acc-{i:02d}" for i in range(7)]
    load(sqlite_db, book(*(account(i) for i in ids)))
    small_batches = settings.model_copy(update={"batch_size": 3})
    harness = harness_factory(ts_client, sqlite_db, small_batches)
    async with harness.running():
        handle = await submit_signal(ts_client, sqlite_db, small_batches, signal("ts-batches"))
        report = await handle.result()
        history = await handle.fetch_history()
    started = [
        event.child_workflow_execution_started_event_attributes.workflow_execution.workflow_id
        for event in history.events
        if event.HasField("child_workflow_execution_started_event_attributes")
    ]
    assert [a.status for a in report.accounts] == [LegStatus.FILLED] * 7, [
        (a.account_id, a.status, a.reason) for a in report.accounts
    ]
    assert started == [f"signal-ts-batches/batch-{n}" for n in (1, 2, 3)]
    assert broker_orders(sqlite_db) == dict.fromkeys(ids, 1)


async def test_workflow_failure_surfaces_as_failure_not_hang(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    """A signal restricted to accounts that do not exist plans nothing and completes empty."""
    load(sqlite_db, book(account("acc-1")))
    harness = harness_factory(ts_client, sqlite_db, settings)
    async with harness.running():
        handle = await submit_signal(
            ts_client, sqlite_db, settings, signal("ts-empty", account_ids=["ghost"])
        )
        try:
            report = await handle.result()
        except WorkflowFailureError as err:  # pragma: no cover - would be a regression
            pytest.fail(f"workflow failed: {err.cause}")
    assert report.accounts == []
    assert broker_orders(sqlite_db) == {}

"""SignalExecutionWorkflow on the time-skipping server, with the real activities, a real
SQLite database and the paper broker."""

from __future__ import annotations

import functools
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowFailureError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from orchestrator.adapters.book_file import DailyReturn
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import AccountRow, PositionRow, SignalRow
from orchestrator.config import Settings
from orchestrator.domain import limits
from orchestrator.domain.contracts.activities import Execution, Positions, activity_name
from orchestrator.domain.errors import DuplicateSignal, ValidationFailed
from orchestrator.domain.progress import SignalProgress
from orchestrator.domain.report import LegStatus
from orchestrator.domain.values import DenialReason
from orchestrator.services import audit
from orchestrator.services.history import fetch_with_children
from orchestrator.services.reports import full_report
from orchestrator.services.submit import submit_signal
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
from workflows.positions import PositionsWorkflow
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


async def test_the_workers_settings_plan_the_signal_whoever_submits_it(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    """Two submitters with other environments (delays, variance) plan nothing differently: the
    worker's settings, read by the workflow and recorded in its history, plan every signal."""
    ids = ["acc-1", "acc-2"]
    load(sqlite_db, book(*(account(i) for i in ids), returns=uncorrelated_returns(ids)))
    worker = settings.model_copy(update={"size_variance": Decimal(0)})
    webhook = settings.model_copy(
        update={
            "delay_min_s": Decimal(1),
            "delay_max_s": Decimal(2),
            "size_variance": Decimal("0.5"),
        }
    )
    async with harness_factory(ts_client, sqlite_db, worker).running():
        # Both submitted before either result is awaited: the time-skipping server's clock may
        # jump far ahead once a result is (and make the book's state look stale).
        first = await submit_signal(ts_client, sqlite_db, settings, signal("ts-env-1"))
        second = await submit_signal(ts_client, sqlite_db, webhook, signal("ts-env-2"))
        one, two = await first.result(), await second.result()
        recorded = await fetch_with_children(ts_client, "signal-ts-env-2")

    for report in (one, two):
        assert [a.delay_ms for a in report.accounts] == [30_000, 30_000]
        assert {a.size.variance_factor for a in report.accounts if a.size} == {Decimal(1)}
    assert [a.requested for a in one.accounts] == [a.requested for a in two.accounts]
    # The settings are in the history: the audit re-derives the plan from them.
    result = await audit.audit_histories(recorded)
    assert result.values.verdict is audit.ValueVerdict.MATCH
    assert any("the worker's settings" in e.text for e in result.trail)


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


async def test_each_batch_keeper_holds_its_own_batch_positions_only(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    """A position has one writer: a batch's keeper sweeps the ledger for its own legs' entry
    fills once they are done, not for the whole signal's (every keeper held every position,
    and their records deadlocked one another on PostgreSQL)."""
    ids = [f"acc-{i:02d}" for i in range(7)]
    load(sqlite_db, book(*(account(i) for i in ids)))
    small_batches = settings.model_copy(update={"batch_size": 3})
    keepers = [f"signal-ts-kept/batch-{n}/positions" for n in (1, 2, 3)]
    sweep = activity_name(Positions.entry_fills)

    async def swept(keeper: str) -> bool:
        history = await ts_client.get_workflow_handle(keeper).fetch_history()
        scheduled = {
            e.event_id
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
            and e.activity_task_scheduled_event_attributes.activity_type.name == sweep
        }
        return any(
            e.activity_task_completed_event_attributes.scheduled_event_id in scheduled
            for e in history.events
            if e.HasField("activity_task_completed_event_attributes")
        )

    async with harness_factory(ts_client, sqlite_db, small_batches).running():
        handle = await submit_signal(ts_client, sqlite_db, small_batches, signal("ts-kept"))
        report = await handle.result()
        for keeper in keepers:
            await poll_until(functools.partial(swept, keeper))
        held = {
            keeper: sorted(
                p.account_id
                for p in await ts_client.get_workflow_handle(keeper).query(
                    PositionsWorkflow.positions
                )
            )
            for keeper in keepers
        }
        expected = {a: keeper for keeper, accounts in held.items() for a in accounts}

        def owners() -> dict[str, str | None]:
            with sqlite_db.transaction() as session:
                return {
                    row.account_id: row.keeper_workflow_id
                    for row in session.scalars(select(PositionRow))
                }

        # Each keeper records its positions once it has protected them: a step after its sweep.
        await poll_until(lambda: len(owners()) == len(ids))

    assert {line.status for line in report.accounts} == {LegStatus.FILLED}
    assert sorted(a for accounts in held.values() for a in accounts) == ids, held
    assert all(len(accounts) == 3 for accounts in list(held.values())[:2]), held
    assert owners() == expected


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


def _clustered_returns(clusters: list[list[str]], days: int = 30) -> list[DailyReturn]:
    """Accounts of one cluster share a series (correlation 1); clusters differ."""
    start = date(2026, 1, 1)
    out: list[DailyReturn] = []
    for c, members in enumerate(clusters):
        for i in range(days):
            value = Decimal("0.001") * (1 + (i * (c + 2)) % 5) * (1 if (i + c) % 3 else -1)
            out += [
                DailyReturn(account_id=a, day=start + timedelta(days=i), ret=value) for a in members
            ]
    return out


async def test_a_one_page_book_is_snapshotted_and_correlated_in_one_activity(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    """The usual signal reads its planning inputs in one activity: the snapshot carries the
    correlation, the correlation activity never runs, and the audit re-derives the same plan
    from it, correlated groups and all."""
    clusters = [[f"acc-{i:02d}" for i in range(0, 3)], [f"acc-{i:02d}" for i in range(3, 5)]]
    ids = [a for c in clusters for a in c]
    load(sqlite_db, book(*(account(i) for i in ids), returns=_clustered_returns(clusters)))
    harness = harness_factory(ts_client, sqlite_db, settings)
    async with harness.running():
        handle = await submit_signal(ts_client, sqlite_db, settings, signal("ts-one-read"))
        report = await handle.result()
        histories = await fetch_with_children(ts_client, handle.id)

    scheduled = Counter(
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in histories[0].events
        if e.HasField("activity_task_scheduled_event_attributes")
    )
    assert scheduled[activity_name(Execution.load_snapshot)] == 1
    assert scheduled[activity_name(Execution.compute_correlation)] == 0
    assert [a.status for a in report.accounts] == [LegStatus.FILLED] * 5
    result = await audit.audit_histories(histories)
    assert result.values.verdict is audit.ValueVerdict.MATCH, result.values.differences
    assert [e.text for e in result.trail if e.kind == "correlation"] == [
        "correlation (threshold 0.7): group G-acc-00: acc-00, acc-01, acc-02; "
        "group G-acc-03: acc-03, acc-04"
    ]
    planned = [e.text for e in result.trail if e.kind == "planned"]
    assert sum("(3 correlated)" in t for t in planned) == 3
    assert sum("(2 correlated)" in t for t in planned) == 2


async def test_large_signal_pages_its_inputs_and_keeps_its_lines_in_batches(
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    harness_factory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The paths a 5,000-account signal takes, on a book made "large" by shrinking the limits:
    snapshot and correlation in pages, legs and denials in batch children, the signal's own
    result a summary. The plan made from the joined pages is the one the audit re-derives,
    correlated groups spanning pages included, and the joined report has every account."""
    monkeypatch.setattr(limits, "PAGE_BYTES", 1500)
    monkeypatch.setattr(limits, "BATCH_BYTES", 1400)
    monkeypatch.setattr(limits, "REPORT_BYTES", 1000)
    clusters = [[f"acc-{i:02d}" for i in range(0, 5)], [f"acc-{i:02d}" for i in range(5, 9)]]
    ids = [a for c in clusters for a in c]
    load(
        sqlite_db,
        book(
            *(account(i) for i in ids),
            account("acc-09", status="DISABLED"),
            returns=_clustered_returns(clusters),
        ),
    )
    batched = settings.model_copy(update={"batch_size": 4})
    harness = harness_factory(ts_client, sqlite_db, batched)
    async with harness.running():
        handle = await submit_signal(ts_client, sqlite_db, batched, signal("ts-large"))
        report = await handle.result()
        full = await full_report(ts_client, report)
        histories = await fetch_with_children(ts_client, handle.id)

    parent = histories[0]
    scheduled = Counter(
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in parent.events
        if e.HasField("activity_task_scheduled_event_attributes")
    )
    assert scheduled[activity_name(Execution.load_snapshot)] > 1
    assert scheduled[activity_name(Execution.compute_correlation)] > 1
    assert report.accounts_in_batches and report.accounts == []
    assert len(report.batches) > 1
    assert report.by_status == {"DENIED": 1, "FILLED": 9}
    assert [(a.account_id, a.status) for a in full.accounts] == [
        *((i, LegStatus.FILLED) for i in ids),
        ("acc-09", LegStatus.DENIED),
    ]
    assert full.accounts[-1].denial is DenialReason.ACCOUNT_DISABLED
    result = await audit.audit_histories(histories)
    assert result.replay_ok
    assert result.values.verdict is audit.ValueVerdict.MATCH, result.values.differences
    assert result.values.legs == 9
    # Groups span pages, and each leg's correlation factor counts its whole group.
    planned = [e.text for e in result.trail if e.kind == "planned"]
    assert sum("(5 correlated)" in t for t in planned) == 5
    assert sum("(4 correlated)" in t for t in planned) == 4
    assert [a.account_id for a in result.accounts] == [a.account_id for a in full.accounts]
    assert all(a.filled == a.filled_by_orders for a in result.accounts)
    assert broker_orders(sqlite_db) == dict.fromkeys(ids, 1)

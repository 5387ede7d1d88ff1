"""SignalExecutionWorkflow on the time-skipping server, with the real activities, a real
SQLite database and the paper broker."""

from __future__ import annotations

from decimal import Decimal

import pytest
from temporalio.client import Client, WorkflowFailureError

from orchestrator.db.engine import Database
from orchestrator.errors import DuplicateSignal
from orchestrator.models import DenialReason, LegStatus
from orchestrator.service import submit_signal
from orchestrator.settings import Settings
from tests.support import (
    account,
    book,
    broker_orders,
    ledger_orders,
    load,
    reservations,
    signal,
    uncorrelated_returns,
)


@pytest.fixture
def settings(test_settings: Settings) -> Settings:
    return test_settings.model_copy(
        update={"delay_min_s": Decimal(30), "delay_max_s": Decimal(30)}
    )


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

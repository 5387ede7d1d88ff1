"""The snapshot activity that also correlates: the same correlation the correlation activity
computes, and none when the two would not fit in one page together."""

from __future__ import annotations

import pytest
from temporalio.testing import ActivityEnvironment

from activities.execution import ExecutionActivities
from orchestrator.adapters.brokers.paper import PaperBroker
from orchestrator.adapters.db.engine import Database
from orchestrator.config import Settings
from orchestrator.domain import limits, paging, planning
from orchestrator.domain.book import BookSnapshot
from orchestrator.domain.contracts.payloads import SnapshotRequest
from tests.support import EURUSD_ALPHA, account, book, load, uncorrelated_returns
from tests.unit.builders import plan_settings

IDS = ["acc-1", "acc-2", "acc-3", "acc-4"]


def snapshot(db: Database, *, correlate: bool, run_id: str | None = "run-1") -> BookSnapshot:
    activities = ExecutionActivities(db, PaperBroker(db), service=Settings().service_settings())
    request = SnapshotRequest(
        signal_id="s1",
        symbol=EURUSD_ALPHA.symbol,
        run_id=run_id,
        correlate=planning.correlation_settings(plan_settings()) if correlate else None,
    )
    result: BookSnapshot = ActivityEnvironment().run(activities.load_snapshot, request)
    return result


def test_the_snapshot_carries_the_correlation_the_correlation_activity_computes(
    db: Database,
) -> None:
    load(db, book(*(account(i) for i in IDS), returns=uncorrelated_returns(IDS)))

    alone = snapshot(db, correlate=False)
    together = snapshot(db, correlate=True)

    assert alone.correlation is None
    assert together.correlation is not None
    assert together.model_copy(update={"correlation": None, "taken_at": alone.taken_at}) == alone
    separate = ActivityEnvironment().run(
        ExecutionActivities(
            db, PaperBroker(db), service=Settings().service_settings()
        ).compute_correlation,
        planning.correlation_request(alone, plan_settings()),
    )
    assert together.correlation == separate
    assert [a.account_id for a in together.correlation.accounts] == IDS


def test_no_correlation_when_snapshot_and_result_would_not_fit_in_one_page(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    load(db, book(*(account(i) for i in IDS), returns=uncorrelated_returns(IDS)))
    alone = snapshot(db, correlate=False, run_id=None)
    monkeypatch.setattr(limits, "PAGE_BYTES", paging.json_size(alone) + 10)

    result = snapshot(db, correlate=True)

    assert result.pages == 1
    assert result.correlation is None

"""Business metrics counted by the worker interceptor: once per run, never again on replay."""

from __future__ import annotations

from decimal import Decimal

import pytest
from prometheus_client import REGISTRY
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.observability.metrics import Observability
from orchestrator.config import Settings
from orchestrator.domain.contracts.operators import PauseAccount
from orchestrator.domain.progress import SignalProgress
from orchestrator.services.submit import submit_signal
from tests.support import account, book, load, poll_until, signal
from worker import WORKFLOWS
from workflows.signal import SignalExecutionWorkflow

SAMPLES = {
    "completed": ("teo_signals_total", {"outcome": "COMPLETED"}),
    "filled": ("teo_legs_total", {"status": "FILLED"}),
    "rejected": ("teo_legs_total", {"status": "REJECTED"}),
    "denied": ("teo_legs_total", {"status": "DENIED"}),
    "margin": ("teo_denials_total", {"reason": "INSUFFICIENT_MARGIN"}),
    "orders_filled": ("teo_orders_total", {"status": "FILLED"}),
    "orders_rejected": ("teo_orders_total", {"status": "REJECTED"}),
    "fill_ratio_count": ("teo_leg_fill_ratio_count", {}),
    "fill_ratio_sum": ("teo_leg_fill_ratio_sum", {}),
    "slippage_count": ("teo_leg_slippage_ticks_count", {}),
    "pauses": ("teo_operator_actions_total", {"action": "pause_account"}),
    "skipped": ("teo_legs_total", {"status": "SKIPPED_PAUSED"}),
}


def snapshot() -> dict[str, float]:
    return {
        key: REGISTRY.get_sample_value(name, labels) or 0.0
        for key, (name, labels) in SAMPLES.items()
    }


def moved(before: dict[str, float]) -> dict[str, float]:
    after = snapshot()
    return {key: after[key] - before[key] for key in after if after[key] != before[key]}


@pytest.fixture
def settings(test_settings: Settings) -> Settings:
    return test_settings.model_copy(update={"delay_min_s": Decimal(30), "delay_max_s": Decimal(30)})


async def test_finished_signal_counts_outcome_legs_denials_orders_once_and_not_on_replay(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    load(
        sqlite_db,
        book(
            account("fills"),
            account("rejects", paper={"fill": "reject", "reject_text": "Market closed [10018]"}),
            account("no-margin", free_margin="1"),
        ),
    )
    before = snapshot()
    async with harness_factory(ts_client, sqlite_db, settings).running():
        handle = await submit_signal(ts_client, sqlite_db, settings, signal("ts-metrics"))
        await handle.result()
        # A query on the closed run makes the worker replay its whole history.
        await handle.query(SignalExecutionWorkflow.progress)

    counted = moved(before)
    assert counted == {
        "completed": 1,
        "filled": 1,
        "rejected": 1,
        "denied": 1,
        "margin": 1,
        "orders_filled": 1,
        "orders_rejected": 1,
        "fill_ratio_count": 2,  # the filled leg (1.0) and the rejected one (0.0)
        "fill_ratio_sum": 1,
        "slippage_count": 1,
    }

    # Replaying the history with the interceptor installed counts nothing.
    history = await handle.fetch_history()
    before_replay = snapshot()
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=pydantic_data_converter,
        interceptors=[Observability()],
    )
    await replayer.replay_workflow(history)
    assert moved(before_replay) == {}


async def test_operator_pause_is_counted_once_per_workflow_reached(
    time_skipping_env: WorkflowEnvironment,
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    harness_factory,
) -> None:
    load(sqlite_db, book(account("stays"), account("paused")))
    before = snapshot()
    async with harness_factory(ts_client, sqlite_db, settings).running():
        handle = await submit_signal(ts_client, sqlite_db, settings, signal("ts-metric-pause"))

        async def planned() -> bool:
            progress: SignalProgress = await handle.query(SignalExecutionWorkflow.progress)
            return len(progress.legs) == 2

        with time_skipping_env.auto_time_skipping_disabled():
            await poll_until(planned)
            await handle.signal(
                SignalExecutionWorkflow.pause_account,
                PauseAccount(account_id="paused", operator="jane", reason="test"),
            )
        await handle.result()

    counted = moved(before)
    assert counted["pauses"] == 1
    assert counted["skipped"] == 1
    assert counted["completed"] == 1

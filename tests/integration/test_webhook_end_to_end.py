"""The whole path on the real dev server and PostgreSQL: a TradingView alert posted to the
running webhook starts a signal that the worker (a real ``worker.py`` process) executes with
the paper broker; the same alert posted again starts nothing. Meanwhile the worker's metrics
endpoints are scraped and its JSON log lines carry the ids."""

from __future__ import annotations

import json
import os
import signal as signals
import socket
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.testing import WorkflowEnvironment

from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.temporal import port_open
from orchestrator.config import PROJECT_ROOT
from orchestrator.domain.actions import ActionReport, ActionStatus
from orchestrator.domain.report import LegStatus, SignalReport
from orchestrator.interfaces.http.webhook import create_app
from tests.http_support import body_of, serve_in_thread, tradingview_alert
from tests.integration.test_end_to_end import dev_settings
from tests.support import (
    account,
    book,
    broker_orders,
    ledger_orders,
    load,
    poll_until,
    uncorrelated_returns,
)
from tests.unit.test_monitoring_config import SDK_METRICS

pytestmark = pytest.mark.integration


def open_positions(db: Database) -> list[repository.PositionView]:
    with db.transaction() as session:
        return repository.list_positions(session, open_only=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_tradingview_alert_through_webhook_fills_on_worker_and_resend_places_nothing(
    dev_server: WorkflowEnvironment, postgres_db: Database, tmp_path: Path
) -> None:
    ids = ["tv-a", "tv-b", "tv-c"]
    load(postgres_db, book(*(account(i) for i in ids), returns=uncorrelated_returns(ids)))
    settings = dev_settings(
        dev_server,
        postgres_db,
        webhook_shared_secret="tv-secret",
        metrics_port=free_port(),
        temporal_metrics_port=free_port(),
    )
    env = {
        **os.environ,
        "TEO_TEMPORAL_ADDRESS": settings.temporal_address,
        "TEO_TASK_QUEUE": settings.task_queue,
        "TEO_DATABASE_URL": settings.database_url,
        "TEO_ORDER_POLL_INTERVAL_S": "0.05",
        # No account sync schedule (tested on its own): its runs would act on this test's book.
        "TEO_ACCOUNT_SYNC_EVERY_S": "0",
        "TEO_METRICS_PORT": str(settings.metrics_port),
        "TEO_TEMPORAL_METRICS_PORT": str(settings.temporal_metrics_port),
        "TEO_LOG_FORMAT": "json",
    }
    log_path = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "worker.py")],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    alert = body_of(tradingview_alert(secret="tv-secret", time="2026-11-24T07:30:00Z"))
    try:
        await poll_until(lambda: port_open(f"127.0.0.1:{settings.metrics_port}"), timeout_s=60)
        with serve_in_thread(create_app(settings, db=postgres_db)) as url:
            first = httpx.post(f"{url}/signals", content=alert, timeout=30)
            assert first.status_code == 202, first.text
            workflow_id = first.json()["workflow_id"]
            handle = dev_server.client.get_workflow_handle(workflow_id, result_type=SignalReport)
            report = await handle.result()
            orders_after_first = broker_orders(postgres_db)

            again = httpx.post(f"{url}/signals", content=alert, timeout=30)

            # The strategy's exit: a close alert naming the entry's signal closes what it
            # opened, on the worker, through the keeper.
            await poll_until(
                lambda: len(open_positions(postgres_db)) == len(ids) or None, timeout_s=60
            )
            exit_alert = body_of(
                tradingview_alert(
                    secret="tv-secret",
                    time="2026-11-24T08:00:00Z",
                    action="sell",
                    market_position="flat",
                    target=first.json()["signal_id"],
                )
            )
            closing = httpx.post(f"{url}/signals", content=exit_alert, timeout=30)
            assert closing.status_code == 202, closing.text
            closed = await dev_server.client.get_workflow_handle(
                closing.json()["workflow_id"], result_type=ActionReport
            ).result()

        business = scrape(settings.metrics_port)
        runtime_metrics = httpx.get(
            f"http://127.0.0.1:{settings.temporal_metrics_port}/metrics", timeout=10
        ).text
    finally:
        worker.send_signal(signals.SIGTERM)
        worker.wait(timeout=60)

    # The alert became a signal, executed on every account, one order each.
    assert [a.status for a in report.accounts] == [LegStatus.FILLED] * 3
    assert report.reference_price == Decimal("1.08500")
    assert orders_after_first == dict.fromkeys(ids, 1)
    # The same alert again: 200, the same workflow, nothing new anywhere.
    assert again.status_code == 200
    assert (again.json()["workflow_id"], again.json()["duplicate"]) == (workflow_id, True)
    assert (await handle.describe()).run_id == first.json()["run_id"]
    assert broker_orders(postgres_db) == orders_after_first
    assert len(ledger_orders(postgres_db)) == 3  # entries (and then the exit's closes)

    # The exit alert closed every position the entry opened, one closing order each.
    assert closed.status is ActionStatus.COMPLETED
    assert sorted(a.account_id for a in closed.accounts if a.open_quantity == 0) == ids
    assert open_positions(postgres_db) == []

    # The worker's business metrics moved (a fresh process: the values are this run's).
    assert business[("teo_signals_total", frozenset({("outcome", "COMPLETED")}))] == 1
    assert business[("teo_legs_total", frozenset({("status", "FILLED")}))] == 3
    assert business[("teo_orders_total", frozenset({("status", "FILLED")}))] == 3
    assert business[("teo_leg_fill_ratio_count", frozenset())] == 3
    # The SDK runtime's own endpoint answers with Temporal's metrics, those the Grafana
    # dashboard queries included.
    assert "temporal_workflow_completed" in runtime_metrics
    served = {line.split("{")[0].split()[0] for line in runtime_metrics.splitlines() if line}
    assert served >= SDK_METRICS

    # Every log line an activity wrote carries the signal, account and workflow ids.
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    order_lines = [
        line
        for line in lines
        if line["logger"] == "orchestrator.adapters.observability.metrics"
        and line["message"].startswith("order ")
    ]
    assert {line["account_id"] for line in order_lines} == set(ids)
    assert {line["signal_id"] for line in order_lines} == {first.json()["signal_id"]}
    assert {line["workflow_id"] for line in order_lines} == {workflow_id}

"""The demo book and signal end to end on the real dev server and real PostgreSQL; a worker
killed (SIGKILL) while legs wait on their timers, then restarted."""

from __future__ import annotations

import os
import re
import signal as signals
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from orchestrator.adapters.book_file import read_book
from orchestrator.adapters.brokers.paper import PaperMarket
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.config import PROJECT_ROOT, Settings
from orchestrator.domain import ids
from orchestrator.domain.contracts.positions import PositionsResult
from orchestrator.domain.positions import CloseCause, PositionStatus
from orchestrator.domain.progress import SignalProgress
from orchestrator.domain.report import LegStatus
from orchestrator.domain.values import DenialReason
from orchestrator.services import audit
from orchestrator.services.submit import submit_signal
from tests.support import (
    account,
    book,
    broker_orders,
    ledger_orders,
    load,
    poll_until,
    protection_gaps,
    protection_violations,
    signal,
    uncorrelated_returns,
)
from worker import WORKFLOWS
from workflows.signal import SignalExecutionWorkflow

pytestmark = pytest.mark.integration


def dev_settings(env: WorkflowEnvironment, db: Database, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "temporal_address": env.client.service_client.config.target_host,
        "task_queue": f"it-{os.getpid()}-{datetime.now(UTC):%H%M%S%f}",
        "database_url": db.url,
        "delay_min_s": Decimal("0.2"),
        "delay_max_s": Decimal("1.5"),
        "correlated_min_gap_s": Decimal("0.3"),
        "order_poll_interval_s": 0.05,
    }
    values.update(overrides)
    return Settings.model_validate(values)


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a ``worker.py`` process serving ``settings``' server, task queue and
    database, polling orders quickly, with ``extra`` settings."""
    return {
        **os.environ,
        "TEO_TEMPORAL_ADDRESS": settings.temporal_address,
        "TEO_TASK_QUEUE": settings.task_queue,
        "TEO_DATABASE_URL": settings.database_url,
        "TEO_ORDER_POLL_INTERVAL_S": "0.05",
        # No account sync schedule (tested on its own): its runs would act on the test's book.
        "TEO_ACCOUNT_SYNC_EVERY_S": "0",
        **extra,
    }


def worker_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``worker.py`` started with ``env``, its output to ``log``."""
    return subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "worker.py")],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def stop_workers(*processes: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM to each worker process still running, then wait for it to exit."""
    for process in processes:
        if process is not None and process.poll() is None:
            process.send_signal(signals.SIGTERM)
            process.wait(timeout=60)


async def test_demo_signal_end_to_end_on_dev_server_and_postgres(
    dev_server: WorkflowEnvironment, postgres_db: Database, harness_factory
) -> None:
    with postgres_db.transaction() as session:
        repository.save_book(
            session, read_book(PROJECT_ROOT / "demo" / "book.yaml"), datetime.now(UTC)
        )
    settings = dev_settings(dev_server, postgres_db)
    client = dev_server.client
    async with harness_factory(client, postgres_db, settings).running():
        handle = await submit_signal(
            client, postgres_db, settings, signal("it-demo", take_profit=Decimal("1.09100"))
        )
        report = await handle.result()

    by_account = {a.account_id: a for a in report.accounts}
    assert len(by_account) == 18
    for filled in ("alpha-01", "alpha-02", "alpha-04", "alpha-06", "beta-03", "beta-05"):
        assert by_account[filled].status is LegStatus.FILLED, filled
        assert by_account[filled].filled == by_account[filled].requested > 0
    # beta-05's broker filled 60 %: the completion child filled the rest in one more order.
    completion = by_account["beta-05"].completion
    assert completion is not None
    assert (completion.attempts, completion.stopped) == (1, "COMPLETED")
    # beta-07's broker rejected: the reroute child moved 95 % of it to the first reserve.
    rejected = by_account["beta-07"]
    assert rejected.status is LegStatus.REJECTED
    assert rejected.reason == "Not enough money [10019]"
    assert rejected.reroute is not None
    assert [line.account_id for line in rejected.reroute.reports] == ["alpha-17"]
    target = by_account["alpha-17"]
    assert (target.status, target.rerouted_from) == (LegStatus.FILLED, "beta-07")
    # 95 % of the rejected order's risk at the stop, through alpha-17's own contract.
    assert rejected.size is not None and target.size is not None
    carried = Decimal("0.95") * rejected.requested * rejected.size.per_lot_risk
    assert target.size.carried_risk == carried.quantize(Decimal("0.000001"))
    assert target.size.binding == "carried_risk"
    assert target.requested * target.size.per_lot_risk <= carried
    assert (target.requested + Decimal("0.01")) * target.size.per_lot_risk > carried
    assert by_account["beta-18"].denial is DenialReason.NOT_SELECTED
    expected_denials = {
        "alpha-08": DenialReason.PAUSED,
        "alpha-10": DenialReason.INSUFFICIENT_MARGIN,
        "alpha-12": DenialReason.MANDATE_FORBIDS,
        "alpha-13": DenialReason.MANDATE_FORBIDS,
        "alpha-15": DenialReason.MAX_POSITIONS,
        "beta-09": DenialReason.SIZE_BELOW_MIN_LOT,
        "beta-11": DenialReason.SYMBOL_NOT_TRADABLE,
        "beta-14": DenialReason.RISK_BUDGET_EXHAUSTED,
        "beta-16": DenialReason.STALE_ACCOUNT_DATA,
    }
    assert {a: by_account[a].denial for a in expected_denials} == expected_denials
    # Group A (alpha-01, alpha-02, beta-03) is correlated in the demo returns: sized down.
    assert by_account["alpha-01"].size is not None
    assert by_account["alpha-01"].size.correlated_accounts == 3
    # Exactly one order per traded account at the broker, and the ledger agrees.
    traded = {"alpha-01", "alpha-02", "alpha-04", "alpha-06", "beta-03", "beta-07", "alpha-17"}
    assert broker_orders(postgres_db) == {**dict.fromkeys(traded, 1), "beta-05": 2}
    ledger: dict[str, Decimal] = {}
    for order in ledger_orders(postgres_db):
        ledger[order.account_id] = ledger.get(order.account_id, Decimal(0)) + order.filled_quantity
    assert ledger == {a: by_account[a].filled for a in [*traded, "beta-05"]}

    # The run is findable by its search attributes.
    # The run and its children are findable by their search attribute.
    # Child ids name the leg, not the account (ids are not encrypted).
    found: set[str] = set()

    async def visible() -> bool:
        found.clear()
        found.update([w.id async for w in client.list_workflows("SignalId = 'it-demo'")])
        return len(found) == 4

    assert await poll_until(visible)
    expected = sorted(found)
    assert expected[0] == "signal-it-demo"
    assert re.fullmatch(r"signal-it-demo/leg-\d+/completion", expected[1]), expected
    assert re.fullmatch(r"signal-it-demo/leg-\d+/reroute", expected[2]), expected
    assert expected[3] == "signal-it-demo/positions"  # its positions' keeper
    assert not any(account_id in wid for wid in expected for account_id in by_account)

    # Parent and children replay cleanly against the current code.
    histories = [
        await client.get_workflow_handle(workflow_id).fetch_history()
        for workflow_id in sorted(expected)
    ]
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    for history in histories:
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, (history.workflow_id, result.replay_failure)

    # The audit: the whole trail, the plan re-derived, and a document that matches the report.
    trail = await audit.audit_histories(histories)
    assert trail.ok
    assert trail.values.verdict is audit.ValueVerdict.MATCH
    assert (trail.values.legs, trail.values.denials) == (7, 11)
    assert trail.report == report
    assert [(a.account_id, a.status, a.requested, a.filled) for a in trail.accounts] == [
        (line.account_id, line.status, line.requested, line.filled) for line in report.accounts
    ]
    assert all(a.filled_by_orders == a.filled for a in trail.accounts)
    assert {len(a.orders) for a in trail.accounts if a.account_id in traded} == {1}
    assert len(next(a for a in trail.accounts if a.account_id == "beta-05").orders) == 2
    text = "\n".join(audit.render(trail))
    for account_id in by_account:
        assert f" {account_id} " in text or f" {account_id}:" in text, account_id
    for fragment in (
        "snapshot of 18 accounts",
        "correlation (threshold 0.7): group",
        "beta-16 not traded: STALE_ACCOUNT_DATA",
        f"started PartialFillCompletionWorkflow {expected[1]}: complete beta-05:",
        f"started OrderRerouteWorkflow {expected[2]}: reroute ",
        "from beta-07 (Not enough money [10019]); candidates alpha-17, beta-18",
        "order it-demo:beta-07:1: failed: Not enough money [10019]",
        "Verdict: OK",
    ):
        assert fragment in text, fragment


async def test_worker_killed_while_legs_wait_then_restarted_places_exactly_one_order_each(
    dev_server: WorkflowEnvironment, postgres_db: Database, tmp_path: Path
) -> None:
    ids = [f"kill-{i}" for i in range(5)]
    load(postgres_db, book(*(account(i) for i in ids), returns=uncorrelated_returns(ids)))
    settings = dev_settings(dev_server, postgres_db, delay_min_s=Decimal(4), delay_max_s=Decimal(8))
    client = dev_server.client
    env = worker_env(settings)
    first = worker_process(env, tmp_path / "worker-1.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        handle = await submit_signal(client, postgres_db, settings, signal("it-kill"))

        async def all_waiting() -> bool:
            try:
                progress: SignalProgress = await handle.query(SignalExecutionWorkflow.progress)
            except RPCError:
                # A query needs a worker: the worker process may still be starting (seconds
                # on a loaded machine), and the query times out meanwhile.
                return False
            return len(progress.legs) == 5 and all(
                leg.status is LegStatus.WAITING for leg in progress.legs
            )

        await poll_until(all_waiting, timeout_s=60)
        first.send_signal(signals.SIGKILL)
        first.wait(timeout=10)
        assert broker_orders(postgres_db) == {}

        second = worker_process(env, tmp_path / "worker-2.log")
        report = await handle.result()
    finally:
        stop_workers(first, second)
        # A run left open here (the test failed half-way) would outlive it on the shared dev
        # server, with no worker: later broadcasts would reach it.
        await _terminate_if_running(client, _signal_workflow_id("it-kill"))

    assert [a.status for a in report.accounts] == [LegStatus.FILLED] * 5
    assert broker_orders(postgres_db) == dict.fromkeys(ids, 1)
    assert len(ledger_orders(postgres_db)) == 5


async def test_the_demos_take_profit_and_stop_out_on_dev_server_and_postgres(
    dev_server: WorkflowEnvironment, postgres_db: Database, harness_factory
) -> None:
    """The demo's trades to their exits: a EURUSD long closed at its take-profit and a GBPUSD
    short stopped out through a gap, on every account the demo book fills; then every history
    (signals, children, keepers) replayed and audited."""
    with postgres_db.transaction() as session:
        repository.save_book(
            session, read_book(PROJECT_ROOT / "demo" / "book.yaml"), datetime.now(UTC)
        )
    settings = dev_settings(dev_server, postgres_db)
    client = dev_server.client
    market = PaperMarket(postgres_db)

    def quote(symbol: str, bid: str) -> None:
        for name in (symbol, f"{symbol}.pro"):  # broker beta's name for the same market
            market.set_quote(name, Decimal(bid), Decimal(bid) + Decimal("0.00002"))

    quote("EURUSD", "1.08500")
    quote("GBPUSD", "1.27000")
    long = signal("it-long", take_profit=Decimal("1.09100"))
    short = signal(
        "it-short", symbol="GBPUSD", side="SELL", entry=Decimal("1.27000"), stop=Decimal("1.27400")
    )
    async with harness_factory(client, postgres_db, settings).running():
        handles = [await submit_signal(client, postgres_db, settings, s) for s in (long, short)]
        reports = {r.signal_id: r for r in [await h.result() for h in handles]}
        filled = {
            (r.signal_id, line.account_id)
            for r in reports.values()
            for line in r.accounts
            if line.filled
        }
        # Every position whole (a completion's fill included) and protected at the broker
        # before the market moves.
        entered = {
            (r.signal_id, a.account_id): a.filled for r in reports.values() for a in r.accounts
        }

        def protected() -> bool:
            held = repository_positions(postgres_db)
            whole = {(p.signal_id, p.account_id): p.entry_quantity for p in held}
            return whole == {k: q for k, q in entered.items() if q} and not protection_gaps(
                postgres_db
            )

        await poll_until(
            lambda: protected() or None,
            timeout_s=60,
        )
        quote("EURUSD", "1.09120")  # through the long's take-profit
        quote("GBPUSD", "1.27450")  # the short's stop gapped: its ask is 1.27452
        ended = [
            await client.get_workflow_handle(
                ids.positions_workflow_id(h.id), result_type=PositionsResult
            ).result()
            for h in handles
        ]

    assert protection_violations(postgres_db) == []
    assert len(filled) > 6  # the demo book fills most of its accounts, on both brokers
    for result in ended:
        assert {(p.signal_id, p.account_id) for p in result.positions} == {
            key for key in filled if key[0] == result.signal_id
        }
        for position in result.positions:
            assert position.status is PositionStatus.CLOSED
            assert len(position.closes) == 1, position.closes
            [close] = position.closes
            if result.signal_id == "it-long":
                assert close.cause is CloseCause.TAKE_PROFIT_HIT
                assert close.price >= Decimal("1.09100") and close.pnl > 0
            else:
                assert close.cause is CloseCause.STOP_HIT
                assert close.price == Decimal("1.27452")  # slippage: 5.2 pips past the stop
                assert close.pnl < 0
        assert result.realized_pnl == sum(p.realized_pnl for p in result.positions)

    # Every history replays; each signal's audit tells entry → protection → exit.
    for signal_id in reports:
        ids_found = [w.id async for w in client.list_workflows(f"SignalId = '{signal_id}'")]
        assert ids.positions_workflow_id(f"signal-{signal_id}") in ids_found
        histories = [await client.get_workflow_handle(w).fetch_history() for w in ids_found]
        replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
        for history in histories:
            replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
            assert replayed.replay_failure is None, (history.workflow_id, replayed.replay_failure)
        trail = await audit.audit_histories(histories)
        assert trail.ok, "\n".join(audit.render(trail))
        assert trail.positions is not None and trail.positions.ok
        assert trail.positions.compared >= len([k for k in filled if k[0] == signal_id])
        assert {p.status for p in trail.positions.positions} == {"CLOSED"}
        text = "\n".join(audit.render(trail))
        cause = "TAKE_PROFIT_HIT" if signal_id == "it-long" else "STOP_HIT"
        assert cause in text


def repository_positions(db: Database) -> list[repository.PositionView]:
    with db.transaction() as session:
        return repository.list_positions(session)


def _signal_workflow_id(signal_id: str) -> str:
    """(In a test whose local ``ids`` are account ids.)"""
    return ids.signal_workflow_id(signal_id)


async def _terminate_if_running(client: Client, workflow_id: str) -> None:
    handle = client.get_workflow_handle(workflow_id)
    try:
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await handle.terminate("the test ended before the run did")
    except RPCError:
        pass

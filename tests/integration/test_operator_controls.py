"""Operator controls end to end on the real dev server and PostgreSQL: the broadcast through
visibility, the persisted pause and halt, the operator-actions table, the starter CLI and the
raw ``temporal workflow signal`` command."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import OperatorActionRow, PositionRow
from orchestrator.adapters.temporal import temporal_binary
from orchestrator.config import PROJECT_ROOT, Settings
from orchestrator.domain.contracts.operators import HaltRequest
from orchestrator.domain.errors import SystemHalted
from orchestrator.domain.progress import SignalProgress
from orchestrator.domain.report import LegStatus, SignalReport
from orchestrator.domain.values import DenialReason
from orchestrator.services import operators
from orchestrator.services.submit import submit_signal
from tests.support import account, book, broker_orders, load, poll_until, signal
from workflows.signal import SignalExecutionWorkflow

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(dev_server: WorkflowEnvironment, postgres_db: Database) -> Settings:
    return Settings(
        temporal_address=dev_server.client.service_client.config.target_host,
        task_queue=f"ops-{datetime.now(UTC):%H%M%S%f}",
        database_url=postgres_db.url,
        delay_min_s=Decimal(6),
        delay_max_s=Decimal(9),
        correlated_min_gap_s=Decimal(0),
        order_poll_interval_s=0.05,
    )


async def all_waiting(client: Client, handle: WorkflowHandle[Any, Any], legs: int) -> None:
    """Until every leg waits on its timer and the run is visible to a broadcast."""

    async def ready() -> bool:
        progress: SignalProgress = await handle.query(SignalExecutionWorkflow.progress)
        waiting = len(progress.legs) == legs and all(
            leg.status is LegStatus.WAITING for leg in progress.legs
        )
        return waiting and handle.id in await operators.running_executions(client)

    await poll_until(ready, timeout_s=30)


def actions(db: Database) -> list[OperatorActionRow]:
    """What the starter itself recorded: the persisted state change and what it reached."""
    with db.transaction() as session:
        return list(
            session.scalars(
                select(OperatorActionRow)
                .where(OperatorActionRow.workflow_id.is_(None))
                .order_by(OperatorActionRow.id)
            )
        )


def receipts(db: Database) -> list[OperatorActionRow]:
    """What each workflow recorded of the actions it received."""
    with db.transaction() as session:
        return list(
            session.scalars(
                select(OperatorActionRow)
                .where(OperatorActionRow.workflow_id.is_not(None))
                .order_by(OperatorActionRow.workflow_id, OperatorActionRow.id)
            )
        )


async def test_pause_then_resume_through_the_operator_path(
    dev_server: WorkflowEnvironment, postgres_db: Database, settings: Settings, harness_factory
) -> None:
    client = dev_server.client
    load(postgres_db, book(account("keeps"), account("paused")))
    async with harness_factory(client, postgres_db, settings).running():
        first = await submit_signal(client, postgres_db, settings, signal("ops-p1"))
        await all_waiting(client, first, 2)
        paused = await operators.pause_account(
            client, postgres_db, "paused", operator="jane", reason="margin call"
        )
        report: SignalReport = await first.result()
        lines = {line.account_id: line for line in report.accounts}
        assert lines["paused"].status is LegStatus.SKIPPED_PAUSED
        assert lines["keeps"].status is LegStatus.FILLED

        second = await submit_signal(client, postgres_db, settings, signal("ops-p2"))
        denied = {line.account_id: line for line in (await second.result()).accounts}
        assert denied["paused"].denial is DenialReason.PAUSED

        await operators.resume_account(
            client, postgres_db, "paused", operator="jane", reason="margin restored"
        )
        third = await submit_signal(client, postgres_db, settings, signal("ops-p3"))
        again = {line.account_id: line for line in (await third.result()).accounts}
        assert again["paused"].status is LegStatus.FILLED

    assert paused.reached == ["signal-ops-p1"]
    assert broker_orders(postgres_db) == {"keeps": 3, "paused": 1}
    log = [(a.action, a.target, a.operator, a.reason) for a in actions(postgres_db)]
    assert log == [
        ("pause", "paused", "jane", "margin call"),
        ("resume", "paused", "jane", "margin restored"),
    ]
    # The one workflow the pause reached recorded its receipt; the resume reached none.
    got = [(r.workflow_id, r.action, r.target, r.operator) for r in receipts(postgres_db)]
    assert got == [("signal-ops-p1", "pause_account", "paused", "jane")]


async def test_halt_while_three_signals_run_then_unhalt(
    dev_server: WorkflowEnvironment, postgres_db: Database, settings: Settings, harness_factory
) -> None:
    client = dev_server.client
    load(postgres_db, book(account("a"), account("b")))
    async with harness_factory(client, postgres_db, settings).running():
        handles = [
            await submit_signal(client, postgres_db, settings, signal(f"ops-h{n}"))
            for n in (1, 2, 3)
        ]
        for handle in handles:
            await all_waiting(client, handle, 2)
        outcome = await operators.halt(client, postgres_db, operator="risk", reason="outage")
        reports = [await h.result() for h in handles]
        with pytest.raises(SystemHalted):
            await submit_signal(client, postgres_db, settings, signal("ops-h4"))

        await operators.unhalt(client, postgres_db, operator="risk", reason="venue back")
        after = await submit_signal(client, postgres_db, settings, signal("ops-h5"))
        resumed: SignalReport = await after.result()

    assert outcome.legs_stopped == 6
    assert sorted(outcome.reached) == [f"signal-ops-h{n}" for n in (1, 2, 3)]
    assert {line.status for r in reports for line in r.accounts} == {LegStatus.HALTED}
    assert {line.status for line in resumed.accounts} == {LegStatus.FILLED}
    # Orders exist only for the signal started after the unhalt.
    assert broker_orders(postgres_db) == {"a": 1, "b": 1}
    assert [a.action for a in actions(postgres_db)] == ["halt", "unhalt"]
    got = [(r.workflow_id, r.action, r.via) for r in receipts(postgres_db)]
    assert got == [(f"signal-ops-h{n}", "halt", "update") for n in (1, 2, 3)]


async def test_a_halt_sent_to_one_signal_by_hand_is_the_kill_switch(
    dev_server: WorkflowEnvironment, postgres_db: Database, settings: Settings, harness_factory
) -> None:
    """What the Web UI's Send an Update (or ``temporal workflow update``) does with ``halt``:
    the workflow it reached throws the kill switch, persisted and broadcast, so every running
    signal stops and no new one starts; each records its receipt once. Unhalt, sent to one
    workflow by hand, lifts it the same way."""
    client = dev_server.client
    load(postgres_db, book(account("a"), account("b")))
    async with harness_factory(client, postgres_db, settings).running():
        handles = [
            await submit_signal(client, postgres_db, settings, signal(f"ops-ui{n}")) for n in (1, 2)
        ]
        for handle in handles:
            await all_waiting(client, handle, 2)
        answer = await handles[0].execute_update(
            SignalExecutionWorkflow.halt, HaltRequest(operator="ui-user", reason="by hand")
        )
        reports = [await h.result() for h in handles]
        with pytest.raises(SystemHalted):
            await submit_signal(client, postgres_db, settings, signal("ops-ui3"))
        with postgres_db.transaction() as session:
            assert repository.halt_reason(session) == "by hand"

    assert answer.legs_stopped == 2
    assert {line.status for r in reports for line in r.accounts} == {LegStatus.HALTED}
    assert broker_orders(postgres_db) == {}
    got = sorted((r.workflow_id, r.action, r.operator) for r in receipts(postgres_db))
    assert got == [
        ("signal-ops-ui1", "halt", "ui-user"),
        ("signal-ops-ui2", "halt", "ui-user"),
    ]
    first = next(r for r in receipts(postgres_db) if r.workflow_id == "signal-ops-ui1")
    assert first.outcome["kill_switch_reached"] == 1


async def test_pause_with_the_raw_temporal_cli_signal_behaves_the_same(
    dev_server: WorkflowEnvironment, postgres_db: Database, settings: Settings, harness_factory
) -> None:
    client = dev_server.client
    load(postgres_db, book(account("keeps"), account("paused")))
    async with harness_factory(client, postgres_db, settings).running():
        handle = await submit_signal(client, postgres_db, settings, signal("ops-cli"))
        await all_waiting(client, handle, 2)
        # Exactly the command the README documents.
        command = [
            temporal_binary(),
            "workflow",
            "signal",
            "--address",
            settings.temporal_address,
            "--workflow-id",
            "signal-ops-cli",
            "--name",
            "pause_account",
            "--input",
            json.dumps({"account_id": "paused", "operator": "cli-user", "reason": "by hand"}),
        ]
        subprocess.run(command, check=True, capture_output=True, timeout=60)
        report: SignalReport = await handle.result()

    lines = {line.account_id: line for line in report.accounts}
    assert lines["paused"].status is LegStatus.SKIPPED_PAUSED
    assert lines["paused"].reason == "account paused by cli-user: by hand"
    assert broker_orders(postgres_db) == {"keeps": 1}
    # Recorded by the workflow, once, with the CLI's identity as Temporal recorded it.
    [row] = receipts(postgres_db)
    assert (row.action, row.operator, row.via) == ("pause_account", "cli-user", "signal")
    assert row.identity and row.identity != client.identity


async def test_starter_pause_command_stops_a_waiting_leg(
    dev_server: WorkflowEnvironment, postgres_db: Database, settings: Settings, harness_factory
) -> None:
    client = dev_server.client
    load(postgres_db, book(account("paused")))
    env = {
        **os.environ,
        "TEO_TEMPORAL_ADDRESS": settings.temporal_address,
        "TEO_DATABASE_URL": settings.database_url,
    }
    # A delay long enough that the starter process (seconds to start on a loaded machine)
    # surely reaches the leg while it waits; the pause ends the wait at once.
    waits = settings.model_copy(update={"delay_min_s": Decimal(60), "delay_max_s": Decimal(60)})
    async with harness_factory(client, postgres_db, waits).running():
        handle = await submit_signal(client, postgres_db, waits, signal("ops-starter"))
        await all_waiting(client, handle, 1)
        pause = ["pause", "paused", "--reason", "desk says so", "--operator", "sam"]
        done = subprocess.run(
            [sys.executable, "starter.py", *pause],
            check=False,
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        report: SignalReport = await handle.result()

    assert done.returncode == 0, done.stderr
    assert "signal-ops-starter" in done.stdout
    [line] = report.accounts
    assert (line.account_id, line.status) == ("paused", LegStatus.SKIPPED_PAUSED)
    assert line.reason == "account paused by sam: desk says so"
    assert broker_orders(postgres_db) == {}


async def test_starter_flatten_of_a_symbol_closes_its_positions_and_is_recorded(
    dev_server: WorkflowEnvironment, postgres_db: Database, settings: Settings, harness_factory
) -> None:
    # A flatten of one symbol sets no reduce-only: the operator-actions table is its record.
    client = dev_server.client
    load(postgres_db, book(account("f1"), account("f2")))
    env = {
        **os.environ,
        "TEO_TEMPORAL_ADDRESS": settings.temporal_address,
        "TEO_DATABASE_URL": settings.database_url,
        "TEO_TASK_QUEUE": settings.task_queue,
    }
    now = settings.model_copy(update={"delay_min_s": Decimal(0), "delay_max_s": Decimal(0)})
    async with harness_factory(client, postgres_db, now).running():
        handle = await submit_signal(client, postgres_db, now, signal("ops-flatten"))
        await handle.result()
        flatten = ["flatten", "--symbol", "EURUSD", "--reason", "news at 2", "--operator", "sam"]
        # Not subprocess.run: the worker runs on this event loop, and the flatten waits on it.
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "starter.py",
            *flatten,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)

    assert proc.returncode == 0, stderr.decode()
    assert "2 position(s); 2 closed" in stdout.decode(), stdout.decode()
    with postgres_db.transaction() as session:
        statuses = {p.account_id: p.status for p in session.scalars(select(PositionRow))}
    assert statuses == {"f1": "CLOSED", "f2": "CLOSED"}
    [row] = [a for a in actions(postgres_db) if a.action == "flatten"]
    assert (row.target, row.operator, row.reason) == ("symbol EURUSD", "sam", "news at 2")
    [workflow_id] = row.reached
    assert workflow_id.startswith("signal-flatten-")


async def test_a_halt_is_not_held_up_by_a_run_whose_workers_are_gone(
    dev_server: WorkflowEnvironment, postgres_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An update waits for a worker to take it: without a bound, one run nobody serves (its
    # worker gone, its task queue unpolled) would hold the kill switch command for ever.
    client = dev_server.client
    monkeypatch.setattr(operators, "BROADCAST_WAIT", timedelta(seconds=2))
    orphan = await client.start_workflow(
        "SignalExecutionWorkflow", id="signal-ops-orphan", task_queue="ops-nobody-polls"
    )
    try:
        await poll_until(
            lambda: _listed(client, orphan.id), timeout_s=30
        )  # visible to the broadcast
        out = await asyncio.wait_for(
            operators.halt(client, postgres_db, operator="risk", reason="outage"), timeout=60
        )
        with postgres_db.transaction() as session:
            halted = repository.is_halted(session)
    finally:
        await orphan.terminate("test over")
        await operators.unhalt(client, postgres_db, operator="risk", reason="over")

    assert halted  # persisted first: it holds for the run that did not answer too
    assert orphan.id in out.unanswered and orphan.id not in out.reached
    [row] = [a for a in actions(postgres_db) if a.action == "halt"]
    assert orphan.id in row.outcome["unanswered"]


async def _listed(client: Client, workflow_id: str) -> bool:
    return workflow_id in await operators.running_executions(client)

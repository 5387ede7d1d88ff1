"""Entry points exit with their own code every time, never with the abort a Temporal client's
native threads can cause at interpreter teardown (temporalio/sdk-python#300: exit -6, about one
run in 25 of a short command): the starter's commands, run many times as processes against the
real dev server, and the worker and the webhook stopped by a signal."""

from __future__ import annotations

import asyncio
import os
import signal as signals
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.temporal import data_converter
from orchestrator.config import PROJECT_ROOT
from orchestrator.domain.report import LegStatus
from orchestrator.services.submit import submit_signal
from tests.integration.test_end_to_end import dev_settings
from tests.integration.test_webhook_end_to_end import free_port
from tests.support import account, book, load, signal

PARALLEL = 2
"""Processes at once (the suite's machines have two cores)."""


async def run(argv: list[str], env: dict[str, str], gate: asyncio.Semaphore) -> int:
    async with gate:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *argv,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return await asyncio.wait_for(process.wait(), timeout=60)


@pytest.mark.integration
async def test_starter_commands_exit_with_their_own_code_every_time(
    dev_server: WorkflowEnvironment, sqlite_db: Database, harness_factory, tmp_path: Path
) -> None:
    load(sqlite_db, book(account("acct")))
    settings = dev_settings(dev_server, sqlite_db)
    client = await Client.connect(
        dev_server.client.service_client.config.target_host,
        namespace=dev_server.client.namespace,
        data_converter=data_converter(settings),
    )
    async with harness_factory(client, sqlite_db, settings).running():
        handle = await submit_signal(client, sqlite_db, settings, signal("it-exit-codes"))
        report = await handle.result()
    assert [line.status for line in report.accounts] == [LegStatus.FILLED]
    bad_signal = tmp_path / "bad.json"
    bad_signal.write_bytes(b'{"signal_id": "caf\xe9"}')
    env = {
        **os.environ,
        "TEO_TEMPORAL_ADDRESS": settings.temporal_address,
        "TEO_DATABASE_URL": sqlite_db.url,
    }
    starter = str(PROJECT_ROOT / "starter.py")
    # (command, expected exit code, runs): the first three create a Temporal client.
    commands = [
        ([starter, "status", "it-exit-codes", "--follow", "--json"], 0, 12),
        ([starter, "status", "never-submitted"], 1, 10),
        ([starter, "list", "--json"], 0, 10),
        ([starter, "plan", str(bad_signal)], 2, 4),
        ([starter, "accounts", "list", "--json"], 0, 4),
    ]
    gate = asyncio.Semaphore(PARALLEL)
    runs = [(argv, expected) for argv, expected, times in commands for _ in range(times)]
    codes = await asyncio.gather(*(run(argv, env, gate) for argv, _ in runs))

    unexpected = Counter(
        (" ".join(argv[1:]), expected, code)
        for (argv, expected), code in zip(runs, codes, strict=True)
        if code != expected
    )
    assert not unexpected, f"(command, expected, got): times — {dict(unexpected)}"


async def stopped(
    script: str, env: dict[str, str], ready: bytes, stop: int, gate: asyncio.Semaphore
) -> int:
    """Start a long-running entry point, send it ``stop`` once it logs ``ready``, and return
    its exit code."""
    async with gate:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(PROJECT_ROOT / script),
            env={**env, "TEO_LOG_FORMAT": "text"},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stderr is not None
        while ready not in await process.stderr.readline():
            assert not process.stderr.at_eof(), f"{script} ended before it was ready"
        process.send_signal(stop)
        await process.stderr.read()
        return await asyncio.wait_for(process.wait(), timeout=60)


@pytest.mark.integration
async def test_the_worker_and_the_webhook_stopped_by_a_signal_exit_0_every_time(
    dev_server: WorkflowEnvironment, sqlite_db: Database
) -> None:
    """The worker on SIGTERM (the webhook on SIGTERM ends by that signal: uvicorn raises it
    again once shut down, see orchestrator/interfaces/http/webhook/app.py; SIGINT returns)."""
    env = {
        **os.environ,
        "TEO_TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        "TEO_DATABASE_URL": sqlite_db.url,
        "TEO_TASK_QUEUE": f"it-exit-{os.getpid()}",
        "TEO_METRICS_PORT": "0",
        "TEO_TEMPORAL_METRICS_PORT": "0",
        "TEO_ARCHIVE_EVERY_S": "0",
        "TEO_ACCOUNT_SYNC_EVERY_S": "0",
        "TEO_WEBHOOK_SHARED_SECRET": "exit-codes",
    }
    gate = asyncio.Semaphore(PARALLEL)
    workers = [
        stopped("worker.py", env, b"worker polling", signals.SIGTERM, gate) for _ in range(8)
    ]
    webhooks = [
        stopped(
            "webhook.py",
            {**env, "TEO_WEBHOOK_PORT": str(free_port())},
            b"webhook ready",
            signals.SIGINT,
            gate,
        )
        for _ in range(6)
    ]
    codes = await asyncio.wait_for(asyncio.gather(*workers, *webhooks), timeout=180)

    assert codes == [0] * 14


def test_the_webhook_without_a_secret_exits_2() -> None:
    env = {
        **os.environ,
        "TEO_WEBHOOK_SHARED_SECRET": "",
        "TEO_WEBHOOK_HMAC_SECRET": "",
    }
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "webhook.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2, done.stderr
    assert "TEO_WEBHOOK_SHARED_SECRET" in done.stderr
    assert "Traceback" not in done.stderr


def test_output_into_a_pipe_whose_reader_has_gone_exits_141_without_a_traceback(
    tmp_path: Path,
) -> None:
    """Standard output buffered as usual (no PYTHONUNBUFFERED): the JSON is written as the
    process leaves, into a pipe nobody reads any more (``starter.py … | head`` once head has
    ended)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    database = Database(f"sqlite:///{tmp_path / 'o.db'}")
    database.migrate()  # commands do not migrate (`db upgrade` does)
    database.dispose()
    env["TEO_DATABASE_URL"] = database.url
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, str(PROJECT_ROOT / "starter.py"), "accounts", "list", "--json"],
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)

    assert (done.returncode, done.stderr) == (141, "")

"""The archive schedule on the real dev server: a closed signal is archived and verified; then,
with no server that knows it, it is still replayed and audited from the archive alone."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from orchestrator.adapters.brokers.paper import PaperMarket
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.temporal import data_converter, temporal_binary
from orchestrator.config import PROJECT_ROOT
from orchestrator.domain import ids
from orchestrator.domain.contracts.payloads import ArchiveRequest
from orchestrator.domain.errors import OrchestratorError
from orchestrator.domain.report import LegStatus
from orchestrator.services import archive, audit, history
from orchestrator.services.submit import submit_signal
from tests.integration.test_end_to_end import dev_settings
from tests.support import TEST_CODEC_KEYS, account, book, load, poll_until, signal

pytestmark = pytest.mark.integration

PARTIAL = {"fill": "partial", "partial_ratio": "0.5", "partial_orders": 1}


async def test_archive_schedule_archives_and_verifies_a_closed_signal_that_outlives_the_server(
    dev_server: WorkflowEnvironment,
    postgres_db: Database,
    harness_factory,
    tmp_path: Path,
) -> None:
    load(postgres_db, book(account("partial", paper=PARTIAL), account("full")))
    archive_dir = tmp_path / "archive"
    # The worker has the test key, as production workers do: other tests' encrypted signals
    # on this server are archived and verified too.
    settings = dev_settings(
        dev_server, postgres_db, archive_dir=archive_dir, codec_keys=TEST_CODEC_KEYS
    )
    client = await Client.connect(
        dev_server.client.service_client.config.target_host,
        namespace=dev_server.client.namespace,
        data_converter=data_converter(settings),
    )
    async with harness_factory(client, postgres_db, settings).running():
        market = PaperMarket(postgres_db)
        market.set_quote("EURUSD", Decimal("1.08500"), Decimal("1.08502"))
        handle = await submit_signal(client, postgres_db, settings, signal("it-archive"))
        report = await handle.result()
        assert {line.status for line in report.accounts} == {LegStatus.FILLED}
        keeper = client.get_workflow_handle(ids.positions_workflow_id(handle.id))
        # While its positions are open, the signal's story is not over: not archived yet.
        waiting = await archive.archive_closed_signals(client, archive_dir, ArchiveRequest())
        assert "signal-it-archive" not in {a.workflow_id for a in waiting.archived}
        assert waiting.positions_open >= 1
        # Stopped out: the keeper ends.
        market.set_quote("EURUSD", Decimal("1.08150"), Decimal("1.08152"))
        await keeper.result()

        # The schedule, created as the worker creates it; triggered now rather than waited for.
        done = await archive.ensure_schedule(
            client,
            namespace=client.namespace,
            task_queue=settings.task_queue,
            every=timedelta(hours=1),
            closed_for=timedelta(0),
        )
        assert done in {"created", "updated"}
        schedule = client.get_schedule_handle(archive.SCHEDULE_ID)
        try:
            await schedule.trigger()
            directory = archive_dir / "signal-it-archive"

            async def archived() -> bool:
                return archive.archived_run(directory, handle.id) == handle.result_run_id

            assert await poll_until(archived, timeout_s=60)
        finally:
            await schedule.delete()

    manifest = history.read_manifest(directory) or {}
    root, child, positions = sorted(manifest)
    assert root == "signal-it-archive.json"
    assert re.fullmatch(r"signal-it-archive__leg-\d__completion\.json", child), child
    assert positions == "signal-it-archive__positions.json"
    assert all(entry["verified"] and entry["audit"] == "OK" for entry in manifest.values())
    recorded = audit.Audit.model_validate_json((directory / history.AUDIT_FILE).read_text())
    assert recorded.ok and recorded.report == report

    # A second archive run leaves an archived run alone.
    again = await archive.archive_closed_signals(client, archive_dir, ArchiveRequest())
    assert "signal-it-archive" not in {a.workflow_id for a in again.archived}
    assert again.already_archived >= 1

    # A fresh server has never heard of it (the server deletes asynchronously, and the dev
    # server did not within a minute here): the archive alone replays and audits it.
    fresh = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=temporal_binary(),
        ip="127.0.0.1",
    )
    try:
        with pytest.raises(history.WorkflowNotFound):
            await history.fetch_with_children(fresh.client, "signal-it-archive")
    finally:
        await fresh.shutdown()
    outcomes = await history.replay_files([directory], converter=data_converter(settings))
    assert [o.ok for o in outcomes] == [True, True, True]
    command = [sys.executable, "starter.py", "audit", "it-archive", "--from", str(directory)]
    keyless = subprocess.run(
        command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert keyless.returncode == 1
    assert "cannot read the history's payloads" in keyless.stderr
    audited = subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "TEO_CODEC_KEYS": TEST_CODEC_KEYS},
    )
    assert audited.returncode == 0, audited.stderr
    output = audited.stdout
    assert "Verdict: OK" in output
    assert "started PartialFillCompletionWorkflow signal-it-archive/leg-" in output


async def test_a_schedule_slower_than_retention_is_refused(dev_server: WorkflowEnvironment) -> None:
    retention = await archive.namespace_retention(dev_server.client, dev_server.client.namespace)
    assert retention is not None
    with pytest.raises(OrchestratorError, match="does not fit twice in the namespace's retention"):
        await archive.ensure_schedule(
            dev_server.client,
            namespace=dev_server.client.namespace,
            task_queue="unused",
            every=retention,
            closed_for=timedelta(0),
        )

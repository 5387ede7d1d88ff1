"""Payload encryption on the real dev server: the raw history the server stores holds no
account id, size or price in plain text; the project's own tools still read it."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.history.v1 import History
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from orchestrator.adapters.codec import load_codec
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.temporal import data_converter, temporal_binary
from orchestrator.domain import search_attributes
from orchestrator.domain.report import LegStatus
from orchestrator.services import audit, history
from orchestrator.services.submit import submit_signal
from tests.integration.test_end_to_end import dev_settings
from tests.support import (
    PLANTED_PG_PASSWORD,
    TEST_CODEC_KEYS,
    account,
    book,
    credential_leaks,
    load,
    signal,
)

pytestmark = pytest.mark.integration

PARTIAL = {"fill": "partial", "partial_ratio": "0.5", "partial_orders": 1}
REJECT = {"fill": "reject", "reject_text": "Not enough money [10019]"}
ACCOUNTS = ["zq-partial-7731", "zq-rejects-4410", "zq-spare-9902", "zq-plain-1187"]


async def raw_events(client: Client, workflow_id: str) -> bytes:
    """The history as the server stores it: protobuf bytes, no data converter involved."""
    response = await client.workflow_service.get_workflow_execution_history(
        GetWorkflowExecutionHistoryRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=workflow_id),
            maximum_page_size=10_000,
        )
    )
    return History(events=response.history.events).SerializeToString()


async def test_history_at_rest_holds_no_account_id_size_or_price_in_plain_text(
    dev_server: WorkflowEnvironment, postgres_db: Database, harness_factory, tmp_path: Path
) -> None:
    load(
        postgres_db,
        book(
            account(ACCOUNTS[0], paper=PARTIAL),
            account(ACCOUNTS[1], paper=REJECT),
            account(ACCOUNTS[2], reserve_only=True),
            account(ACCOUNTS[3]),
        ),
    )
    settings = dev_settings(dev_server, postgres_db, codec_keys=TEST_CODEC_KEYS)
    client = await Client.connect(
        dev_server.client.service_client.config.target_host,
        namespace=dev_server.client.namespace,
        data_converter=data_converter(settings),
    )
    async with harness_factory(client, postgres_db, settings).running():
        handle = await submit_signal(client, postgres_db, settings, signal("it-encrypted"))
        report = await handle.result()
    lines = {line.account_id: line for line in report.accounts}
    assert lines[ACCOUNTS[0]].completion is not None
    assert lines[ACCOUNTS[1]].status is LegStatus.REJECTED
    assert lines[ACCOUNTS[2]].status is LegStatus.FILLED

    loaded = await history.fetch_with_children(client, handle.id)
    assert len(loaded) == 4  # the signal, a completion, a reroute, the positions' keeper
    secrets = {a.encode() for a in ACCOUNTS}
    secrets |= {str(line.requested).encode() for line in report.accounts if line.requested}
    secrets |= {b"1.08500", b"Not enough money"}
    for workflow in loaded:
        raw = await raw_events(dev_server.client, workflow.workflow_id)
        assert raw
        leaks = {s for s in secrets if s in raw or base64.b64encode(s) in raw}
        assert not leaks, (workflow.workflow_id, leaks)

    # Our own tools read it with the key, and only with it.
    result = await audit.audit_histories(loaded, converter=data_converter(settings))
    assert result.ok and result.report == report
    with pytest.raises(audit.UnreadableHistory, match="Unknown payload encoding binary/encrypted"):
        await audit.audit_histories(loaded)


async def test_the_credential_scan_finds_a_secret_even_inside_encrypted_payloads(
    postgres_db: Database, harness_factory
) -> None:
    """The session's scan (tests/integration/conftest.py) could fail: on a server of its own,
    a secret put into a signal's free-text note is found, through the encryption."""
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=temporal_binary(),
        search_attributes=search_attributes.ALL,
        ip="127.0.0.1",
    )
    try:
        load(postgres_db, book(account("one")))
        settings = dev_settings(env, postgres_db, codec_keys=TEST_CODEC_KEYS)
        client = await Client.connect(
            env.client.service_client.config.target_host,
            namespace=env.client.namespace,
            data_converter=data_converter(settings),
        )
        async with harness_factory(client, postgres_db, settings).running():
            handle = await submit_signal(
                client, postgres_db, settings, signal("it-leak", note="pw=" + PLANTED_PG_PASSWORD)
            )
            await handle.result()
        codec_under_test = load_codec(keys=TEST_CODEC_KEYS, key_file=None, active=None)
        assert PLANTED_PG_PASSWORD.encode() not in await raw_events(env.client, handle.id)
        leaks = await credential_leaks(env.client, [PLANTED_PG_PASSWORD], codec_under_test)
        # The signal's input holds the note, and so does its keeper's (the signal is in it).
        assert sorted(leaks) == sorted(
            f"{workflow_id}: {PLANTED_PG_PASSWORD[:6]}…"
            for workflow_id in ("signal-it-leak", "signal-it-leak/positions")
        )
    finally:
        await env.shutdown()

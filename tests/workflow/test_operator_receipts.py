"""What the Web UI (or the ``temporal`` CLI) can send a signal workflow, on the time-skipping
server: Temporal's own cancellation request handled like ``cancel_signal``; every operator
action recorded by the workflow that received it, once, with the sender's identity; a refusal
that reads as one sentence; a plaintext payload in an encrypted deployment reported."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import OperatorActionRow
from orchestrator.adapters.observability import metrics
from orchestrator.adapters.temporal import data_converter
from orchestrator.config import Settings
from orchestrator.domain.contracts.operators import ActionVia, HaltRequest, PauseAccount
from orchestrator.domain.progress import SignalProgress
from orchestrator.domain.report import LegStatus, SignalReport
from orchestrator.services import audit
from orchestrator.services.history import fetch_with_children
from orchestrator.services.submit import submit_signal
from tests.support import (
    TEST_CODEC_KEYS,
    account,
    book,
    load,
    paper_orders,
    poll_until,
    signal,
    uncorrelated_returns,
)
from workflows.signal import SignalExecutionWorkflow


@pytest.fixture
def settings(test_settings: Settings) -> Settings:
    return test_settings.model_copy(update={"delay_min_s": Decimal(30), "delay_max_s": Decimal(30)})


def receipts(db: Database) -> list[OperatorActionRow]:
    with db.transaction() as session:
        return list(
            session.scalars(
                select(OperatorActionRow)
                .where(OperatorActionRow.workflow_id.is_not(None))
                .order_by(OperatorActionRow.id)
            )
        )


async def waiting(handle: WorkflowHandle[Any, Any], legs: int) -> None:
    async def all_waiting() -> bool:
        progress: SignalProgress = await handle.query(SignalExecutionWorkflow.progress)
        return len(progress.legs) == legs and all(
            leg.status is LegStatus.WAITING for leg in progress.legs
        )

    await poll_until(all_waiting)


async def test_temporals_cancellation_request_is_handled_like_cancel_signal(
    time_skipping_env: WorkflowEnvironment,
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    harness_factory,
) -> None:
    """The Web UI's Request Cancellation: the working order is cancelled at the broker, the
    waiting leg ends CANCELLED, the run completes with its report (CANCELLED) and records who
    asked; SignalStatus says CANCELLED."""
    stall = {"stall_after": 0}
    load(sqlite_db, book(account("stuck", paper=stall), account("waits", paper=stall)))
    one_slot = settings.model_copy(
        update={"delay_min_s": Decimal(0), "delay_max_s": Decimal(0), "max_orders_in_flight": 1}
    )
    async with harness_factory(ts_client, sqlite_db, one_slot).running():
        handle = await submit_signal(ts_client, sqlite_db, one_slot, signal("rc-cancel"))
        with time_skipping_env.auto_time_skipping_disabled():
            await poll_until(lambda: len(paper_orders(sqlite_db)) >= 1, timeout_s=30)
            await handle.cancel()
        report: SignalReport = await handle.result()
        description = await handle.describe()

    assert report.status == "CANCELLED"
    assert {line.status for line in report.accounts} == {LegStatus.CANCELLED}
    # One order was working (cancelled at the broker), the other leg waited for its slot.
    assert [o.status for o in paper_orders(sqlite_db).values()] == ["CANCELLED"]
    attributes = description.typed_search_attributes
    assert [v for k, v in attributes if k.name == "SignalStatus"] == ["CANCELLED"]
    [row] = receipts(sqlite_db)
    assert (row.action, row.via, row.workflow_id) == (
        "cancel_signal",
        ActionVia.CANCELLATION.value,
        "signal-rc-cancel",
    )
    assert row.identity  # the client that asked, as Temporal recorded it
    assert row.operator == row.identity


async def test_a_signal_sent_straight_to_the_workflow_is_recorded_once_by_it(
    time_skipping_env: WorkflowEnvironment,
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    harness_factory,
) -> None:
    """A pause sent as the Web UI and the ``temporal`` CLI send it (to one workflow, not through
    the starter): the workflow records it, with the sender's identity, exactly once."""
    ids = ["stays", "paused"]
    load(sqlite_db, book(*(account(i) for i in ids), returns=uncorrelated_returns(ids)))
    async with harness_factory(ts_client, sqlite_db, settings).running():
        handle = await submit_signal(ts_client, sqlite_db, settings, signal("rc-pause"))
        with time_skipping_env.auto_time_skipping_disabled():
            await waiting(handle, 2)
            await handle.signal(
                SignalExecutionWorkflow.pause_account,
                PauseAccount(account_id="paused", operator="jane", reason="client asked"),
            )
            await poll_until(lambda: len(receipts(sqlite_db)) == 1, timeout_s=30)
        report: SignalReport = await handle.result()

    lines = {line.account_id: line for line in report.accounts}
    assert lines["paused"].status is LegStatus.SKIPPED_PAUSED
    [row] = receipts(sqlite_db)
    assert (row.action, row.target, row.operator, row.reason, row.via) == (
        "pause_account",
        "paused",
        "jane",
        "client asked",
        "signal",
    )
    assert row.identity == ts_client.identity
    assert row.receipt is not None and row.receipt.endswith("/signal:pause_account:1")


async def test_a_refused_update_reads_as_one_sentence_without_a_stack_trace(
    time_skipping_env: WorkflowEnvironment,
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    harness_factory,
) -> None:
    load(sqlite_db, book(account("a")))
    async with harness_factory(ts_client, sqlite_db, settings).running():
        handle = await submit_signal(ts_client, sqlite_db, settings, signal("rc-refused"))
        with time_skipping_env.auto_time_skipping_disabled():
            await waiting(handle, 1)
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(
                    SignalExecutionWorkflow.halt, HaltRequest(operator="", reason="outage")
                )
            await handle.cancel()
        await handle.result()

    cause = refused.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.message == "halt refused: say who you are (operator)."
    assert cause.failure is not None and cause.failure.stack_trace == ""
    assert receipts(sqlite_db)[0].action == "cancel_signal"  # the refusal recorded nothing


async def test_a_plaintext_signal_into_an_encrypted_workflow_is_detected_and_reported(
    time_skipping_env: WorkflowEnvironment,
    sqlite_db: Database,
    settings: Settings,
    harness_factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With no codec endpoint set, the Web UI sends a signal as ``json/plain``: the worker
    (which encrypts) says so loudly, in an error log naming the workflow and the signal, in a
    metric, and in the signal's audit."""
    encrypted = settings.model_copy(update={"codec_keys": SecretStr(TEST_CODEC_KEYS)})
    target = time_skipping_env.client.service_client.config.target_host
    namespace = time_skipping_env.client.namespace
    # The environment's own connection and interceptors (its time skipping), another converter.
    config = time_skipping_env.client.config()
    config["data_converter"] = data_converter(encrypted, on_plaintext=metrics.plaintext_seen)
    worker_client = Client(**config)
    ui_without_codec = await Client.connect(
        target, namespace=namespace, data_converter=pydantic_data_converter
    )
    ids = ["stays", "paused"]
    load(sqlite_db, book(*(account(i) for i in ids), returns=uncorrelated_returns(ids)))
    before = metrics.PLAINTEXT._value.get()
    caplog.set_level(logging.ERROR, logger=metrics.log.name)
    async with harness_factory(worker_client, sqlite_db, encrypted).running():
        handle = await submit_signal(worker_client, sqlite_db, encrypted, signal("rc-plain"))
        with time_skipping_env.auto_time_skipping_disabled():
            await waiting(handle, 2)
            await ui_without_codec.get_workflow_handle(handle.id).signal(
                "pause_account",
                {"account_id": "paused", "operator": "jane", "reason": "from the UI"},
            )
            await poll_until(lambda: len(receipts(sqlite_db)) == 1, timeout_s=30)
        report: SignalReport = await handle.result()
        loaded = await fetch_with_children(worker_client, handle.id)

    # The pause itself took effect: it is a legitimate operator action, sent the wrong way.
    assert {line.account_id: line.status for line in report.accounts}["paused"] is (
        LegStatus.SKIPPED_PAUSED
    )
    assert metrics.PLAINTEXT._value.get() == before + 1
    logged = [r.getMessage() for r in caplog.records if "PLAINTEXT" in r.getMessage()]
    assert any("signal-rc-plain" in line for line in logged), logged
    assert any("signal pause_account" in line and "history event" in line for line in logged)
    result = await audit.audit_histories(loaded, converter=data_converter(encrypted))
    [finding] = result.plaintext
    assert "signal pause_account" in finding
    assert any(e.kind == "plaintext" for e in result.trail)

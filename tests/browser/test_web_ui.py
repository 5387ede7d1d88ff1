"""The Temporal Web UI with payload encryption on, in a real browser: what an operator reads
and sends there goes through the project's local codec server.

Helpers to drive the UI are in ``tests/browser/ui.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
from decimal import Decimal

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History, HistoryEvent
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest
from temporalio.client import Client

from orchestrator.adapters.codec import ENCODING
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import OperatorActionRow
from orchestrator.domain.contracts.operators import HaltRequest, PauseAccount
from orchestrator.domain.report import LegStatus
from orchestrator.services.submit import submit_signal
from tests.browser.conftest import UiWorld
from tests.browser.ui import (
    open_workflow,
    request_cancellation_from_ui,
    send_signal_from_ui,
    send_update_from_ui,
)
from tests.support import account, book, load, poll_until, signal
from workflows.signal import SignalExecutionWorkflow

pytestmark = pytest.mark.browser


async def stored_history(client: Client, workflow_id: str) -> History:
    """The history as the server stores it (read with a client that has no codec)."""
    response = await client.workflow_service.get_workflow_execution_history(
        GetWorkflowExecutionHistoryRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=workflow_id),
            maximum_page_size=10_000,
        )
    )
    return History(events=response.history.events)


def status(name: str) -> re.Pattern[str]:
    """The status badge's text ("Running", shown upper-cased by CSS)."""
    return re.compile(rf"^\s*{name}\s*$", re.IGNORECASE)


def receipts(db: Database) -> list[OperatorActionRow]:
    """The operator actions the workflows recorded as they received them."""
    with db.transaction() as session:
        return list(
            session.scalars(
                select(OperatorActionRow)
                .where(OperatorActionRow.workflow_id.is_not(None))
                .order_by(OperatorActionRow.id)
            )
        )


def events_of(history: History, kind: int) -> list[HistoryEvent]:
    return [event for event in history.events if event.event_type == kind]


async def test_a_signal_reads_decoded_in_the_ui_through_the_local_codec(
    page: Page, ui_world: UiWorld
) -> None:
    """Found by its SignalId in the list's query box, the run's input and report read in
    clear in the browser, while the server holds them encrypted."""
    accounts = ["zq-ui-read-4471", "zq-ui-read-4472", "zq-ui-read-4473"]
    load(ui_world.db, book(*(account(a) for a in accounts)))
    async with ui_world.worker(delay_min_s=Decimal(0), delay_max_s=Decimal(0)):
        handle = await submit_signal(
            ui_world.client, ui_world.db, ui_world.settings, signal("ui-read-1")
        )
        report = await asyncio.wait_for(handle.result(), timeout=60)
    assert sorted(line.account_id for line in report.accounts) == accounts

    stored = (await stored_history(ui_world.raw_client, handle.id)).SerializeToString()
    assert not [a for a in accounts if a.encode() in stored], "account ids stored in clear"
    assert b"1.08500" not in stored and b"EURUSD" in stored  # the price only in the ciphertext

    await open_workflow(page, handle.id, query="SignalId='ui-read-1'")
    await expect(page.get_by_test_id("execution-status").first).to_have_text(status("Completed"))
    shown = page.get_by_test_id("input-and-result")
    await expect(shown).to_contain_text('"entry": "1.08500"')  # the input, decoded
    await expect(shown).to_contain_text(f'"account_id": "{report.accounts[0].account_id}"')
    await expect(shown).to_contain_text('"status": "COMPLETED"')  # the report, decoded
    await expect(page.get_by_test_id("data-encoder-status-success")).to_be_visible()


@pytest.mark.parametrize("page", ["localhost"], indirect=True)  # the dev server's spelling
async def test_pause_and_request_cancellation_from_the_ui_count_like_the_starters(
    page: Page, ui_world: UiWorld
) -> None:
    """Send a Signal on a running signal (legs waiting on their timers): the UI encodes the
    input through the codec server's /encode, so the server stores it encrypted; the workflow
    skips the paused account's leg and records the pause in ``operator_actions``. Then Request
    Cancellation ends the run with its report, status CANCELLED, recorded too."""
    accounts = ["zq-ui-pause-5581", "zq-ui-pause-5582", "zq-ui-pause-5583"]
    load(ui_world.db, book(*(account(a) for a in accounts)))
    async with ui_world.worker(delay_min_s=Decimal(60), delay_max_s=Decimal(120)):
        handle = await submit_signal(
            ui_world.client, ui_world.db, ui_world.settings, signal("ui-pause-1")
        )
        try:
            await open_workflow(page, handle.id)
            await expect(page.get_by_test_id("execution-status").first).to_have_text(
                status("Running")
            )
            request = {"account_id": accounts[1], "operator": "jane", "reason": "test"}
            await send_signal_from_ui(page, handle.id, "pause_account", json.dumps(request))

            history = await stored_history(ui_world.raw_client, handle.id)
            [sent] = events_of(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
            attributes = sent.workflow_execution_signaled_event_attributes
            assert attributes.signal_name == "pause_account"
            [payload] = attributes.input.payloads
            assert payload.metadata["encoding"] == ENCODING  # through the codec's /encode
            assert accounts[1].encode() not in payload.SerializeToString()
            [decoded] = await ui_world.client.data_converter.decode([payload], [PauseAccount])
            assert decoded == PauseAccount(account_id=accounts[1], operator="jane", reason="test")

            async def leg_skipped() -> bool:
                progress = await handle.query(SignalExecutionWorkflow.progress)
                legs = {leg.account_id: leg.status for leg in progress.legs}
                return legs.get(accounts[1]) is LegStatus.SKIPPED_PAUSED

            await poll_until(leg_skipped, timeout_s=30)
            await poll_until(lambda: len(receipts(ui_world.db)) == 1, timeout_s=30)

            await request_cancellation_from_ui(page, handle.id)
            report = await asyncio.wait_for(handle.result(), timeout=60)
        finally:
            description = await handle.describe()
            if description.status is not None and description.status.name == "RUNNING":
                await handle.terminate("browser test cleanup")

    assert report.status == "CANCELLED"
    lines = {line.account_id: line.status for line in report.accounts}
    assert lines == {
        accounts[0]: LegStatus.CANCELLED,
        accounts[1]: LegStatus.SKIPPED_PAUSED,
        accounts[2]: LegStatus.CANCELLED,
    }
    await open_workflow(page, handle.id)
    await expect(page.get_by_test_id("execution-status").first).to_have_text(status("Completed"))
    await expect(page.get_by_test_id("input-and-result")).to_contain_text('"status": "CANCELLED"')
    pause, cancel = receipts(ui_world.db)
    assert (pause.action, pause.target, pause.operator, pause.via) == (
        "pause_account",
        accounts[1],
        "jane",
        "signal",
    )
    # The Web UI 2.54.1 sends signals with no client identity: the operator field names who.
    assert pause.identity is None, (pause.identity, cancel.identity)
    assert (cancel.action, cancel.via, cancel.workflow_id) == (
        "cancel_signal",
        "cancellation",
        handle.id,
    )


async def test_halt_sent_from_the_ui_as_an_update_is_validated_then_applied(
    page: Page, ui_world: UiWorld
) -> None:
    """Send an Update through the codec: a refusal of the update's validator (no reason) keeps
    the dialog open with an error and leaves no event; a valid halt is accepted, its input
    stored encrypted, and the signal ends with every leg stopped."""
    accounts = ["zq-ui-halt-6691", "zq-ui-halt-6692", "zq-ui-halt-6693"]
    load(ui_world.db, book(*(account(a) for a in accounts)))
    worker = ui_world.worker(delay_min_s=Decimal(60), delay_max_s=Decimal(120))
    await worker.__aenter__()
    handle = await submit_signal(
        ui_world.client, ui_world.db, ui_world.settings, signal("ui-halt-1")
    )
    try:
        await open_workflow(page, handle.id)
        await expect(page.get_by_test_id("execution-status").first).to_have_text(status("Running"))
        # The validator's refusal is one sentence, sent as it is (it names nothing secret),
        # so the dialog shows it even with encryption on; nothing is recorded.
        with pytest.raises(AssertionError, match=r"halt refused: give a reason\."):
            await send_update_from_ui(page, handle.id, "halt", json.dumps({"operator": "jane"}))
        await (
            page.get_by_role("dialog", name="Send an Update")
            .get_by_test_id("cancel-modal-button")
            .click()
        )

        halt = {"operator": "jane", "reason": "test"}
        await send_update_from_ui(page, handle.id, "halt", json.dumps(halt))
        history = await stored_history(ui_world.raw_client, handle.id)
        accepted = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        [event] = events_of(history, accepted)
        attributes = event.workflow_execution_update_accepted_event_attributes
        assert attributes.accepted_request.input.name == "halt"
        [payload] = attributes.accepted_request.input.args.payloads
        assert payload.metadata["encoding"] == ENCODING
        [decoded] = await ui_world.client.data_converter.decode([payload], [HaltRequest])
        assert decoded == HaltRequest(operator="jane", reason="test")
        report = await asyncio.wait_for(handle.result(), timeout=30)
        assert {line.account_id: line.status for line in report.accounts} == dict.fromkeys(
            accounts, LegStatus.HALTED
        )
        # A halt sent by hand is the kill switch: persisted, and recorded by the workflow.
        with ui_world.db.transaction() as session:
            assert repository.halt_reason(session) == "test"
        [row] = receipts(ui_world.db)
        assert (row.action, row.operator, row.via) == ("halt", "jane", "update")
    finally:
        description = await handle.describe()
        if description.status is not None and description.status.name == "RUNNING":
            await handle.terminate("browser test cleanup")
        await worker.__aexit__(None, None, None)

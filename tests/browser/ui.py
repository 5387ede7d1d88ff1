"""Driving the Temporal Web UI (2.54.1, the dev server's) with Playwright: helpers for browser
tests. Selectors are the UI's own ``data-testid`` attributes and accessible names, found by
exploring the real UI (see docs/web-ui.md):

- workflows list: the ``</>`` toggle (``toggle-manual-query``) shows the query box
  (``workflow-manual-search-input``, placeholder "Enter a query"); a run is a link named by
  its workflow id;
- workflow page: heading ``workflow-id-heading``, status ``execution-status``, input and
  result ``input-and-result``, the codec's state ``data-encoder-status-success`` (it is
  ``data-encoder-status-configured`` before the first decode); buttons "Request
  Cancellation" and "More Actions" (menu items "Reset", "Send a Signal", "Send an Update",
  "Terminate", "Start Workflow Like This One");
- the Send a Signal / Send an Update dialogs: a dropdown (``signal-select-button`` /
  ``update-select-button``, options named after the workflow's declared handlers) when the
  UI could read the workflow's metadata query, else a text box (``signal-name`` /
  ``update-name``); the Data editor (a text box named "Data", reformatted on blur); Submit
  (``confirm-modal-button``). An error leaves the dialog open with an alert: "Data encoding
  failed" (the codec server refused /encode), "An unknown error occurred." (it could not be
  reached, e.g. CORS), or an update validator's refusal as its one sentence (``halt refused:
  give a reason.``: refusals are sent unencrypted, so the dialog shows them even with
  encryption on; an encrypted failure message would show as "Encoded failure").
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from playwright.async_api import Locator, Page, expect
from playwright.async_api import TimeoutError as PlaywrightTimeout

NAMESPACE = "default"
ACTION_TIMEOUT_MS = 15_000


def workflow_path(workflow_id: str, namespace: str = NAMESPACE) -> str:
    return f"/namespaces/{namespace}/workflows/{quote(workflow_id, safe='')}"


async def find_runs(page: Page, query: str, *, namespace: str = NAMESPACE) -> Locator:
    """The workflows list filtered by ``query`` typed into its query box (as an operator does:
    ``SignalId='s-42'``); returns the table's rows. A query on an attribute the children carry
    too (SignalId) lists the children as well: match the row by its workflow id."""
    await page.goto(f"/namespaces/{namespace}/workflows")
    toggle = page.get_by_test_id("toggle-manual-query")
    await toggle.wait_for()
    box = page.get_by_test_id("workflow-manual-search-input")
    if not await box.is_visible():  # hidden on every fresh load (not remembered)
        await toggle.click()
    await box.fill(query)
    await box.press("Enter")
    await page.wait_for_url(lambda url: "query=" in url)
    return page.get_by_test_id("workflows-summary-configurable-table-row")


async def open_workflow(
    page: Page, workflow_id: str, *, query: str | None = None, namespace: str = NAMESPACE
) -> None:
    """The workflow's page: found through the list with ``query`` when given (then opened by
    its link), else by its URL. Returns once its heading names it."""
    if query is not None:
        link = page.get_by_role("link", name=workflow_id, exact=True)
        for attempt in range(3):  # visibility may trail a run that has just started or closed
            await find_runs(page, query, namespace=namespace)
            try:
                await link.wait_for(timeout=5_000)
                break
            except PlaywrightTimeout:
                if attempt == 2:
                    raise
        await link.click()
    else:
        await page.goto(workflow_path(workflow_id, namespace))
    await expect(page.get_by_test_id("workflow-id-heading")).to_contain_text(workflow_id)


async def _on_workflow_page(page: Page, workflow_id: str) -> None:
    heading = page.get_by_test_id("workflow-id-heading")
    if not (await heading.count() and workflow_id in await heading.inner_text()):
        await open_workflow(page, workflow_id)


async def _choose_handler(page: Page, dialog: Locator, kind: str, name: str) -> None:
    """Pick the signal or update ``name`` in its dialog: from the dropdown of the workflow's
    declared handlers, or typed, when the UI shows a text box instead."""
    dropdown = dialog.get_by_test_id(f"{kind}-select-button")
    typed = dialog.get_by_test_id(f"{kind}-name")
    await dropdown.or_(typed).first.wait_for()
    if await dropdown.is_visible():
        await dropdown.click()
        option = page.get_by_role("option", name=name, exact=True)
        try:
            await option.wait_for(timeout=5_000)
        except PlaywrightTimeout as err:
            offered = await page.get_by_role("option").all_inner_texts()
            raise AssertionError(f"the UI offers no {kind} {name!r}; it offers {offered}") from err
        await option.click()
    else:
        await typed.fill(name)


async def _enter_data(page: Page, dialog: Locator, input_json: str) -> None:
    editor = dialog.get_by_role("textbox", name="Data")
    await editor.click()
    await page.keyboard.press("ControlOrMeta+A")
    await page.keyboard.press("Delete")
    await page.keyboard.insert_text(input_json)
    # The editor reformats the JSON when it loses focus, which moves the Submit button: blur
    # it first (on the dialog's title), so the click on Submit lands.
    await dialog.locator("[id^='modal-title-']").click()


async def _submit(dialog: Locator, what: str) -> None:
    """Submit, then wait until the dialog closes (sent) or shows an error (raised, with the
    dialog's text: "Data encoding failed", "Encoded failure", …)."""
    submit = dialog.get_by_test_id("confirm-modal-button")
    await expect(submit).to_be_enabled()
    await submit.click()
    error = dialog.get_by_role("alert").filter(visible=True)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ACTION_TIMEOUT_MS / 1000
    while await dialog.is_visible():
        if await error.count() or loop.time() > deadline:
            text = " | ".join(line for line in (await dialog.inner_text()).split("\n") if line)
            raise AssertionError(f"the UI did not send {what}; its dialog says: {text}")
        await asyncio.sleep(0.1)


async def send_signal_from_ui(page: Page, workflow_id: str, name: str, input_json: str) -> None:
    """More Actions → Send a Signal: ``name`` with ``input_json`` as its one json/plain
    payload (the UI passes it through the codec's /encode when one is set). Returns once the
    dialog closed (the server accepted the signal); raises with the dialog's text otherwise
    (e.g. "Data encoding failed" when the codec refuses)."""
    await _on_workflow_page(page, workflow_id)
    await page.get_by_role("button", name="More Actions").click()
    await page.get_by_role("menuitem", name="Send a Signal").click()
    dialog = page.get_by_role("dialog", name="Send a Signal")
    await dialog.wait_for()
    await _choose_handler(page, dialog, "signal", name)
    await _enter_data(page, dialog, input_json)
    await _submit(dialog, f"signal {name!r}")


async def send_update_from_ui(page: Page, workflow_id: str, name: str, input_json: str) -> None:
    """More Actions → Send an Update: like ``send_signal_from_ui``; returns once the dialog
    closed (the update was accepted and completed); a validator's refusal keeps the dialog open
    and is raised with its text."""
    await _on_workflow_page(page, workflow_id)
    await page.get_by_role("button", name="More Actions").click()
    await page.get_by_role("menuitem", name="Send an Update").click()
    dialog = page.get_by_role("dialog", name="Send an Update")
    await dialog.wait_for()
    await _choose_handler(page, dialog, "update", name)
    await _enter_data(page, dialog, input_json)
    await _submit(dialog, f"update {name!r}")


async def request_cancellation_from_ui(page: Page, workflow_id: str) -> None:
    """The "Request Cancellation" button and its "Cancel Workflow" dialog's Confirm: a Temporal
    cancellation request (not Terminate). Returns once the dialog closed."""
    await _on_workflow_page(page, workflow_id)
    await page.get_by_role("button", name="Request Cancellation").click()
    dialog = page.get_by_role("dialog", name="Cancel Workflow")
    await dialog.wait_for()
    confirm = dialog.get_by_role("button", name="Confirm")
    await confirm.click()
    try:
        await dialog.wait_for(state="hidden", timeout=ACTION_TIMEOUT_MS)
    except PlaywrightTimeout as err:
        raise AssertionError(
            f"the cancellation was not requested: {await dialog.inner_text()}"
        ) from err

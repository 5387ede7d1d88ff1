"""Browser tier: the real Temporal Web UI in headless Chromium (Debian's, driven by Playwright),
on a dev server of its own whose UI is preset to the project's local codec server, with a
worker that encrypts.

Per session: the dev server with its UI (``temporal server start-dev`` as the project runs it,
on free 127.0.0.1 ports, the project's search attributes), the local codec server
(``ensure_dev_codec``, the test key ring), and Playwright. Per test: a worker on a task queue
of its own (SQLite), and a browser with a fresh profile. Chromium missing is a failure, never
a skip (``scripts/install-browser.sh`` installs it; ``make test`` runs it).

A failed test leaves a screenshot, the page's HTML, the browser console and the codec server's
log under ``test-artifacts/browser/<test>/``.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import AsyncIterator, Generator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, Playwright, async_playwright
from temporalio.client import Client

from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.temporal import (
    connect,
    dev_server_command,
    ensure_search_attributes,
    port_open,
)
from orchestrator.config import PROJECT_ROOT, Settings
from orchestrator.interfaces.http.codec_server import DevCodec, ensure_dev_codec, stop_dev_codec
from tests.support import TEST_CODEC_KEYS, WorkerHarness

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "browser"
PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so the page fixture knows the test failed."""
    report: pytest.TestReport = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report


def free_ports(count: int) -> list[int]:
    """Distinct free ports on 127.0.0.1 (held open together while chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass(frozen=True)
class UiStack:
    settings: Settings
    """Address, UI URL, codec key ring and codec port of this tier's dev server."""
    ui_url: str
    codec: DevCodec
    run_dir: Path


def _answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="session")
async def ui_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[UiStack]:
    run_dir = tmp_path_factory.mktemp("ui-stack")
    grpc_port, ui_port, codec_port = free_ports(3)
    ui_url = f"http://127.0.0.1:{ui_port}"
    settings = Settings(
        temporal_address=f"127.0.0.1:{grpc_port}",
        temporal_ui_url=ui_url,
        codec_keys=TEST_CODEC_KEYS,
        codec_server_port=codec_port,
        dev_server_db=run_dir / "temporal.db",
    )
    codec = await ensure_dev_codec(settings, run_dir=run_dir)
    assert codec is not None
    command = dev_server_command(settings, ui_codec_endpoint=codec.endpoint, ui_port=ui_port)
    with (run_dir / "temporal.log").open("ab") as log:
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not (port_open(settings.temporal_address) and _answers(ui_url)):
            if server.poll() is not None:
                pytest.fail(f"the dev server exited with {server.returncode}: see {run_dir}")
            if loop.time() > deadline:
                pytest.fail(f"the dev server and its UI did not answer within 60 s: {run_dir}")
            await asyncio.sleep(0.2)
        client = await connect(settings)
        await ensure_search_attributes(client, settings.temporal_namespace)
        yield UiStack(settings=settings, ui_url=ui_url, codec=codec, run_dir=run_dir)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)
        stop_dev_codec(run_dir=run_dir)


@pytest.fixture(scope="session")
async def encrypted_client(ui_stack: UiStack) -> Client:
    """A client with the project's converter and the test key ring: payloads encrypted."""
    return await connect(ui_stack.settings)


@pytest.fixture(scope="session")
async def raw_client(ui_stack: UiStack) -> Client:
    """A client without the codec: what the server stores, as it stores it."""
    return await Client.connect(
        ui_stack.settings.temporal_address, namespace=ui_stack.settings.temporal_namespace
    )


@dataclass(frozen=True)
class UiWorld:
    """What a test submits with, and a worker to start with the settings it needs (the worker's
    settings plan every signal)."""

    client: Client
    raw_client: Client
    db: Database
    settings: Settings
    harness_factory: Any

    def worker(self, **updates: Any) -> AbstractAsyncContextManager[None]:
        """A worker on this world's task queue, its settings changed by ``updates``."""
        settings = self.settings.model_copy(update=updates)
        harness: WorkerHarness = self.harness_factory(self.client, self.db, settings)
        return harness.running()


@pytest.fixture
async def ui_world(
    ui_stack: UiStack,
    encrypted_client: Client,
    raw_client: Client,
    harness_factory,
    tmp_path: Path,
) -> AsyncIterator[UiWorld]:
    db = Database(f"sqlite:///{tmp_path / 'orchestrator.db'}")
    db.migrate()
    settings = ui_stack.settings.model_copy(
        update={
            "task_queue": f"browser-{uuid.uuid4().hex[:8]}",
            "database_url": db.url,
            "order_poll_interval_s": 0.05,
        }
    )
    yield UiWorld(
        client=encrypted_client,
        raw_client=raw_client,
        db=db,
        settings=settings,
        harness_factory=harness_factory,
    )
    db.dispose()


@pytest.fixture(scope="session")
async def playwright() -> AsyncIterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-browser.sh (make test does)")
    async with async_playwright() as driver:
        yield driver


@pytest.fixture
async def page(
    request: pytest.FixtureRequest, playwright: Playwright, ui_stack: UiStack, tmp_path: Path
) -> AsyncIterator[Page]:
    """A page of a fresh Chromium profile, its base URL the UI's; on failure its screenshot,
    HTML and console, and the codec server's log, go to ``test-artifacts/browser/<test>/``.

    The UI is opened as ``http://127.0.0.1:PORT`` (what the project prints), or as
    ``http://localhost:PORT`` (what the dev server prints) with
    ``@pytest.mark.parametrize("page", ["localhost"], indirect=True)``: the codec server must
    admit both origins."""
    host = getattr(request, "param", "127.0.0.1")
    context = await playwright.chromium.launch_persistent_context(
        str(tmp_path / "chromium-profile"),
        executable_path=str(CHROMIUM),
        args=CHROMIUM_ARGS,
        headless=True,
        base_url=ui_stack.ui_url.replace("127.0.0.1", host),
        viewport={"width": 1400, "height": 1000},
    )
    context.set_default_timeout(20_000)
    page = context.pages[0] if context.pages else await context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    try:
        yield page
    finally:
        reports = request.node.stash.get(PHASE_REPORTS, {})
        if any(report.failed for report in reports.values()):
            await _keep_artifacts(request.node.name, page, console, ui_stack.run_dir)
        await context.close()


async def _keep_artifacts(test: str, page: Page, console: list[str], run_dir: Path) -> None:
    directory = ARTIFACTS / re.sub(r"[^\w.-]+", "_", test)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    try:
        await page.screenshot(path=directory / "page.png", full_page=True)
        (directory / "page.html").write_text(await page.content(), encoding="utf-8")
        (directory / "url.txt").write_text(page.url + "\n", encoding="utf-8")
    except Exception as err:  # noqa: BLE001 - the page may be gone; keep what we can
        (directory / "screenshot-failed.txt").write_text(repr(err), encoding="utf-8")
    (directory / "console.txt").write_text("\n".join(console) + "\n", encoding="utf-8")
    for name in ("codec-server.log", "temporal.log"):
        if (run_dir / name).exists():
            shutil.copy(run_dir / name, directory / name)

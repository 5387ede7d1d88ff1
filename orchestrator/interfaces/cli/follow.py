"""Following a signal's run live, and printing its execution report."""

from __future__ import annotations

import asyncio
from typing import Any

from rich.live import Live
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import SchemaNotCurrent
from orchestrator.config import Settings
from orchestrator.domain.progress import SignalProgress
from orchestrator.domain.report import SignalReport
from orchestrator.interfaces import display
from orchestrator.interfaces.cli.common import current_database, out
from orchestrator.services.reports import full_report
from workflows.signal import SignalExecutionWorkflow


async def follow(
    client: Client,
    handle: WorkflowHandle[Any, SignalReport],
    *,
    quiet: bool,
    interval_s: float = 0.5,
) -> SignalReport:
    """Show live progress (a refreshing table on a terminal, a line per change otherwise)
    until the workflow completes; return its report, every line (a large signal's joined from
    its batches)."""
    result = asyncio.ensure_future(handle.result())
    last_line = ""
    live = Live(console=out, refresh_per_second=4) if out.is_terminal and not quiet else None
    try:
        if live is not None:
            live.start()
        while not result.done():
            try:
                progress: SignalProgress | None = await handle.query(
                    SignalExecutionWorkflow.progress
                )
            except RPCError:
                progress = None
            if progress is not None and not quiet:
                if live is not None:
                    live.update(display.progress_table(progress))
                else:
                    line = display.progress_line(progress)
                    if line != last_line:
                        out.print(line)
                        last_line = line
            await asyncio.wait({result}, timeout=interval_s)
    finally:
        if live is not None:
            live.stop()
    return await full_report(client, await result)


def print_report(report: SignalReport, settings: Settings | None = None) -> None:
    """The report, each account's position as the ledger holds it now when ``settings`` name a
    readable ledger (else as it stood when the report was written, and a line says so)."""
    live = None
    if settings is not None:
        try:
            with current_database(settings) as db, db.transaction() as session:
                live = {
                    p.account_id: p
                    for p in repository.list_positions(session, signal_id=report.signal_id)
                }
        except (SQLAlchemyError, SchemaNotCurrent) as e:
            out.print(f"positions as at the report: the ledger could not be read ({e})")
    out.print(display.report_table(report, live))
    out.print("Why each account got what it got:")
    for line in display.report_reasons(report):
        out.print(line, highlight=False, soft_wrap=True)

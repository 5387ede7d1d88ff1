"""The demo: the whole path on the embedded defaults (dev server, worker, demo book, two
signals), then the reports."""

from __future__ import annotations

import argparse
import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.adapters.book_file import read_book
from orchestrator.adapters.brokers.paper import PaperMarket
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.temporal import connect
from orchestrator.config import PROJECT_ROOT, Settings
from orchestrator.domain import ids
from orchestrator.domain.actions import ActionKind, TradeAction
from orchestrator.interfaces import display
from orchestrator.interfaces.cli.common import out
from orchestrator.interfaces.cli.follow import follow, print_report
from orchestrator.services.actions import submit_action
from orchestrator.services.submit import parse_signal, submit_signal

SPREAD = Decimal("0.00002")
OPENING_QUOTES = {"EURUSD": Decimal("1.08500"), "GBPUSD": Decimal("1.27000")}
"""The paper market's bids when the signals arrive (at their entries)."""
LATER_QUOTES = {"EURUSD": Decimal("1.09120"), "GBPUSD": Decimal("1.27450")}
"""Then: EURUSD above the long's take-profit (1.09100); GBPUSD's ask 5 pips through the short's
stop (1.27400), so the stops fill with slippage."""


async def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """The whole path on the embedded defaults: dev server, worker, demo book, two signals."""
    from orchestrator.interfaces.http import codec_server
    from worker import build_activities, build_worker

    demo_db = PROJECT_ROOT / ".run" / "demo.db"
    if args.database_url is None:
        # Every demo starts from the book as written: a fresh database, not yesterday's state.
        for leftover in demo_db.parent.glob(demo_db.name + "*"):
            leftover.unlink()
    settings = settings.model_copy(
        update={
            "database_url": args.database_url or f"sqlite:///{demo_db}",
            "task_queue": "trade-execution-demo",
            "delay_min_s": args.delay_min,
            "delay_max_s": args.delay_max,
            "correlated_min_gap_s": args.gap,
        }
    )
    started = datetime.now(UTC)
    for note in (await codec_server.ensure_dev_stack(settings)).notes:
        out.print(note, highlight=False)
    db = Database(settings.database_url)
    db.migrate()
    book = read_book(PROJECT_ROOT / "demo" / "book.yaml")
    with db.transaction() as session:
        repository.save_book(session, book, started)
    out.print(f"loaded the demo book: {len(book.accounts)} accounts, {len(book.returns)} returns")

    stamp = started.strftime("%Y%m%dT%H%M%S")
    signals = [
        parse_signal(
            {
                "signal_id": f"demo-eurusd-{stamp}",
                "symbol": "EURUSD",
                "side": "BUY",
                "entry": "1.08500",
                "stop": "1.08200",
                "take_profit": "1.09100",
                "note": "demo: breakout long",
            }
        ),
        parse_signal(
            {
                "signal_id": f"demo-gbpusd-{stamp}",
                "symbol": "GBPUSD",
                "side": "SELL",
                "entry": "1.27000",
                "stop": "1.27400",
                "note": "demo: fade at resistance",
            }
        ),
    ]
    market = PaperMarket(db)
    for symbol, bid in OPENING_QUOTES.items():
        for name in (symbol, f"{symbol}.pro"):  # broker beta's names for the same market
            market.set_quote(name, bid, bid + SPREAD)
    client = await connect(settings)
    with ThreadPoolExecutor(max_workers=settings.max_concurrent_activities) as executor:
        activities = build_activities(db, settings)
        async with build_worker(client, settings, activities, executor):
            out.print(f"worker running on task queue {settings.task_queue}")
            handles = [await submit_signal(client, db, settings, s) for s in signals]
            for handle in handles:
                out.print(f"  started {handle.id}  {settings.ui_link(handle.id)}")
            reports = await asyncio.gather(*(follow(client, h, quiet=False) for h in handles))
            out.print(
                "The entries are done; every position has its stop (and take-profit) at the "
                "broker. Two more signals act on them: a MODIFY moves the EURUSD longs' stop up "
                "to 1.08350, a CLOSE takes half of each GBPUSD short off (rounded down to each "
                "account's lot step)."
            )
            long_id, short_id = (r.signal_id for r in reports)
            for action in (
                TradeAction(
                    action_id=f"{long_id}-stop-up",
                    action=ActionKind.MODIFY,
                    signal_id=long_id,
                    stop=Decimal("1.08350"),
                ),
                TradeAction(
                    action_id=f"{short_id}-half",
                    action=ActionKind.CLOSE,
                    signal_id=short_id,
                    fraction=Decimal("0.5"),
                ),
            ):
                done = await (await submit_action(client, db, settings, action)).result()
                out.print(display.action_table(done))
            out.print(
                "The market moves: EURUSD rises through its take-profit, GBPUSD gaps up "
                "through its stop. Waiting for the position keepers to close what is left..."
            )
            for symbol, bid in LATER_QUOTES.items():
                for name in (symbol, f"{symbol}.pro"):
                    market.set_quote(name, bid, bid + SPREAD)
            await asyncio.gather(*(positions_closed(client, h.id) for h in handles))
    for handle, report in zip(handles, reports, strict=True):
        print_report(report, settings)
        out.print(f"  Temporal UI: {settings.ui_link(handle.id)}")
        out.print(
            "  Its decision trail, replayed and re-derived: "
            f".venv/bin/python starter.py audit {report.signal_id}\n"
        )
    with db.transaction() as session:
        closed = [
            p
            for report in reports
            for p in repository.list_positions(session, signal_id=report.signal_id)
        ]
    out.print(display.positions_table(closed, "the demo opened, and closed"))
    pnl = sum((p.realized_pnl for p in closed), Decimal(0))
    out.print(
        f"Realized P&L of the demo's positions: {pnl:.2f} USD (`starter.py positions` shows "
        "them again; the audit tells each trade from entry to exit)."
    )
    elapsed = (datetime.now(UTC) - started).total_seconds()
    out.print(
        f"demo finished in {elapsed:.1f} s. The dev server (and the local codec server, when "
        "payloads are encrypted) keeps running so the links work; stop it with `make stop`."
    )
    db.dispose()
    return 0


async def positions_closed(client: Client, signal_workflow_id: str) -> None:
    """Until the keeper of the signal's positions ends (when every position is closed); at
    once when the signal filled nothing (no keeper was started)."""
    keeper = client.get_workflow_handle(ids.positions_workflow_id(signal_workflow_id))
    try:
        await keeper.result()
    except RPCError as e:
        if e.status is not RPCStatusCode.NOT_FOUND:
            raise


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser("demo", help="run the demo end to end")
    demo.add_argument("--delay-min", type=float, default=2.0, help="seconds (default 2)")
    demo.add_argument("--delay-max", type=float, default=12.0, help="seconds (default 12)")
    demo.add_argument("--gap", type=float, default=3.0, help="correlated gap, seconds")
    demo.add_argument("--database-url", help="default: .run/demo.db")
    demo.set_defaults(run=cmd_demo)

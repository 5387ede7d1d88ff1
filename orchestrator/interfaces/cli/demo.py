"""The demo: the whole path on the embedded defaults (dev server, worker, demo book, two
signals), then the reports."""

from __future__ import annotations

import argparse
import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from orchestrator.adapters.book_file import read_book
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.temporal import connect
from orchestrator.config import PROJECT_ROOT, Settings
from orchestrator.interfaces.cli.common import out
from orchestrator.interfaces.cli.follow import follow, print_report
from orchestrator.services.submit import parse_signal, submit_signal


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
    client = await connect(settings)
    with ThreadPoolExecutor(max_workers=settings.max_concurrent_activities) as executor:
        activities = build_activities(db, settings)
        async with build_worker(client, settings, activities, executor):
            out.print(f"worker running on task queue {settings.task_queue}")
            handles = [await submit_signal(client, db, settings, s) for s in signals]
            for handle in handles:
                out.print(f"  started {handle.id}  {settings.ui_link(handle.id)}")
            reports = await asyncio.gather(*(follow(client, h, quiet=False) for h in handles))
    for handle, report in zip(handles, reports, strict=True):
        print_report(report)
        out.print(f"  Temporal UI: {settings.ui_link(handle.id)}")
        out.print(
            "  Its decision trail, replayed and re-derived: "
            f".venv/bin/python starter.py audit {report.signal_id}\n"
        )
    elapsed = (datetime.now(UTC) - started).total_seconds()
    out.print(
        f"demo finished in {elapsed:.1f} s. The dev server (and the local codec server, when "
        "payloads are encrypted) keeps running so the links work; stop it with `make stop`."
    )
    db.dispose()
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser("demo", help="run the demo end to end")
    demo.add_argument("--delay-min", type=float, default=2.0, help="seconds (default 2)")
    demo.add_argument("--delay-max", type=float, default=12.0, help="seconds (default 12)")
    demo.add_argument("--gap", type=float, default=3.0, help="correlated gap, seconds")
    demo.add_argument("--database-url", help="default: .run/demo.db")
    demo.set_defaults(run=cmd_demo)

"""Command line for traders and operators: submit signals, dry-run plans, watch status, manage
the account book, run the demo.

    python starter.py submit demo/signal-eurusd.json --wait
    python starter.py submit --signal-id s-42 --symbol EURUSD --side BUY --entry 1.085 --stop 1.082
    python starter.py plan demo/signal-eurusd.json
    python starter.py status s-42
    python starter.py accounts load demo/book.yaml [--replace-state --reason "resync"]
    python starter.py pause alpha-01 --reason "margin call" [--operator jane] [--reroute]
    python starter.py resume alpha-01
    python starter.py halt --reason "exchange outage" [--cancel-working]
    python starter.py unhalt --reason "exchange back"
    python starter.py cancel s-42 --reason "wrong symbol"
    python starter.py list [--running] [--symbol EURUSD]
    python starter.py orders [--signal s-42] [--account alpha-01] [--json]
    python starter.py export s-42 [s-43 ...] -o audit/
    python starter.py replay audit/*.json
    python starter.py demo

Exit codes: 0 success, 2 invalid input (nothing started or written), 1 any other refusal.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import re
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.live import Live
from rich.table import Table
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError

from orchestrator.adapters import codec, files
from orchestrator.adapters.book_file import read_book
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.temporal import connect, data_converter, stop_dev_server
from orchestrator.config import PROJECT_ROOT, Settings, get_settings
from orchestrator.domain import ids, planning
from orchestrator.domain import search_attributes as sa
from orchestrator.domain.contracts.payloads import ArchiveRequest, SnapshotRequest
from orchestrator.domain.errors import OrchestratorError, ValidationFailed
from orchestrator.domain.progress import SignalProgress
from orchestrator.domain.report import SignalReport
from orchestrator.domain.reports import full_report
from orchestrator.domain.signal import Signal
from orchestrator.domain.values import ID_PATTERN, SYMBOL_PATTERN
from orchestrator.interfaces import display
from orchestrator.interfaces.process import BROKEN_PIPE, run_and_exit
from orchestrator.services import operators
from orchestrator.services.submit import parse_signal, submit_signal
from workflows.signal import SignalExecutionWorkflow

out = display.console()


# --------------------------------------------------------------------------------------------
# Signal input


def read_signal(args: argparse.Namespace) -> Signal:
    if args.file is not None:
        path = Path(args.file)
        return parse_signal(files.read_text(path), source=str(path))
    fields = {
        "signal_id": args.signal_id,
        "symbol": args.symbol,
        "side": args.side.upper() if args.side else None,
        "entry": args.entry,
        "stop": args.stop,
        "take_profit": args.take_profit,
        "order_type": args.order_type.upper() if args.order_type else None,
        "account_ids": args.accounts.split(",") if args.accounts else None,
    }
    given = {key: value for key, value in fields.items() if value is not None}
    return parse_signal(given, source="flags")


def add_signal_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", help="signal JSON file (or give the flags below)")
    parser.add_argument("--signal-id")
    parser.add_argument("--symbol")
    parser.add_argument("--side", help="BUY or SELL")
    parser.add_argument("--entry", help="reference/limit price")
    parser.add_argument("--stop", help="protective stop price")
    parser.add_argument("--take-profit")
    parser.add_argument("--order-type", help="MARKET (default) or LIMIT")
    parser.add_argument("--accounts", help="comma-separated account ids (default: whole book)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


# --------------------------------------------------------------------------------------------
# Commands


async def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    signal = read_signal(args)
    db = Database(settings.database_url)
    db.migrate()
    client = await connect(settings)
    handle = await submit_signal(client, db, settings, signal)
    link = settings.ui_link(handle.id)
    if not args.json:
        out.print(f"started [bold]{handle.id}[/]  {link}")
    if not args.wait:
        if args.json:
            print(json.dumps({"workflow_id": handle.id, "ui": link}))
        return 0
    report = await follow(client, handle, quiet=args.json)
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print_report(report)
    return 0


async def cmd_plan(args: argparse.Namespace, settings: Settings) -> int:
    """Dry run: the same snapshot, correlation and planning code a live run uses; no orders."""
    signal = read_signal(args)
    from worker import build_activities

    db = Database(settings.database_url)
    db.migrate()
    activities = build_activities(db, settings)
    plan_settings = settings.plan_settings()
    snapshot = activities.load_snapshot(
        SnapshotRequest(
            signal_id=signal.signal_id, symbol=signal.symbol, account_ids=signal.account_ids
        )
    )
    correlation = activities.compute_correlation(
        planning.correlation_request(snapshot, plan_settings)
    )
    plan = planning.plan_signal(signal, snapshot, correlation, plan_settings, datetime.now(UTC))
    if args.json:
        print(plan.model_dump_json(indent=2))
    else:
        out.print(display.plan_table(plan))
    return 0


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    client = await connect(settings)
    handle: WorkflowHandle[Any, SignalReport] = client.get_workflow_handle(
        ids.signal_workflow_id(args.signal_id), result_type=SignalReport
    )
    description = await handle.describe()
    if description.status == WorkflowExecutionStatus.COMPLETED:
        report = await handle.result()
        print(report.model_dump_json(indent=2)) if args.json else print_report(report)
        return 0
    if description.status != WorkflowExecutionStatus.RUNNING:
        status_name = description.status.name if description.status else "UNKNOWN"
        out.print(f"{handle.id} ended {status_name}")
        return 1
    if args.follow:
        report = await follow(client, handle, quiet=args.json)
        print(report.model_dump_json(indent=2)) if args.json else print_report(report)
        return 0
    progress = await handle.query(SignalExecutionWorkflow.progress)
    print(progress.model_dump_json(indent=2)) if args.json else out.print(
        display.progress_table(progress)
    )
    return 0


async def cmd_accounts(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "load":
        return load_book(args, settings)
    db = Database(settings.database_url)
    db.migrate()
    if args.action == "export":
        with db.transaction() as session:
            book = repository.export_book(session)
        data = book.model_dump(mode="json", exclude={"returns"})
        Path(args.path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        out.print(f"exported {len(book.accounts)} accounts to {args.path}")
        return 0
    with db.transaction() as session:
        rows = repository.account_rows(session)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "account_id": a.account_id,
                        "broker": a.broker,
                        "status": a.status,
                        "equity": str(s.equity),
                        "free_margin": str(s.free_margin),
                        "open_positions": s.open_positions,
                    }
                    for a, s in rows
                ],
                indent=2,
            )
        )
        return 0
    table = Table(title=f"{len(rows)} accounts")
    for column in ("account", "broker", "status", "equity", "peak", "free margin", "positions"):
        table.add_column(column)
    for a, s in rows:
        table.add_row(
            a.account_id,
            a.broker,
            a.status,
            str(s.equity),
            str(s.peak_equity),
            str(s.free_margin),
            f"{s.open_positions}/{a.max_open_positions}",
        )
    out.print(table)
    return 0


def load_book(args: argparse.Namespace, settings: Settings) -> int:
    """``accounts load``: accounts already in the ledger keep their live state (and an
    operator's pause); ``--replace-state`` makes the file's state the truth, recorded as an
    operator action."""
    replacement: repository.StateReplacement | None = None
    if args.replace_state:
        if not (args.reason or "").strip():
            raise ValidationFailed("flags", [("reason", "--replace-state needs --reason: say why")])
        replacement = repository.StateReplacement(
            operator=args.operator or default_operator(),
            reason=args.reason,
            source=str(Path(args.path).resolve()),
        )
    elif args.reason is not None or args.operator is not None:
        raise ValidationFailed(
            "flags", [("replace_state", "--reason and --operator go with --replace-state")]
        )
    book = read_book(Path(args.path))
    db = Database(settings.database_url)
    try:
        db.migrate()
        with db.transaction() as session:
            loaded = repository.save_book(
                session, book, datetime.now(UTC), replace_state=replacement
            )
    finally:
        db.dispose()
    out.print(
        f"loaded {len(book.accounts)} accounts, {len(book.symbols)} symbol specs, "
        f"{len(book.returns)} daily returns from {args.path}",
        highlight=False,
    )
    if replacement is None:
        out.print(
            f"kept the live state of {len(loaded.kept)} accounts; "
            f"{len(loaded.new)} new accounts take the file's state",
            highlight=False,
        )
    else:
        out.print(
            f"replaced the live state of {len(loaded.replaced)} accounts from the file "
            f"(recorded: {repository.REPLACE_STATE} by {replacement.operator}: "
            f"{replacement.reason}); {len(loaded.new)} new accounts take the file's state",
            highlight=False,
        )
    if loaded.still_paused:
        out.print(
            f"{len(loaded.still_paused)} account(s) stay paused by an operator whatever the "
            f"file says: {', '.join(loaded.still_paused)} (`resume` lifts a pause)",
            highlight=False,
        )
    return 0


async def cmd_orders(args: argparse.Namespace, settings: Settings) -> int:
    """The ledger's orders and their fills, of one signal, one account or all; read only."""
    problems = [
        (name, f"not an id: {value!r}")
        for name, value in (("signal", args.signal), ("account", args.account))
        if value is not None and not re.fullmatch(ID_PATTERN, value)
    ]
    if problems:
        raise ValidationFailed("flags", problems)
    db = Database(settings.database_url)
    try:
        db.migrate()
        with db.transaction() as session:
            orders = repository.list_orders(session, signal_id=args.signal, account_id=args.account)
    finally:
        db.dispose()
    if args.json:
        print(json.dumps([order_document(order) for order in orders], indent=2))
        return 0
    scope = " ".join(
        f"of {name} {value}"
        for name, value in (("signal", args.signal), ("account", args.account))
        if value is not None
    )
    out.print(display.orders_table(orders, scope))
    return 0


def order_document(order: repository.LedgerOrder) -> dict[str, Any]:
    """An order and its fills as JSON: decimals as strings, times in ISO 8601 (UTC)."""

    def text(value: Decimal | None) -> str | None:
        return None if value is None else format(value.normalize(), "f")

    return {
        "client_order_id": order.client_order_id,
        "signal_id": order.signal_id,
        "account_id": order.account_id,
        "sequence": order.business_sequence,
        "broker": order.broker,
        "symbol": order.symbol,
        "side": order.side,
        "order_type": order.order_type,
        "quantity": text(order.quantity),
        "limit_price": text(order.limit_price),
        "filled": text(order.filled),
        "average_price": text(order.average_price),
        "status": order.status,
        "broker_order_id": order.broker_order_id,
        "reject_text": order.reject_text,
        "created_at": order.created_at.isoformat(),
        "updated_at": order.updated_at.isoformat(),
        "fills": [
            {
                "execution_id": fill.execution_id,
                "quantity": text(fill.quantity),
                "price": text(fill.price),
                "filled_at": fill.filled_at.isoformat(),
            }
            for fill in order.fills
        ],
    }


def default_operator() -> str:
    return os.environ.get("TEO_OPERATOR") or getpass.getuser() or "unknown"


def print_outcome(what: str, outcome: operators.Outcome, *, counted: bool = False) -> int:
    """``counted``: the action was an update, whose answers say what it stopped (a signal
    gives no answer; its legs' statuses show the effect)."""
    counts = (
        f"; {outcome.legs_stopped} leg(s) stopped, {outcome.orders_cancelled} order(s) cancelled"
        if counted
        else ""
    )
    out.print(f"{what}: reached {len(outcome.reached)} running workflow(s){counts}")
    for workflow_id in outcome.reached:
        out.print(f"  {workflow_id}", highlight=False)
    for refusal in outcome.refused:
        out.print(f"  [red]refused[/] {refusal}", highlight=False)
    return 1 if outcome.refused else 0


async def cmd_control(args: argparse.Namespace, settings: Settings) -> int:
    db = Database(settings.database_url)
    db.migrate()
    client = await connect(settings)
    who = args.operator or default_operator()
    if args.command == "pause":
        outcome = await operators.pause_account(
            client, db, args.account, operator=who, reason=args.reason, reroute=args.reroute
        )
        return print_outcome(f"paused {args.account}", outcome)
    if args.command == "resume":
        outcome = await operators.resume_account(
            client, db, args.account, operator=who, reason=args.reason
        )
        return print_outcome(f"resumed {args.account}", outcome)
    if args.command == "halt":
        outcome = await operators.halt(
            client, db, operator=who, reason=args.reason, cancel_working=args.cancel_working
        )
        return print_outcome("HALTED: no new order leaves until `unhalt`", outcome, counted=True)
    if args.command == "unhalt":
        outcome = await operators.unhalt(client, db, operator=who, reason=args.reason)
        return print_outcome("trading resumed", outcome)
    try:
        outcome = await operators.cancel_signal(
            client, db, args.signal_id, operator=who, reason=args.reason
        )
    except WorkflowUpdateFailedError as err:
        print(
            f"error: cancel refused by {ids.signal_workflow_id(args.signal_id)}: {err.cause}",
            file=sys.stderr,
        )
        return 1
    return print_outcome(f"cancelled {args.signal_id}", outcome, counted=True)


async def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    client = await connect(settings)
    clauses = ["WorkflowType = 'SignalExecutionWorkflow'"]
    if args.running:
        clauses.append("ExecutionStatus = 'Running'")
    if args.symbol:
        clauses.append(f"Symbol = '{parse_signal_symbol(args.symbol)}'")
    query = " AND ".join(clauses)
    rows = [w async for w in client.list_workflows(query, limit=args.limit)]
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "workflow_id": w.id,
                        "status": w.status.name if w.status else None,
                        "started": w.start_time.isoformat(),
                        "symbol": w.typed_search_attributes.get(sa.SYMBOL),
                        "side": w.typed_search_attributes.get(sa.SIDE),
                        "phase": w.typed_search_attributes.get(sa.SIGNAL_STATUS),
                        "state": display.signal_state(
                            w.status.name if w.status else None,
                            w.typed_search_attributes.get(sa.SIGNAL_STATUS),
                        ),
                    }
                    for w in rows
                ],
                indent=2,
            )
        )
        return 0
    table = Table(title=f"{len(rows)} signal(s)  ({query})")
    for column in ("workflow id", "symbol", "side", "state", "started"):
        table.add_column(column)
    for w in rows:
        attrs = w.typed_search_attributes
        table.add_row(
            w.id,
            attrs.get(sa.SYMBOL) or "",
            attrs.get(sa.SIDE) or "",
            display.signal_state(w.status.name if w.status else None, attrs.get(sa.SIGNAL_STATUS)),
            f"{w.start_time:%Y-%m-%d %H:%M:%S}",
        )
    out.print(table)
    return 0


def parse_since(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not a date or ISO time: {text!r}") from err
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_signal_symbol(symbol: str) -> str:
    """A symbol safe to put in a visibility query (the signal's own pattern)."""
    if not re.fullmatch(SYMBOL_PATTERN, symbol):
        raise ValidationFailed("flags", [("symbol", f"not a symbol: {symbol!r}")])
    return symbol


async def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    """Each signal's workflow and all its children, one JSON file per workflow id (the format
    of `temporal workflow show --output json`), plus manifest.json with their sha256."""
    if not args.signal_ids and args.since is None:
        print("error: name signal ids, or --since DATE", file=sys.stderr)
        return 2
    from orchestrator.services import archive, history

    client = await connect(settings)
    directory = Path(args.output)
    workflow_ids = [ids.signal_workflow_id(s) for s in args.signal_ids]
    if args.since is not None:
        query = archive.signal_query(since=args.since)
        workflow_ids += [w.id async for w in client.list_workflows(query)]
        if not workflow_ids:
            print(f"no signal started since {args.since.isoformat()}")
            return 0
    exported, manifest = await history.export_signals(client, workflow_ids, directory)
    for item in exported:
        still = "" if history.is_closed(item.history) else "  (still running: partial history)"
        print(
            f"wrote {item.path}  {item.history.workflow_id}  "
            f"{len(item.history.events)} events  sha256 {item.sha256}{still}"
        )
    print(f"wrote {manifest}")
    return 0


async def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Replay exported histories against the current workflow code; no server needed."""
    from orchestrator.services import history

    outcomes = await history.replay_files(
        (Path(p) for p in args.files), converter=data_converter(settings)
    )
    if not outcomes:
        print("error: no history files given", file=sys.stderr)
        return 2
    for outcome in outcomes:
        if outcome.ok:
            print(f"OK      {outcome.name}  {outcome.workflow_id}")
        else:
            print(f"FAILED  {outcome.name}  {outcome.failure}")
    failed = sum(not o.ok for o in outcomes)
    print(
        f"{len(outcomes) - failed} of {len(outcomes)} replayed clean"
        " (replay checks the sequence of commands, not their values)"
    )
    return 1 if failed else 0


async def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    """A signal's decision trail from its histories (the server's, or exported files), replayed
    and re-derived; exit code 1 when replay fails, plan values drifted, or fills disagree."""
    from orchestrator.services import audit, history

    if args.source:
        wanted = ids.signal_workflow_id(args.signal_id)
        loaded = [
            h
            for h in history.load_checked([Path(args.source)])
            if h.workflow_id.split("/", 1)[0] == wanted
        ]
        if not loaded:
            raise OrchestratorError(f"no history of {wanted} under {args.source}")
    else:
        client = await connect(settings)
        loaded = await history.fetch_with_children(client, ids.signal_workflow_id(args.signal_id))
    result = await audit.audit_histories(loaded, converter=data_converter(settings))
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        print("\n".join(audit.render(result)))
    return 0 if result.ok else 1


async def cmd_archive(args: argparse.Namespace, settings: Settings) -> int:
    """Create or update the archive schedule, or archive closed signals now."""
    from orchestrator.services import archive

    client = await connect(settings)
    if args.action == "schedule":
        done = await archive.ensure_schedule(
            client,
            namespace=settings.temporal_namespace,
            task_queue=settings.task_queue,
            every=timedelta(seconds=args.every or settings.archive_every_s),
            closed_for=timedelta(seconds=settings.archive_closed_for_s),
        )
        print(
            f"archive schedule {archive.SCHEDULE_ID} {done}: every "
            f"{args.every or settings.archive_every_s} s into {settings.archive_dir} "
            f"(the worker on {settings.task_queue} runs it)"
        )
        return 0
    result = await archive.archive_closed_signals(
        client, settings.archive_dir, ArchiveRequest(closed_for_s=settings.archive_closed_for_s)
    )
    for item in result.archived:
        verdict = "verified" if item.audit_ok else f"FAILED VERIFICATION: {item.failure}"
        print(
            f"archived {item.workflow_id} ({item.histories} histories) → "
            f"{item.directory}: {verdict}"
        )
    print(
        f"{len(result.archived)} archived, {result.already_archived} already archived, "
        f"in {result.directory}"
    )
    return 0 if all(a.audit_ok for a in result.archived) else 1


async def cmd_codec(args: argparse.Namespace, settings: Settings) -> int:
    """``new-key``: append a new key to a key file (mode 0600); it becomes the active key.
    ``serve``: the codec server for the Temporal Web UI."""
    if args.action == "serve":
        from orchestrator.interfaces.http import codec_server

        converter = data_converter(settings)
        if converter.payload_codec is None:  # pragma: no cover - the project's always has one
            raise OrchestratorError("the data converter has no payload codec")
        # Decodes large (compressed) payloads, and encrypted ones when a key is configured.
        # uvicorn runs its own event loop: leave this one first.
        await asyncio.to_thread(
            codec_server.serve,
            settings,
            converter.payload_codec,
            host=args.host or settings.codec_server_host,
            port=args.port or settings.codec_server_port,
        )
        return 0
    path = Path(args.key_file)
    ring = codec.parse_key_ring(files.read_text(path), source=str(path)) if path.exists() else {}
    if args.key_id in ring:
        raise ValidationFailed("flags", [("key_id", f"{args.key_id!r} is already in {path}")])
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as handle:
        handle.write(codec.new_key_line(args.key_id) + "\n")
    print(
        f"added key {args.key_id!r} to {path} ({len(ring) + 1} key(s)); it is the last, so the "
        f"active one unless TEO_CODEC_ACTIVE_KEY says otherwise. Point TEO_CODEC_KEY_FILE at it."
    )
    return 0


async def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    Database(settings.database_url).migrate()
    out.print(f"database at the latest schema: {settings.database_url}")
    return 0


async def cmd_server(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.interfaces.http import codec_server

    if args.action == "stop":
        out.print("dev server stopped" if stop_dev_server() else "no dev server started by us")
        if codec_server.stop_dev_codec():
            out.print("local codec server stopped")
        return 0
    for note in (await codec_server.ensure_dev_stack(settings)).notes:
        out.print(note, highlight=False)
    return 0


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


# --------------------------------------------------------------------------------------------
# Following a run


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
                progress: SignalProgress = await handle.query(SignalExecutionWorkflow.progress)
            except RPCError:
                progress = None  # type: ignore[assignment]
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


# --------------------------------------------------------------------------------------------
# Entry point


def print_report(report: SignalReport) -> None:
    out.print(display.report_table(report))
    out.print("Why each account got what it got:")
    for line in display.report_reasons(report):
        out.print(line, highlight=False, soft_wrap=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="starter.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    submit = commands.add_parser("submit", help="validate and start one signal")
    add_signal_arguments(submit)
    submit.add_argument("--wait", action="store_true", help="show progress, then the report")

    plan = commands.add_parser(
        "plan",
        help="dry run: the plan a live run would make, at this moment's wall clock",
        description="Dry run: the same snapshot, correlation and planning code a live run "
        "uses; no orders. It plans at the wall clock (now); a live run plans at its workflow's "
        "time when its planning step runs, so decisions that depend on the time (trading "
        "hours, stale account data, the legs' due times) can differ from this dry run's.",
    )
    add_signal_arguments(plan)

    status = commands.add_parser("status", help="live status or final report of a signal")
    status.add_argument("signal_id")
    status.add_argument("--follow", action="store_true", help="refresh until the signal ends")
    status.add_argument("--json", action="store_true")

    accounts = commands.add_parser("accounts", help="the account book")
    actions = accounts.add_subparsers(dest="action", required=True)
    load = actions.add_parser(
        "load",
        help="load a YAML/JSON book (all or nothing); accounts already loaded keep their "
        "live state",
        description="Load a book: symbol specs, accounts, returns, all or nothing. Accounts "
        "the ledger already holds keep their live state (balance, equity, peak equity, free "
        "margin, open positions, today's loss and committed risk) and an operator's pause; "
        "the file sets their limits, mandate, symbol map, paper behaviour and status. New "
        "accounts take the file's state.",
    )
    load.add_argument("path")
    load.add_argument(
        "--replace-state",
        action="store_true",
        help="existing accounts take the file's state too (today's committed risk from 0); "
        "needs --reason, recorded in operator_actions; refused while a leg holds a reservation",
    )
    load.add_argument("--reason", help="why the state is replaced (with --replace-state)")
    load.add_argument("--operator", help="who replaces it (default: $TEO_OPERATOR or your login)")
    export = actions.add_parser("export", help="write the stored book as JSON")
    export.add_argument("path")
    listing = actions.add_parser("list", help="list accounts and their state")
    listing.add_argument("--json", action="store_true")

    db = commands.add_parser("db", help="database schema")
    db.add_subparsers(dest="action", required=True).add_parser("upgrade", help="migrate to head")

    pause = commands.add_parser(
        "pause", help="pause an account: later signals deny it, waiting legs stop"
    )
    pause.add_argument("account")
    pause.add_argument("--reason", required=True)
    pause.add_argument("--operator", help="who acts (default: $TEO_OPERATOR or your login)")
    pause.add_argument("--reroute", action="store_true", help="reroute its waiting legs instead")

    resume = commands.add_parser("resume", help="resume a paused account")
    resume.add_argument("account")
    resume.add_argument("--reason", default="resumed")
    resume.add_argument("--operator")

    halt = commands.add_parser("halt", help="kill switch: no new order leaves the system")
    halt.add_argument("--reason", required=True)
    halt.add_argument("--operator")
    halt.add_argument("--cancel-working", action="store_true", help="also cancel working orders")

    unhalt = commands.add_parser("unhalt", help="lift the kill switch")
    unhalt.add_argument("--reason", required=True)
    unhalt.add_argument("--operator")

    cancel = commands.add_parser("cancel", help="cancel one signal")
    cancel.add_argument("signal_id")
    cancel.add_argument("--reason", required=True)
    cancel.add_argument("--operator")

    orders = commands.add_parser(
        "orders", help="the ledger's orders and their fills (read only, no Temporal needed)"
    )
    orders.add_argument("--signal", metavar="SIGNAL_ID", help="only this signal's orders")
    orders.add_argument("--account", metavar="ACCOUNT_ID", help="only this account's orders")
    orders.add_argument("--json", action="store_true", help="a list of orders with their fills")

    listing_signals = commands.add_parser("list", help="signals from Temporal visibility")
    listing_signals.add_argument("--running", action="store_true")
    listing_signals.add_argument("--symbol")
    listing_signals.add_argument("--limit", type=int, default=50)
    listing_signals.add_argument("--json", action="store_true")

    export_histories = commands.add_parser(
        "export", help="write signals' workflow histories (with children) and a manifest"
    )
    export_histories.add_argument("signal_ids", nargs="*", metavar="SIGNAL_ID")
    export_histories.add_argument(
        "--since",
        type=parse_since,
        metavar="DATE",
        help="also every signal started since DATE (2026-11-01 or an ISO time, UTC if no zone)",
    )
    export_histories.add_argument("-o", "--output", required=True, metavar="DIR")

    replay = commands.add_parser(
        "replay", help="replay exported histories against the current code (no server)"
    )
    replay.add_argument(
        "files", nargs="+", metavar="FILE", help="history files (a directory: the *.json under it)"
    )

    codec_keys = commands.add_parser("codec", help="payload encryption keys")
    codec_actions = codec_keys.add_subparsers(dest="action", required=True)
    new_key = codec_actions.add_parser("new-key", help="append a new random key to a key file")
    new_key.add_argument("key_id")
    new_key.add_argument("--key-file", required=True, metavar="FILE")
    serve = codec_actions.add_parser("serve", help="the codec server for the Temporal Web UI")
    serve.add_argument("--host", help="default TEO_CODEC_SERVER_HOST (127.0.0.1)")
    serve.add_argument("--port", type=int, help="default TEO_CODEC_SERVER_PORT (8091)")

    archiving = commands.add_parser(
        "archive", help="archive closed signals' histories (verified) before retention ends"
    )
    archive_actions = archiving.add_subparsers(dest="action", required=True)
    schedule = archive_actions.add_parser(
        "schedule", help="create or update the Temporal Schedule that archives"
    )
    schedule.add_argument("--every", type=int, metavar="SECONDS", help="TEO_ARCHIVE_EVERY_S")
    archive_actions.add_parser("now", help="archive what is closed now, in this process")

    audit_signal = commands.add_parser(
        "audit", help="a signal's decision trail, replayed and re-derived from its histories"
    )
    audit_signal.add_argument("signal_id")
    audit_signal.add_argument(
        "--from", dest="source", metavar="DIR", help="exported or archived history files"
    )
    audit_signal.add_argument("--json", action="store_true", help="the audit as a document")

    server = commands.add_parser("server", help="the embedded Temporal dev server")
    server_actions = server.add_subparsers(dest="action", required=True)
    server_actions.add_parser("start")
    server_actions.add_parser("stop")

    demo = commands.add_parser("demo", help="run the demo end to end")
    demo.add_argument("--delay-min", type=float, default=2.0, help="seconds (default 2)")
    demo.add_argument("--delay-max", type=float, default=12.0, help="seconds (default 12)")
    demo.add_argument("--gap", type=float, default=3.0, help="correlated gap, seconds")
    demo.add_argument("--database-url", help="default: .run/demo.db")
    return parser


COMMANDS = {
    "submit": cmd_submit,
    "plan": cmd_plan,
    "status": cmd_status,
    "pause": cmd_control,
    "resume": cmd_control,
    "halt": cmd_control,
    "unhalt": cmd_control,
    "cancel": cmd_control,
    "list": cmd_list,
    "orders": cmd_orders,
    "accounts": cmd_accounts,
    "db": cmd_db,
    "export": cmd_export,
    "replay": cmd_replay,
    "audit": cmd_audit,
    "archive": cmd_archive,
    "codec": cmd_codec,
    "server": cmd_server,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValueError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(COMMANDS[args.command](args, settings))
    except ValidationFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OrchestratorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except RPCError as exc:
        print(f"error: Temporal at {settings.temporal_address}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE


if __name__ == "__main__":
    # Leave without interpreter teardown, which the Temporal client's threads can abort
    # (orchestrator/interfaces/process.py); main() has finished and cleaned up by then.
    run_and_exit(main)

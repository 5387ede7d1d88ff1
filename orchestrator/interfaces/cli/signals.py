"""Signals: submit one, dry-run its plan, watch its status, list them, read the ledger's
orders; a signal comes from a JSON file or from flags."""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowExecutionStatus, WorkflowHandle

from orchestrator.adapters import files
from orchestrator.adapters.db import repository
from orchestrator.adapters.temporal import connect, is_workflow_type
from orchestrator.config import Settings
from orchestrator.domain import ids, planning
from orchestrator.domain import search_attributes as sa
from orchestrator.domain.contracts.payloads import SnapshotRequest
from orchestrator.domain.errors import ValidationFailed
from orchestrator.domain.report import SignalReport
from orchestrator.domain.signal import Signal
from orchestrator.domain.values import SYMBOL_PATTERN
from orchestrator.interfaces import display
from orchestrator.interfaces.cli.common import current_database, decimal_text, ledger_filters, out
from orchestrator.interfaces.cli.follow import follow, print_report
from orchestrator.services.submit import parse_signal, submit_signal
from workflows.signal import SignalExecutionWorkflow

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


def parse_signal_symbol(symbol: str) -> str:
    """A symbol safe to put in a visibility query (the signal's own pattern)."""
    if not re.fullmatch(SYMBOL_PATTERN, symbol):
        raise ValidationFailed("flags", [("symbol", f"not a symbol: {symbol!r}")])
    return symbol


# --------------------------------------------------------------------------------------------
# Commands


async def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    signal = read_signal(args)
    with current_database(settings) as db:
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
        print_report(report, settings)
    return 0


async def cmd_plan(args: argparse.Namespace, settings: Settings) -> int:
    """Dry run: the same snapshot, correlation and planning code a live run uses; no orders."""
    signal = read_signal(args)
    from worker import build_activities

    with current_database(settings) as db:
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
    handle: WorkflowHandle[SignalExecutionWorkflow, SignalReport] = client.get_workflow_handle_for(
        SignalExecutionWorkflow.run, ids.signal_workflow_id(args.signal_id)
    )
    description = await handle.describe()
    if description.status == WorkflowExecutionStatus.COMPLETED:
        report = await handle.result()
        print(report.model_dump_json(indent=2)) if args.json else print_report(report, settings)
        return 0
    if description.status != WorkflowExecutionStatus.RUNNING:
        status_name = description.status.name if description.status else "UNKNOWN"
        out.print(f"{handle.id} ended {status_name}")
        return 1
    if args.follow:
        report = await follow(client, handle, quiet=args.json)
        print(report.model_dump_json(indent=2)) if args.json else print_report(report, settings)
        return 0
    progress = await handle.query(SignalExecutionWorkflow.progress)
    print(progress.model_dump_json(indent=2)) if args.json else out.print(
        display.progress_table(progress)
    )
    return 0


async def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    client = await connect(settings)
    clauses = [is_workflow_type(SignalExecutionWorkflow)]
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
    out.print(display.signals_table(rows, query))
    return 0


async def cmd_orders(args: argparse.Namespace, settings: Settings) -> int:
    """The ledger's orders and their fills, of one signal, one account or all; read only."""
    scope = ledger_filters(args)
    with current_database(settings) as db, db.transaction() as session:
        orders = repository.list_orders(session, signal_id=args.signal, account_id=args.account)
    if args.json:
        print(json.dumps([order_document(order) for order in orders], indent=2))
        return 0
    out.print(display.orders_table(orders, scope))
    return 0


def order_document(order: repository.LedgerOrder) -> dict[str, Any]:
    """An order and its fills as JSON: decimals as strings, times in ISO 8601 (UTC)."""
    text = decimal_text
    return {
        "client_order_id": order.client_order_id,
        "signal_id": order.signal_id,
        "account_id": order.account_id,
        "sequence": order.business_sequence,
        "purpose": order.purpose,
        "broker": order.broker,
        "symbol": order.symbol,
        "side": order.side,
        "order_type": order.order_type,
        "quantity": text(order.quantity),
        "limit_price": text(order.limit_price),
        "stop_price": text(order.stop_price),
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


# --------------------------------------------------------------------------------------------
# Parser


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    submit = commands.add_parser("submit", help="validate and start one signal")
    add_signal_arguments(submit)
    submit.add_argument("--wait", action="store_true", help="show progress, then the report")
    submit.set_defaults(run=cmd_submit)

    plan = commands.add_parser(
        "plan",
        help="dry run: the plan a live run would make, at this moment's wall clock",
        description="Dry run: the same snapshot, correlation and planning code a live run "
        "uses; no orders. It plans at the wall clock (now); a live run plans at its workflow's "
        "time when its planning step runs, so decisions that depend on the time (trading "
        "hours, stale account data, the legs' due times) can differ from this dry run's.",
    )
    add_signal_arguments(plan)
    plan.set_defaults(run=cmd_plan)

    status = commands.add_parser("status", help="live status or final report of a signal")
    status.add_argument("signal_id")
    status.add_argument("--follow", action="store_true", help="refresh until the signal ends")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=cmd_status)

    orders = commands.add_parser(
        "orders", help="the ledger's orders and their fills (read only, no Temporal needed)"
    )
    orders.add_argument("--signal", metavar="SIGNAL_ID", help="only this signal's orders")
    orders.add_argument("--account", metavar="ACCOUNT_ID", help="only this account's orders")
    orders.add_argument("--json", action="store_true", help="a list of orders with their fills")
    orders.set_defaults(run=cmd_orders)

    listing = commands.add_parser("list", help="signals from Temporal visibility")
    listing.add_argument("--running", action="store_true")
    listing.add_argument("--symbol")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_list)

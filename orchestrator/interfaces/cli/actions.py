"""Actions on positions: ``modify`` a signal's stop or take-profit, ``close`` all or a share of
its positions, ``flatten`` what is open (a symbol, accounts, or the whole book). Each is a signal
of its own (``signal-{id}``); from flags or a JSON file."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.adapters import files
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.temporal import connect
from orchestrator.config import Settings
from orchestrator.domain.actions import ActionKind, ActionReport, ActionStatus, TradeAction
from orchestrator.domain.errors import ValidationFailed
from orchestrator.interfaces import display
from orchestrator.interfaces.cli.common import current_database, default_operator, out
from orchestrator.services import operators
from orchestrator.services.actions import parse_action, submit_action


def read_action(args: argparse.Namespace, kind: ActionKind) -> TradeAction:
    if args.file is not None:
        path = Path(args.file)
        action = parse_action(files.read_text(path), source=str(path))
        if action.action is not kind:
            raise ValidationFailed(
                str(path), [("action", f"is {action.action}, this command is {kind}")]
            )
        return action
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    target = getattr(args, "signal_id", None)
    fields: dict[str, Any] = {
        "action_id": args.id or f"{kind.lower()}-{target or 'book'}-{stamp}",
        "action": kind,
        "signal_id": target,
        "accounts": args.accounts.split(",") if args.accounts else None,
        "stop": getattr(args, "stop", None),
        "take_profit": getattr(args, "take_profit", None),
        "fraction": getattr(args, "fraction", None),
        "symbol": getattr(args, "symbol", None),
        "note": getattr(args, "note", None),
    }
    return parse_action({k: v for k, v in fields.items() if v is not None}, source="flags")


async def run_action(
    args: argparse.Namespace,
    settings: Settings,
    action: TradeAction,
    started: Callable[[Database, str], None] | None = None,
) -> int:
    """Start the action (``started``: told its workflow id once it runs), then, with
    ``--wait``, show what it did."""
    with current_database(settings) as db:
        client = await connect(settings)
        handle = await submit_action(client, db, settings, action)
        if started is not None:
            started(db, handle.id)
    link = settings.ui_link(handle.id)
    if not args.wait:
        if args.json:
            print(json.dumps({"workflow_id": handle.id, "ui": link}))
        else:
            out.print(f"started [bold]{handle.id}[/]  {link}")
        return 0
    if not args.json:
        out.print(f"started [bold]{handle.id}[/]  {link}")
    report: ActionReport = await handle.result()
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        out.print(display.action_table(report))
    return 0 if report.status is ActionStatus.COMPLETED else 1


async def cmd_modify(args: argparse.Namespace, settings: Settings) -> int:
    return await run_action(args, settings, read_action(args, ActionKind.MODIFY))


async def cmd_close(args: argparse.Namespace, settings: Settings) -> int:
    return await run_action(args, settings, read_action(args, ActionKind.CLOSE))


async def cmd_flatten(args: argparse.Namespace, settings: Settings) -> int:
    """Reduce-only first (the accounts named, or every account; not for a flatten of one
    symbol), so nothing new opens behind the close; then every open position closed."""
    args.wait = True
    args.accounts = ",".join(args.account) if args.account else None
    operator = args.operator or default_operator()
    # Who and why, as every operator action: also for a flatten of one symbol, which sets no
    # reduce-only (whose own check would refuse a blank reason).
    operators.require_operator_and_reason(operator, args.reason, "flatten")
    action = read_action(args, ActionKind.FLATTEN)
    action = action.model_copy(update={"note": f"flatten by {operator}: {args.reason}"})
    if action.symbol is None:
        with current_database(settings) as db:
            reached = operators.reduce_only(
                db, action.accounts, operator=operator, reason=f"flatten: {args.reason}"
            )
        if not args.json:
            out.print(f"reduce-only: {len(reached)} account(s)")

    def record(db: Database, workflow_id: str) -> None:
        operators.record_flatten(
            db,
            symbol=action.symbol,
            accounts=action.accounts,
            operator=operator,
            reason=args.reason,
            workflow_id=workflow_id,
        )

    return await run_action(args, settings, action, record)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--id",
        help="the action's own id (default: made from the time); the same id twice acts once",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    modify = commands.add_parser(
        "modify", help="a new stop and/or take-profit for a signal's open positions"
    )
    modify.add_argument("signal_id", nargs="?", help="the signal whose positions to modify")
    modify.add_argument("--file", help="the action as JSON (instead of the flags)")
    modify.add_argument("--stop", help="the new stop price")
    modify.add_argument("--take-profit", help="the new take-profit price")
    modify.add_argument("--accounts", help="comma-separated account ids (default: all)")
    modify.add_argument("--wait", action="store_true", help="wait and show what each got")
    _common(modify)
    modify.set_defaults(run=cmd_modify)

    close = commands.add_parser("close", help="close all or a share of a signal's positions")
    close.add_argument("signal_id", nargs="?", help="the signal whose positions to close")
    close.add_argument("--file", help="the action as JSON (instead of the flags)")
    close.add_argument(
        "--fraction", help="the share of each position, 0 < f <= 1 (default 1: all of it)"
    )
    close.add_argument("--accounts", help="comma-separated account ids (default: all)")
    close.add_argument("--wait", action="store_true", help="wait and show what each got")
    _common(close)
    close.set_defaults(run=cmd_close)

    flatten = commands.add_parser(
        "flatten", help="close every open position (of a symbol, of accounts, or the book)"
    )
    flatten.add_argument("--reason", required=True, help="why (recorded)")
    flatten.add_argument("--operator", help="who (default: TEO_OPERATOR or the user)")
    flatten.add_argument(
        "--account", action="append", help="only this account's positions (repeatable)"
    )
    flatten.add_argument("--symbol", help="only positions in this symbol")
    flatten.set_defaults(file=None)
    _common(flatten)
    flatten.set_defaults(run=cmd_flatten)

"""Reconciliation: the mismatches the account sync found between the brokers' positions and
working orders and the ledger's, a sync on demand, and an operator's acceptance of the broker's
view."""

from __future__ import annotations

import argparse
import json
from decimal import Decimal

from rich.table import Table

from orchestrator.adapters.db import repository
from orchestrator.adapters.db.schema import MismatchRow, OrderMismatchRow
from orchestrator.adapters.temporal import connect
from orchestrator.config import Settings
from orchestrator.domain.errors import ValidationFailed
from orchestrator.domain.values import plain
from orchestrator.interfaces.cli.common import current_database, default_operator, out
from orchestrator.services import sync


def _json(row: MismatchRow) -> dict[str, object]:
    return {
        "account_id": row.account_id,
        "broker": row.broker,
        "broker_symbol": row.broker_symbol,
        "kind": row.kind,
        "broker_quantity": None if row.broker_quantity is None else plain(row.broker_quantity),
        "broker_average_price": (
            None if row.broker_average_price is None else plain(row.broker_average_price)
        ),
        "ledger_quantity": plain(row.ledger_quantity),
        "detected_at": row.detected_at.isoformat(),
        "seen_at": row.seen_at.isoformat(),
    }


def _order_json(row: OrderMismatchRow) -> dict[str, object]:
    def amount(value: Decimal | None) -> str | None:
        return None if value is None else plain(value)

    return {
        "account_id": row.account_id,
        "broker": row.broker,
        "client_order_id": row.client_order_id,
        "broker_symbol": row.broker_symbol,
        "side": row.side,
        "kind": row.kind,
        "broker_quantity": amount(row.broker_quantity),
        "broker_filled": amount(row.broker_filled),
        "ledger_quantity": amount(row.ledger_quantity),
        "ledger_status": row.ledger_status,
        "detected_at": row.detected_at.isoformat(),
        "seen_at": row.seen_at.isoformat(),
    }


def order_mismatch_table(rows: list[OrderMismatchRow]) -> Table:
    """Order quantities in lots; "not reported": the broker answered without this order
    (unknown, never "cancelled"); "no answer": the broker did not answer."""
    table = Table(title=f"{len(rows)} order mismatch(es)  (lots)")
    for column in ("account", "broker", "order", "symbol", "side", "kind", "broker", "ledger"):
        table.add_column(column)
    table.add_column("since")
    for r in rows:
        if r.kind == "UNKNOWN":
            theirs = "no answer"
        else:
            theirs = "not reported" if r.broker_quantity is None else plain(r.broker_quantity)
        ours = plain(r.ledger_quantity) if r.ledger_quantity is not None else "none"
        table.add_row(
            r.account_id,
            r.broker,
            r.client_order_id,
            r.broker_symbol or "?",
            r.side or "?",
            r.kind,
            theirs,
            f"ended {r.ledger_status}" if r.ledger_status else ours,
            f"{r.detected_at:%Y-%m-%d %H:%M:%S}",
        )
    return table


def mismatch_table(rows: list[MismatchRow]) -> Table:
    """Quantities are signed net lots (positive long); "no answer": unknown, never flat."""
    table = Table(title=f"{len(rows)} mismatch(es)  (net lots, + long)")
    for column in ("account", "broker", "symbol", "kind", "broker", "ledger", "since"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r.account_id,
            r.broker,
            r.broker_symbol,
            r.kind,
            "no answer" if r.broker_quantity is None else plain(r.broker_quantity),
            plain(r.ledger_quantity),
            f"{r.detected_at:%Y-%m-%d %H:%M:%S}",
        )
    return table


async def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    if args.accept:
        return await _accept(args, settings)
    with current_database(settings) as db:
        if args.sync:
            client = await connect(settings)
            for broker in [args.broker] if args.broker else sync.brokers(db):
                result = await sync.sync_now(client, settings, broker)
                out.print(
                    f"synced {broker}: {len(result.reported)} reported, "
                    f"{len(result.derived)} derived, {len(result.unread)} unread, "
                    f"{result.mismatch_count} position and {result.order_mismatch_count} "
                    "order mismatch(es)",
                    highlight=False,
                )
        rows = sync.mismatches(db, args.account)
        orders = sync.order_mismatches(db, args.account)
    if args.json:
        # One list: positions' mismatches, then orders' (those carry a client_order_id).
        print(json.dumps([_json(r) for r in rows] + [_order_json(r) for r in orders], indent=2))
    else:
        out.print(mismatch_table(rows))
        if orders:
            out.print(order_mismatch_table(orders))
    return 0


async def _accept(args: argparse.Namespace, settings: Settings) -> int:
    if args.account is None:
        raise ValidationFailed("reconcile", [("account", "--accept needs --account")])
    with current_database(settings) as db:
        accepted = await sync.accept_and_tell(
            lambda: connect(settings),
            db,
            args.account,
            operator=args.operator or default_operator(),
            reason=args.reason or "",
        )
    if args.json:
        print(
            json.dumps(
                {
                    "account_id": args.account,
                    "adopted": [
                        {
                            "broker_symbol": a.broker_symbol,
                            "kind": a.kind,
                            "broker_quantity": plain(a.broker_quantity),
                            "ledger_quantity": plain(a.ledger_quantity),
                            "opened": a.opened,
                            "closed": a.closed,
                            "resized": a.resized,
                            "closed_by_keepers": [k.signal_id for k in a.to_keepers],
                        }
                        for a in accepted.adopted
                    ],
                    "left": [_json(r) for r in accepted.left],
                    "orders_adopted": [
                        {"client_order_id": o.client_order_id, "kind": o.kind, "done": o.done}
                        for o in accepted.adopted_orders
                    ],
                    "orders_left": [
                        {**_order_json(r), "why": repository.left_because(r)}
                        for r in accepted.left_orders
                    ],
                    "reduce_only_lifted": accepted.released,
                },
                indent=2,
            )
        )
        return 0
    out.print(f"{args.account}: adopted the broker's view of {len(accepted.adopted)} symbol(s)")
    for a in accepted.adopted:
        what = [f"opened {a.opened}"] if a.opened else []
        what += [f"closed {', '.join(a.closed)}"] if a.closed else []
        what += [f"resized {', '.join(a.resized)}"] if a.resized else []
        told = ", ".join(k.signal_id for k in a.to_keepers)
        what += [f"closed at the broker, told their keepers: {told}"] if told else []
        out.print(
            f"  {a.broker_symbol} {a.kind}: ledger {plain(a.ledger_quantity)} -> "
            f"{plain(a.broker_quantity)} "
            f"({'; '.join(what) or 'nothing to change'})",
            highlight=False,
        )
    for r in accepted.left:
        out.print(
            f"  {r.broker_symbol}: left standing (the broker did not answer: unknown)",
            highlight=False,
        )
    if accepted.adopted_orders or accepted.left_orders:
        out.print(
            f"{args.account}: adopted the broker's view of {len(accepted.adopted_orders)} order(s)"
        )
    for o in accepted.adopted_orders:
        out.print(f"  order {o.client_order_id} {o.kind}: {o.done}", highlight=False)
    for o_row in accepted.left_orders:
        out.print(
            f"  order {o_row.client_order_id} {o_row.kind}: left standing "
            f"({repository.left_because(o_row)})",
            highlight=False,
        )
    if accepted.released:
        out.print("reduce-only lifted (reconciliation held it)")
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "reconcile",
        help="show the mismatches between brokers' positions and orders and the ledger; "
        "accept one account's broker view",
        description="Show the mismatches the account sync found in positions (signed net "
        "lots, + long; 'no answer': the broker did not report, unknown, never flat) and in "
        "working orders (an order the broker works that the ledger does not, one the ledger "
        "has working that the broker does not report, quantities that differ). With --accept, "
        "adopt the broker's view of --account into the ledger (recorded as your operator "
        "action; docs/operating.md says what it does with each kind of order mismatch) and "
        "lift the reduce-only reconciliation put on it.",
    )
    parser.set_defaults(run=cmd_reconcile)
    parser.add_argument("--account", help="only this account")
    parser.add_argument(
        "--sync",
        action="store_true",
        help="run a sync first (every broker, or --broker), through the worker",
    )
    parser.add_argument("--broker", help="with --sync: only this broker")
    parser.add_argument(
        "--accept", action="store_true", help="adopt the broker's view (needs --account)"
    )
    parser.add_argument("--reason", help="why (with --accept; recorded)")
    parser.add_argument("--operator", help="who (default: $TEO_OPERATOR or your login)")
    parser.add_argument("--json", action="store_true")

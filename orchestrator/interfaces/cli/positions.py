"""The positions the signals opened, as their keepers recorded them in the ledger: open
quantity, stop and take-profit with their orders, status, realized P&L and every closing fill.
Read only; no Temporal needed."""

from __future__ import annotations

import argparse
import json
from typing import Any

from orchestrator.adapters.db import repository
from orchestrator.config import Settings
from orchestrator.interfaces import display
from orchestrator.interfaces.cli.common import current_database, decimal_text, ledger_filters, out


async def cmd_positions(args: argparse.Namespace, settings: Settings) -> int:
    scope = ledger_filters(args)
    with current_database(settings) as db, db.transaction() as session:
        positions = repository.list_positions(
            session, signal_id=args.signal, account_id=args.account, open_only=args.open
        )
    if args.json:
        print(json.dumps([position_document(p) for p in positions], indent=2))
        return 0
    out.print(display.positions_table(positions, f"{'open ' if args.open else ''}{scope}"))
    return 0


def position_document(position: repository.PositionView) -> dict[str, Any]:
    """A position and its closing fills as JSON: decimals as strings, times in ISO 8601."""
    text = decimal_text
    return {
        "signal_id": position.signal_id,
        "account_id": position.account_id,
        "broker": position.broker,
        "symbol": position.broker_symbol,
        "side": position.side,
        "status": position.status,
        "entry_quantity": text(position.entry_quantity),
        "average_entry": text(position.average_entry),
        "open_quantity": text(position.open_quantity),
        "stop": text(position.stop),
        "take_profit": text(position.take_profit),
        "stop_client_order_id": position.stop_client_order_id,
        "take_profit_client_order_id": position.take_profit_client_order_id,
        "realized_pnl": text(position.realized_pnl),
        "note": position.note,
        "keeper_workflow_id": position.keeper_workflow_id,
        "opened_at": position.opened_at.isoformat(),
        "closed_at": position.closed_at.isoformat() if position.closed_at else None,
        "closes": [
            {
                "execution_id": fill.execution_id,
                "client_order_id": fill.client_order_id,
                "cause": fill.cause,
                "quantity": text(fill.quantity),
                "price": text(fill.price),
                "pnl": text(fill.pnl),
                "slippage": text(position.slippage.get(fill.execution_id)),
                "filled_at": fill.filled_at.isoformat(),
            }
            for fill in position.closes
        ],
    }


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    positions = commands.add_parser(
        "positions",
        help="the positions signals opened: stop, take-profit, status, realized P&L (read only)",
    )
    positions.add_argument("--signal", metavar="SIGNAL_ID", help="only this signal's positions")
    positions.add_argument("--account", metavar="ACCOUNT_ID", help="only this account's")
    positions.add_argument("--open", action="store_true", help="only positions not closed")
    positions.add_argument("--json", action="store_true", help="a list of positions")
    positions.set_defaults(run=cmd_positions)

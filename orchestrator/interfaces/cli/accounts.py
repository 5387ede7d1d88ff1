"""The account book: load a YAML/JSON book into the ledger, list the accounts, export them."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.adapters.book_file import read_book
from orchestrator.adapters.db import repository
from orchestrator.config import Settings
from orchestrator.domain.errors import ValidationFailed
from orchestrator.interfaces import display
from orchestrator.interfaces.cli.common import current_database, default_operator, out


async def cmd_accounts(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "load":
        return load_book(args, settings)
    if args.action == "export":
        with current_database(settings) as db, db.transaction() as session:
            book = repository.export_book(session)
        data = book.model_dump(mode="json", exclude={"returns"})
        Path(args.path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        out.print(f"exported {len(book.accounts)} accounts to {args.path}")
        return 0
    with current_database(settings) as db, db.transaction() as session:
        rows = repository.account_rows(session)
    now = datetime.now(UTC)
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
                        "state_source": s.source,
                        "state_as_of": s.as_of.isoformat(),
                        "state_age_s": int((now - s.as_of).total_seconds()),
                        "reduce_only": a.reduce_only,
                        "reduce_only_reason": a.reduce_only_reason,
                        "reduce_only_by": a.reduce_only_by,
                        "reduce_only_at": (
                            a.reduce_only_at.isoformat() if a.reduce_only_at else None
                        ),
                    }
                    for a, s in rows
                ],
                indent=2,
            )
        )
        return 0
    out.print(display.accounts_table(rows, now))
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
    with current_database(settings) as db, db.transaction() as session:
        loaded = repository.save_book(session, book, datetime.now(UTC), replace_state=replacement)
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


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    accounts = commands.add_parser("accounts", help="the account book")
    accounts.set_defaults(run=cmd_accounts)
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

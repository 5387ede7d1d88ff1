"""Operator controls: pause and resume an account, reduce-only and allow entries again, halt and
unhalt trading, cancel a signal."""

from __future__ import annotations

import argparse
import sys

from temporalio.client import WorkflowUpdateFailedError

from orchestrator.adapters.temporal import connect
from orchestrator.config import Settings
from orchestrator.domain import ids
from orchestrator.domain.errors import ValidationFailed
from orchestrator.interfaces.cli.common import current_database, default_operator, out
from orchestrator.services import operators


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
    wait = int(operators.BROADCAST_WAIT.total_seconds())
    for workflow_id in outcome.unanswered:
        out.print(
            f"  [yellow]no answer within {wait} s[/] {workflow_id} (no worker on its task "
            "queue?): not waited for",
            highlight=False,
        )
    return 1 if outcome.refused else 0


async def cmd_pause(args: argparse.Namespace, settings: Settings) -> int:
    with current_database(settings) as db:
        client = await connect(settings)
        outcome = await operators.pause_account(
            client,
            db,
            args.account,
            operator=args.operator or default_operator(),
            reason=args.reason,
            reroute=args.reroute,
        )
    return print_outcome(f"paused {args.account}", outcome)


async def cmd_resume(args: argparse.Namespace, settings: Settings) -> int:
    with current_database(settings) as db:
        client = await connect(settings)
        outcome = await operators.resume_account(
            client,
            db,
            args.account,
            operator=args.operator or default_operator(),
            reason=args.reason,
        )
    return print_outcome(f"resumed {args.account}", outcome)


def _accounts_or_all(args: argparse.Namespace) -> list[str] | None:
    if args.all and args.accounts:
        raise ValidationFailed("flags", [("account", "name accounts or give --all, not both")])
    if not args.all and not args.accounts:
        raise ValidationFailed("flags", [("account", "name at least one account, or --all")])
    return None if args.all else list(dict.fromkeys(args.accounts))


def _print_accounts(what: str, accounts: list[str]) -> int:
    out.print(f"{what}: {len(accounts)} account(s)", highlight=False)
    for account_id in accounts:
        out.print(f"  {account_id}", highlight=False)
    return 0


async def cmd_reduce_only(args: argparse.Namespace, settings: Settings) -> int:
    accounts = _accounts_or_all(args)
    with current_database(settings) as db:
        changed = operators.reduce_only(
            db, accounts, operator=args.operator or default_operator(), reason=args.reason
        )
    return _print_accounts("reduce-only (no new risk; exits still go out)", changed)


async def cmd_allow_entries(args: argparse.Namespace, settings: Settings) -> int:
    accounts = _accounts_or_all(args)
    with current_database(settings) as db:
        changed = operators.allow_entries(
            db, accounts, operator=args.operator or default_operator(), reason=args.reason
        )
    return _print_accounts("entries allowed again", changed)


async def cmd_halt(args: argparse.Namespace, settings: Settings) -> int:
    with current_database(settings) as db:
        client = await connect(settings)
        outcome = await operators.halt(
            client,
            db,
            operator=args.operator or default_operator(),
            reason=args.reason,
            cancel_working=args.cancel_working,
        )
    return print_outcome("HALTED: no new order leaves until `unhalt`", outcome, counted=True)


async def cmd_unhalt(args: argparse.Namespace, settings: Settings) -> int:
    with current_database(settings) as db:
        client = await connect(settings)
        outcome = await operators.unhalt(
            client, db, operator=args.operator or default_operator(), reason=args.reason
        )
    return print_outcome("trading resumed", outcome)


async def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    with current_database(settings) as db:
        client = await connect(settings)
        try:
            outcome = await operators.cancel_signal(
                client,
                db,
                args.signal_id,
                operator=args.operator or default_operator(),
                reason=args.reason,
            )
        except WorkflowUpdateFailedError as err:
            print(
                f"error: cancel refused by {ids.signal_workflow_id(args.signal_id)}: {err.cause}",
                file=sys.stderr,
            )
            return 1
    return print_outcome(f"cancelled {args.signal_id}", outcome, counted=True)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pause = commands.add_parser(
        "pause", help="pause an account: later signals deny it, waiting legs stop"
    )
    pause.add_argument("account")
    pause.add_argument("--reason", required=True)
    pause.add_argument("--operator", help="who acts (default: $TEO_OPERATOR or your login)")
    pause.add_argument("--reroute", action="store_true", help="reroute its waiting legs instead")
    pause.set_defaults(run=cmd_pause)

    resume = commands.add_parser("resume", help="resume a paused account")
    resume.add_argument("account")
    resume.add_argument("--reason", default="resumed")
    resume.add_argument("--operator")
    resume.set_defaults(run=cmd_resume)

    for name, run, summary in (
        (
            "reduce-only",
            cmd_reduce_only,
            "no new risk for accounts: entries denied REDUCE_ONLY, exits and stops still go",
        ),
        ("allow-entries", cmd_allow_entries, "take accounts out of reduce-only"),
    ):
        command = commands.add_parser(name, help=summary)
        command.add_argument("accounts", nargs="*", metavar="ACCOUNT")
        command.add_argument("--all", action="store_true", help="every account in the book")
        command.add_argument("--reason", required=True)
        command.add_argument("--operator", help="who acts (default: $TEO_OPERATOR or your login)")
        command.set_defaults(run=run)

    halt = commands.add_parser("halt", help="kill switch: no new order leaves the system")
    halt.add_argument("--reason", required=True)
    halt.add_argument("--operator")
    halt.add_argument("--cancel-working", action="store_true", help="also cancel working orders")
    halt.set_defaults(run=cmd_halt)

    unhalt = commands.add_parser("unhalt", help="lift the kill switch")
    unhalt.add_argument("--reason", required=True)
    unhalt.add_argument("--operator")
    unhalt.set_defaults(run=cmd_unhalt)

    cancel = commands.add_parser("cancel", help="cancel one signal")
    cancel.add_argument("signal_id")
    cancel.add_argument("--reason", required=True)
    cancel.add_argument("--operator")
    cancel.set_defaults(run=cmd_cancel)

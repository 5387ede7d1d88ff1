"""The starter's command line: the parser, assembled from each command module's
``add_parser``, and :func:`main`, which runs one command and maps its errors to exit codes.

Exit codes: 0 success, 2 invalid input (nothing started or written), 1 any other refusal,
130 interrupted, 141 (:data:`~orchestrator.interfaces.process.BROKEN_PIPE`) when standard
output's reader has gone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from temporalio.service import RPCError

from orchestrator.config import Settings, get_settings
from orchestrator.domain.errors import OrchestratorError, ValidationFailed
from orchestrator.interfaces.cli import (
    accounts,
    actions,
    controls,
    demo,
    history,
    positions,
    reconcile,
    signals,
    system,
)
from orchestrator.interfaces.process import BROKEN_PIPE

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]
"""A command: its parsed arguments and the settings in, its exit code out. Each subcommand's
parser names its own as the default ``run``."""

__all__ = ["build_parser", "main"]


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """``description``: the usage summary ``--help`` shows (starter.py passes its docstring)."""
    parser = argparse.ArgumentParser(
        prog="starter.py", description=description, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for module in (
        signals,
        actions,
        positions,
        accounts,
        reconcile,
        controls,
        history,
        system,
        demo,
    ):
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None, *, description: str | None = None) -> int:
    """Parse ``argv``, read the settings, run the command; its exit code."""
    args = build_parser(description).parse_args(argv)
    try:
        settings = get_settings()
    except ValueError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 2
    command: Command = args.run
    try:
        return asyncio.run(command(args, settings))
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

"""Command line for traders and operators: submit signals, dry-run plans, watch status, see
orders and positions, manage the account book, run the demo.

    python starter.py db upgrade        # the one way to migrate: first, and after every upgrade
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
    python starter.py positions [--signal s-42] [--account alpha-01] [--open] [--json]
    python starter.py reconcile [--account alpha-01] [--sync] [--json]
    python starter.py reconcile --account alpha-01 --accept --reason "opened by hand"
    python starter.py export s-42 [s-43 ...] -o audit/
    python starter.py replay audit/*.json
    python starter.py demo

Exit codes: 0 success, 2 invalid input (nothing started or written), 1 any other refusal
(a database whose schema is behind the code's among them: no command but `db upgrade` migrates).
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.interfaces import cli
from orchestrator.interfaces.process import run_and_exit

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command (``orchestrator/interfaces/cli/``; this docstring is its ``--help``)
    and return its exit code."""
    return cli.main(argv, description=__doc__)


if __name__ == "__main__":
    # Leave without interpreter teardown, which the Temporal client's threads can abort
    # (orchestrator/interfaces/process.py); main() has finished and cleaned up by then.
    run_and_exit(main)

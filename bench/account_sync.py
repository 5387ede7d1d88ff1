"""The account sync of one broker's accounts on the paper broker: the time ``sync_accounts``
takes for N accounts (issue 21: 5,000). A benchmark, not a test: it prints, asserts nothing.

    python -m bench.account_sync [--accounts 5000] [--database-url sqlite|postgres|URL]
                                 [--positions-every 10] [--repeats 3]

The activity's own body runs in this process, as the worker's thread pool would run it (no
Temporal in the measurement): per account one broker reading (balance, equity, free margin)
and one of its positions, one unit of work writing the state, the day and reconciliation.
Every ``--positions-every``-th account first gets a position at the paper broker that the
ledger does not know (a mismatch to store). Three runs are timed: the first sync (mismatches
found; the paper broker opens its accounts), the second (the same found again: they act, the
accounts go reduce-only) and the third (nothing new: the steady state of every later sync). Each
repeat starts from a fresh database (SQLite: a new file; a server database: the book is loaded
anew); the medians of the repeats are printed last.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from activities.sync import AccountSyncActivities
from bench.book import BROKER, SYMBOL, bench_book
from orchestrator.adapters.brokers.base import OrderTicket
from orchestrator.adapters.brokers.paper import PaperBroker
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.config import Settings
from orchestrator.domain.contracts.sync import SyncRequest
from orchestrator.domain.values import OrderType, Side

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


class NoClient:
    """The sync's reading activity needs no Temporal client (only a FLATTEN does)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=5000)
    parser.add_argument("--database-url", default="sqlite")
    parser.add_argument("--positions-every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    times: list[tuple[float, ...]] = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            url = {
                "sqlite": f"sqlite:///{Path(tmp) / 'bench.db'}",
                "postgres": POSTGRES,
            }.get(args.database_url, args.database_url)
            db = Database(url)
            db.migrate()
            try:
                times.append(run(db, args.accounts, args.positions_every))
            finally:
                db.dispose()
    if args.repeats > 1:
        for index, label in enumerate(LABELS):
            took = statistics.median(t[index] for t in times)
            print(
                f"median of {args.repeats}, {label}: {took:.2f} s "
                f"({took / args.accounts * 1000:.2f} ms per account)"
            )


LABELS = ("first sync", "second sync", "third sync")


def run(db: Database, accounts: int, positions_every: int) -> tuple[float, ...]:
    ids = [f"sync-{n:05d}" for n in range(accounts)]
    with db.transaction() as session:
        repository.save_book(session, bench_book(ids), datetime.now(UTC))
    paper = PaperBroker(db)
    paper.market.set_quote(SYMBOL, Decimal("1.08500"), Decimal("1.08502"))
    outside = ids[::positions_every] if positions_every > 0 else []
    for account_id in outside:
        paper.submit(
            OrderTicket(
                client_order_id=f"by-hand-{account_id}",
                account_id=account_id,
                symbol=SYMBOL,
                side=Side.BUY,
                order_type=OrderType.MARKET,
                quantity=Decimal(1),
                limit_price=None,
                reference_price=Decimal("1.08500"),
            )
        )
    activities = AccountSyncActivities(db, paper, NoClient(), Settings())  # type: ignore[arg-type]
    print(
        f"{accounts} accounts at broker {BROKER} ({db.display_url}), {len(outside)} with a "
        "position the ledger does not know"
    )
    took: list[float] = []
    for label in LABELS:
        started = time.perf_counter()
        result = activities.sync_accounts(SyncRequest(broker=BROKER))
        took.append(time.perf_counter() - started)
        print(
            f"{label}: {took[-1]:.2f} s ({took[-1] / accounts * 1000:.2f} ms per account); "
            f"{len(result.reported)} reported, {len(result.derived)} derived, "
            f"{len(result.unread)} unread, {result.mismatch_count} mismatches, "
            f"{result.order_mismatch_count} order mismatches"
        )
    return tuple(took)


if __name__ == "__main__":
    main()

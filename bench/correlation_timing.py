"""Timing of the correlation step on a book of 5,000 accounts × 250 days.

    python -m bench.correlation_timing [--accounts 5000] [--days 250] [--seed N]
                                       [--load-returns] [--pg-admin URL]

:func:`time_correlation` builds a synthetic book — 50 clusters of correlated accounts (one
common factor per cluster plus each account's own noise), a few missing days, in the
``dict[str, dict[date, Decimal]]`` shape ``repository.load_returns`` hands to ``correlate`` —
and times ``correlate`` on it (median of three runs). With ``--load-returns`` it also writes the
same book to a scratch PostgreSQL database and times ``repository.load_returns`` (the database is
dropped afterwards).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import psycopg

from bench.book import bench_book
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.domain.correlate import correlate

CLUSTERS = 50
THRESHOLD = Decimal("0.7")
MIN_OBSERVATIONS = 20
MAX_PEERS = 10
DEFAULT_SEED = 20260301
FIRST_DAY = date(2025, 1, 6)
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def synthetic_returns(
    accounts: int = 5000, days: int = 250, seed: int = DEFAULT_SEED
) -> tuple[list[str], list[date], dict[str, dict[date, Decimal]]]:
    """``accounts`` ids, ``days`` consecutive days and their returns as Decimals.

    The accounts fall into :data:`CLUSTERS` clusters of equal size (account ``k`` in cluster
    ``k % CLUSTERS``); each return is the cluster's factor plus the account's own noise (factor
    weight 1, noise 0.5: a within-cluster correlation near 0.8), to six decimal places. About
    one return in a hundred is missing, as real histories have gaps.
    """
    rng = np.random.default_rng(seed)
    ids = [f"acct-{k:05d}" for k in range(accounts)]
    day_list = [FIRST_DAY + timedelta(days=i) for i in range(days)]
    factors = rng.normal(0.0, 0.01, size=(CLUSTERS, days))
    cluster = np.arange(accounts) % CLUSTERS
    values = factors[cluster] + rng.normal(0.0, 0.005, size=(accounts, days))
    present = rng.random((accounts, days)) >= 0.01
    returns: dict[str, dict[date, Decimal]] = {}
    for k, account_id in enumerate(ids):
        row = values[k]
        keep = present[k]
        returns[account_id] = {
            day: Decimal(f"{value:.6f}")
            for day, value, ok in zip(day_list, row.tolist(), keep.tolist(), strict=True)
            if ok
        }
    return ids, day_list, returns


def time_correlation(
    accounts: int = 5000, days: int = 250, seed: int = DEFAULT_SEED
) -> dict[str, Any]:
    """Median of three timed runs of ``correlate`` on :func:`synthetic_returns`.

    Returns ``{"accounts", "days", "median_s", "runs_s", "groups"}`` (``groups``: how many
    groups of two or more accounts the last run found).
    """
    ids, day_list, returns = synthetic_returns(accounts, days, seed)
    runs: list[float] = []
    groups = 0
    for _ in range(3):
        start = time.perf_counter()
        result = correlate(
            ids,
            day_list,
            returns,
            threshold=THRESHOLD,
            min_observations=MIN_OBSERVATIONS,
            max_peers=MAX_PEERS,
        )
        runs.append(time.perf_counter() - start)
        groups = len({a.group for a in result.accounts if a.group is not None})
    return {
        "accounts": accounts,
        "days": days,
        "median_s": statistics.median(runs),
        "runs_s": runs,
        "groups": groups,
    }


# --------------------------------------------------------------------------------------------
# load_returns against PostgreSQL


@contextmanager
def scratch_postgres(admin_url: str = PG_ADMIN_URL) -> Iterator[Database]:
    """A fresh, migrated database on the server of ``admin_url``, dropped afterwards."""
    name = f"teo_bench_corr_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    host_part = admin_url.split("://", 1)[1].rsplit("/", 1)[0]
    db = Database(f"postgresql+psycopg://{host_part}/{name}")
    try:
        db.migrate()
        yield db
    finally:
        db.dispose()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def write_returns(db: Database, ids: list[str], returns: dict[str, dict[date, Decimal]]) -> None:
    """The accounts (through ``save_book``) and their returns (one ``COPY``)."""
    book = bench_book(ids)
    with db.transaction() as session:
        repository.save_book(session, book, datetime.now(UTC))
    buffer = io.StringIO()
    for account_id, series in returns.items():
        for day, value in series.items():
            buffer.write(f"{account_id}\t{day.isoformat()}\t{value}\n")
    url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        with cursor.copy("COPY daily_returns (account_id, day, ret) FROM STDIN") as copy:
            copy.write(buffer.getvalue())
        cursor.execute("ANALYZE daily_returns")


def time_load_returns(
    accounts: int = 5000,
    days: int = 250,
    seed: int = DEFAULT_SEED,
    admin_url: str = PG_ADMIN_URL,
) -> dict[str, Any]:
    """Median of three timed runs of ``repository.load_returns`` (lookback ``days``) on the
    book of :func:`synthetic_returns`, written to a scratch PostgreSQL database."""
    ids, day_list, returns = synthetic_returns(accounts, days, seed)
    with scratch_postgres(admin_url) as db:
        write_returns(db, ids, returns)
        runs: list[float] = []
        rows = 0
        for _ in range(3):
            start = time.perf_counter()
            with db.transaction() as session:
                loaded_days, loaded = repository.load_returns(session, ids, days)
            runs.append(time.perf_counter() - start)
            rows = sum(len(series) for series in loaded.values())
        if loaded_days != day_list or loaded != returns:
            raise AssertionError("load_returns did not return the returns written")
    return {
        "accounts": accounts,
        "days": days,
        "rows": rows,
        "median_s": statistics.median(runs),
        "runs_s": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, default=5000)
    parser.add_argument("--days", type=int, default=250)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--load-returns", action="store_true", help="also time load_returns on PostgreSQL"
    )
    parser.add_argument("--pg-admin", default=PG_ADMIN_URL)
    args = parser.parse_args()

    figures = time_correlation(args.accounts, args.days, args.seed)
    runs = ", ".join(f"{r:.3f}" for r in figures["runs_s"])
    print(
        f"correlate     {figures['accounts']} accounts × {figures['days']} days: "
        f"median {figures['median_s']:.3f} s (runs {runs}), {figures['groups']} groups"
    )
    if args.load_returns:
        loaded = time_load_returns(args.accounts, args.days, args.seed, args.pg_admin)
        runs = ", ".join(f"{r:.3f}" for r in loaded["runs_s"])
        print(
            f"load_returns  {loaded['accounts']} accounts × {loaded['days']} days "
            f"({loaded['rows']} rows): median {loaded['median_s']:.3f} s (runs {runs})"
        )


if __name__ == "__main__":
    main()

"""The signal workflow against a bare Temporal floor of the same shape (issues 8 and 22). A
benchmark, not a test.

    python -m bench.overhead [--legs 10,100,500,1000,5000] [--repeats 3] [--repeats-large 1]
                             [--stagger-legs 100,1000] [--stagger-s 1,5] [--sync-legs LIST]
                             [--throughput-seconds 120] [--in-flight 20]
                             [--throughput-timeout 60] [--database-url postgres|sqlite|URL]
                             [--broker memory|paper] [--run-timeout S] [--quick]

One process holds an embedded Temporal dev server (127.0.0.1, in memory, the project's data
converter) and, side by side, the workers: the floor's (``bench.floor``), ours with zero delays
and ours with staggered delays (the project's ``build_worker``; each its own task queue). Per N
(ascending; ``--repeats`` for N <= 1,000, ``--repeats-large`` above), each repeat runs, one
after the other:

* **entry**: the floor of N legs with zero delays (one no-op activity per leg, no timer), then
  one signal of N accounts (zero delays: no timer, as the floor), every account eligible, a
  broker that fills at once (``bench.memory_broker``, or ``--broker paper``), the real ledger;
* **exit**: once the entry's stops rest at the broker, the floor again, then a CLOSE of the
  signal's N positions (``submit_action``); the bench waits for the keepers to end, so no
  repeat's positions outlive it;
* **staggered** (N in ``--stagger-legs``): a signal whose legs draw delays in ``--stagger-s``
  (min,max seconds), then the floor waiting exactly those delays (read back from the signal's
  delay timers): a timer and an activity per leg on both sides; then its positions closed
  (not reported);
* **sync** (N in ``--sync-legs``, default every N): ``bench.account_sync`` on N accounts in a
  fresh database of its own (no Temporal, no floor).

Every run records wall time, the time from submission to the first and the last order at the
broker (the floor: its first and last no-op activity), CPU of this process (by thread), the
dev server and PostgreSQL (``bench.harness``), and its histories (``bench.history``). The table
(``bench.table``) gives for each scenario and N ours / floor and the median over the repeats of
the per-repeat ratio ours ÷ floor. Then throughput (``bench.throughput``), the replay of the
largest signal, planning and correlation for 5,000 accounts (``bench.timings``), and the detail
of the largest entry. Everything also goes to ``bench-results/overhead-<tag>.json``.

``--quick``: N = 10 and 100, one repeat, staggered and sync at 100, no throughput, planning or
correlation: a smoke check of the whole path in about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.book import bench_book
from bench.floor import FloorWorkflow, noop
from bench.harness import ACTIVITY_THREADS, bench_database, machine, peak_rss_kib, server_pids
from bench.memory_broker import MemoryBroker
from bench.runs import (
    ENTRY,
    EXIT,
    OURS,
    STAGGERED,
    Context,
    Run,
    protected,
    run_close,
    run_entry,
    run_floor,
    run_sync,
)
from bench.table import breakdown, detail_table, extras, summarize, table, table_notes
from bench.throughput import throughput_pair
from bench.timings import (
    CORRELATION_ACCOUNTS,
    CORRELATION_DAYS,
    PLANNING_ACCOUNTS,
    guarded,
    time_correlation_or_missing,
    time_planning,
    time_replay,
)
from orchestrator.adapters.temporal import data_converter, temporal_binary
from orchestrator.config import PROJECT_ROOT, Settings
from orchestrator.domain import search_attributes
from worker import build_activities, build_worker, tune_garbage_collector, worker_database

RESULTS_DIR = PROJECT_ROOT / "bench-results"
DEFAULT_LEGS = "10,100,500,1000,5000"
DEFAULT_STAGGER_LEGS = "100,1000"
LARGE = 1000
"""Above this many legs: ``--repeats-large`` repeats."""
WARMUP_LEGS = 50


async def bench(args: argparse.Namespace, tag: str) -> dict[str, Any]:
    legs_list: list[int] = args.legs
    largest = legs_list[-1]
    runs: list[Run] = []
    out: dict[str, Any] = {"tag": tag, "legs": legs_list, "runs": runs}
    low, high = args.stagger_s
    with (
        tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp,
        bench_database(args.database_url, tag, Path(tmp)) as bench_db,
    ):
        out["database"] = bench_db.label
        out["broker"] = (
            "in-memory (bench.memory_broker)" if args.broker == "memory" else "PaperBroker"
        )
        tune_garbage_collector(Settings())  # as the worker's process does
        db = worker_database(Settings(), bench_db.url)
        try:
            db.migrate()
            ids = [f"bench-{i:05d}" for i in range(1, max([largest, *args.stagger_legs]) + 1)]
            base: dict[str, Any] = {
                "task_queue": f"bench-ours-{tag}",
                "database_url": bench_db.url,
                "delay_min_s": Decimal(0),
                "delay_max_s": Decimal(0),
            }
            converter = data_converter(Settings.model_validate(base))
            env = await WorkflowEnvironment.start_local(
                data_converter=converter,
                dev_server_existing_path=temporal_binary(),
                search_attributes=search_attributes.ALL,
                ip="127.0.0.1",
                dev_server_log_level="error",
            )
            try:
                client = env.client
                base["temporal_address"] = client.service_client.config.target_host
                settings = Settings.model_validate(base)
                staggered = Settings.model_validate(
                    {
                        **base,
                        "task_queue": f"bench-ours-staggered-{tag}",
                        "delay_min_s": Decimal(str(low)),
                        "delay_max_s": Decimal(str(high)),
                    }
                )
                broker = MemoryBroker() if args.broker == "memory" else None
                ctx = Context(
                    client=client,
                    db=db,
                    settings=settings,
                    staggered=staggered,
                    floor_queue=f"bench-floor-{tag}",
                    tag=tag,
                    server_pids=server_pids(),
                    broker=broker,
                )
                slots = settings.max_concurrent_activities
                out["settings"] = {
                    "batch_size": settings.batch_size,
                    "max_concurrent_activities": slots,
                    "max_orders_in_flight": settings.max_orders_in_flight,
                    "stagger_s": [low, high],
                    "run_timeout_s": args.run_timeout or "120 + 0.5 × N",
                    "repeats": {"N <= 1000": args.repeats, "N > 1000": args.repeats_large},
                    "signal_scope": "whole book" if bench_db.fresh else "account_ids",
                }
                with (
                    ThreadPoolExecutor(slots, f"{ACTIVITY_THREADS}-ours") as ours_pool,
                    ThreadPoolExecutor(slots, f"{ACTIVITY_THREADS}-floor") as floor_pool,
                ):
                    floor_worker = Worker(
                        client,
                        task_queue=ctx.floor_queue,
                        workflows=[FloorWorkflow],
                        activities=[noop],
                        activity_executor=floor_pool,
                        max_concurrent_activities=slots,
                        max_cached_workflows=2000,
                    )
                    ours_worker = build_worker(
                        client, settings, build_activities(db, settings, broker), ours_pool
                    )
                    staggered_worker = build_worker(
                        client, staggered, build_activities(db, staggered, broker), ours_pool
                    )
                    async with floor_worker, ours_worker, staggered_worker:
                        await per_n(ctx, args, ids, bench_db.fresh, runs)
                        if args.throughput_seconds > 0:
                            out["throughput"] = await throughput_pair(
                                ctx,
                                in_flight=args.in_flight,
                                seconds=args.throughput_seconds,
                                timeout_s=args.throughput_timeout,
                            )
                target = [
                    r for r in runs if (r.scenario, r.variant, r.legs) == (ENTRY, OURS, largest)
                ]
                if target and not args.quick:
                    print(f"replay: {target[-1].workflow_id} and its children …", flush=True)
                    out["replay"] = await guarded_async(
                        time_replay(client, target[-1].workflow_id, largest, converter)
                    )
                out["peak_rss_kib_bench"] = peak_rss_kib()
            finally:
                await env.shutdown()
        finally:
            db.dispose()
    if not args.quick:
        print(f"planning: plan_signal on {PLANNING_ACCOUNTS} accounts …", flush=True)
        out["planning"] = guarded("planning", lambda: time_planning(PLANNING_ACCOUNTS))
        print(f"correlation: {CORRELATION_ACCOUNTS} × {CORRELATION_DAYS} …", flush=True)
        out["correlation"] = guarded("correlation", time_correlation_or_missing)
    out["peak_rss_kib_end"] = peak_rss_kib()
    return out


async def guarded_async(work: Any) -> dict[str, Any]:
    try:
        return dict(await work)
    except Exception as err:
        logging.exception("replay failed")
        return {"error": f"{type(err).__name__}: {err}"}


async def per_n(
    ctx: Context, args: argparse.Namespace, ids: list[str], fresh: bool, runs: list[Run]
) -> None:
    """Warm up, then for each N (ascending, so the book only grows) the repeats of entry and
    exit, staggered and sync; each pair of floor and ours one after the other."""
    legs_list: list[int] = args.legs
    warm = min(legs_list[0], WARMUP_LEGS)
    print(f"warm-up (floor {WARMUP_LEGS} legs, ours {warm} legs, entry and close) …", flush=True)
    await run_floor(ctx, WARMUP_LEGS, scenario="warmup", repeat=0, timeout_s=120)
    warm_timeout_s = args.run_timeout or 120 + 0.5 * warm
    entry = await run_entry(
        ctx,
        bench_book(ids[:warm]),
        None if fresh else ids[:warm],
        scenario=ENTRY,
        repeat=0,
        timeout_s=warm_timeout_s,
        prefix="warmup-",
    )
    await protected(ctx, warm, 60)
    await run_close(ctx, entry, repeat=0, timeout_s=warm_timeout_s)
    sizes = sorted({*legs_list, *args.stagger_legs, *args.sync_legs})
    for legs in sizes:
        book = bench_book(ids[:legs])
        scope = None if fresh else ids[:legs]
        timeout_s = args.run_timeout or 120 + 0.5 * legs
        repeats = args.repeats if legs <= LARGE else args.repeats_large
        for repeat in range(1, repeats + 1):
            if legs in legs_list:
                await entry_and_exit(
                    ctx,
                    book=book,
                    scope=scope,
                    legs=legs,
                    repeat=repeat,
                    timeout_s=timeout_s,
                    runs=runs,
                )
            if legs in args.stagger_legs:
                await staggered(
                    ctx,
                    book=book,
                    scope=scope,
                    legs=legs,
                    repeat=repeat,
                    timeout_s=timeout_s,
                    runs=runs,
                )
            if legs in args.sync_legs:
                sync = await asyncio.to_thread(run_sync, legs, repeat=repeat, tag=ctx.tag)
                runs.append(sync)
                print(f"N={legs} r{repeat} sync: {sync.wall_ms / 1000:.2f} s", flush=True)


async def entry_and_exit(
    ctx: Context,
    *,
    book: Any,
    scope: list[str] | None,
    legs: int,
    repeat: int,
    timeout_s: float,
    runs: list[Run],
) -> None:
    floor = await run_floor(ctx, legs, scenario=ENTRY, repeat=repeat, timeout_s=timeout_s)
    entry = await run_entry(ctx, book, scope, scenario=ENTRY, repeat=repeat, timeout_s=timeout_s)
    runs += [floor, entry.run]
    await protected(ctx, legs, timeout_s)
    exit_floor = await run_floor(ctx, legs, scenario=EXIT, repeat=repeat, timeout_s=timeout_s)
    close = await run_close(ctx, entry, repeat=repeat, timeout_s=timeout_s)
    runs += [exit_floor, close]
    print(
        f"N={legs} r{repeat} entry: floor {floor.ms_per_leg:.2f}, ours "
        f"{entry.run.ms_per_leg:.2f} ms/leg (×{entry.run.ms_per_leg / floor.ms_per_leg:.2f}), "
        f"{entry.run.filled_orders}/{legs} FILLED; exit: floor {exit_floor.ms_per_leg:.2f}, "
        f"ours {close.ms_per_leg:.2f} ms/leg, {close.filled_orders}/{legs} closed, "
        f"{close.keepers_terminated} of {len(entry.keepers)} keepers terminated",
        flush=True,
    )


async def staggered(
    ctx: Context,
    *,
    book: Any,
    scope: list[str] | None,
    legs: int,
    repeat: int,
    timeout_s: float,
    runs: list[Run],
) -> None:
    timeout_s += float(ctx.staggered.delay_max_s)
    entry = await run_entry(
        ctx, book, scope, scenario=STAGGERED, repeat=repeat, timeout_s=timeout_s
    )
    floor = await run_floor(
        ctx,
        legs,
        scenario=STAGGERED,
        repeat=repeat,
        timeout_s=timeout_s,
        delays_ms=entry.run.delays_ms,
    )
    runs += [entry.run, floor]
    await protected(ctx, legs, timeout_s)
    await run_close(ctx, entry, repeat=repeat, timeout_s=timeout_s, staggered=True)
    print(
        f"N={legs} r{repeat} staggered: ours {entry.run.ms_per_leg:.2f}, floor "
        f"{floor.ms_per_leg:.2f} ms/leg ({len(entry.run.delays_ms)} delay timers)",
        flush=True,
    )


def _ints(text: str) -> list[int]:
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of integers: {text!r}") from None
    if values and values[0] < 1:
        raise argparse.ArgumentTypeError("legs must be positive integers")
    return values


def _window(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not MIN,MAX seconds: {text!r}") from None
    if not 0 <= low <= high:
        raise argparse.ArgumentTypeError("need 0 <= MIN <= MAX")
    return low, high


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--legs", type=_ints, default=_ints(DEFAULT_LEGS), help=f"(default {DEFAULT_LEGS})"
    )
    p.add_argument("--repeats", type=int, default=3, help="runs per N <= 1000 (default 3)")
    p.add_argument("--repeats-large", type=int, default=1, help="runs per N > 1000 (default 1)")
    p.add_argument(
        "--stagger-legs",
        type=_ints,
        default=_ints(DEFAULT_STAGGER_LEGS),
        help=f"N of the staggered rows (default {DEFAULT_STAGGER_LEGS}; empty: none)",
    )
    p.add_argument(
        "--stagger-s",
        type=_window,
        default=(1.0, 5.0),
        help="MIN,MAX seconds of the staggered delays (default 1,5)",
    )
    p.add_argument(
        "--sync-legs", type=_ints, default=None, help="N of the account sync rows (default --legs)"
    )
    p.add_argument(
        "--throughput-seconds",
        type=float,
        default=120,
        help="window of each throughput loop, floor and ours (default 120; 0: skip)",
    )
    p.add_argument("--in-flight", type=int, default=20, help="signals in flight (default 20)")
    p.add_argument(
        "--throughput-timeout",
        type=float,
        default=60,
        help="seconds one throughput signal may take (default 60); also bounds the drain",
    )
    p.add_argument(
        "--database-url",
        default="postgres",
        help="postgres (default: a fresh database bench_<tag> on 127.0.0.1:5432, dropped at the "
        "end), sqlite (a fresh temporary file) or a SQLAlchemy URL used as is",
    )
    p.add_argument(
        "--broker",
        choices=("memory", "paper"),
        default="memory",
        help="memory (default: fills at once in memory) or paper (the project's PaperBroker: "
        "three more transactions per order; first/last order from the ledger)",
    )
    p.add_argument(
        "--run-timeout",
        type=float,
        default=None,
        help="seconds one run may take before it is terminated (default 120 + 0.5 × N)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke check: N = 10,100, 1 repeat, staggered and sync at 100, no throughput, "
        "replay, planning or correlation",
    )
    return p


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = parser()
    args = p.parse_args(argv)
    if args.quick:
        args.legs, args.repeats, args.repeats_large = [10, 100], 1, 1
        args.stagger_legs, args.sync_legs, args.throughput_seconds = [100], [100], 0
    if args.sync_legs is None:
        args.sync_legs = list(args.legs)
    if not args.legs:
        p.error("--legs needs at least one N")
    if args.repeats < 1 or args.repeats_large < 1 or args.in_flight < 1:
        p.error("--repeats, --repeats-large and --in-flight must be at least 1")
    if args.throughput_seconds < 0 or args.throughput_timeout <= 0:
        p.error("--throughput-seconds must be >= 0 and --throughput-timeout > 0")
    return args


async def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    host = machine()
    print(
        f"machine: nproc {host['nproc']} ({host['cpu_model'] or 'unknown cpu'}), "
        f"python {host['python']}, temporalio {host['temporalio']}, {host['platform']}",
        flush=True,
    )
    tag = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    result = await bench(args, tag)
    runs: list[Run] = result.pop("runs")
    rows = summarize(runs)
    print()
    print(
        f"database {result['database']}; dev server in memory; batch size "
        f"{result['settings']['batch_size']}, at most {result['settings']['max_orders_in_flight']} "
        f"orders in flight per signal, {result['broker']} broker; staggered delays "
        f"{args.stagger_s[0]:g}–{args.stagger_s[1]:g} s; repeats {args.repeats} "
        f"(N <= {LARGE:,}), {args.repeats_large} above"
    )
    print(table(rows))
    print(table_notes())
    print()
    print(detail_table(runs))
    print()
    print(extras(result, args.in_flight, args.throughput_seconds))
    print()
    print(breakdown(runs))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"overhead-{tag}.json"
    document = {
        **result,
        "argv": sys.argv[1:],
        "machine": host,
        "rows": [asdict(row) for row in rows],
        "runs": [asdict(r) for r in runs],
    }
    if "throughput" in result:
        tp = result["throughput"]
        document["throughput"] = {
            "floor": asdict(tp["floor"]),
            "ours": asdict(tp["ours"]),
            "ratio_signals_per_s": tp["ratio_signals_per_s"],
        }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

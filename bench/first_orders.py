"""Time from a signal's submission to its first and to its last entry order at the broker: one
signal of N accounts, zero delays, one worker, the in-memory broker, a fresh PostgreSQL database
(or ``--database-url sqlite``). A benchmark, not a test.

    python -m bench.first_orders [--legs 500,5000] [--repeats 1] [--database-url postgres]
                                 [--max-orders-in-flight N] [--delays-s MIN,MAX]

Per run it prints: first and last order at the broker (ms after submission), the signal's
result, the activities the signal and its batches scheduled, its histories' events (per leg
and the commonest types, and the keeper's alone), and this process's CPU (worker and
bench, all threads) per leg. Uses ``bench.overhead``'s database and book helpers, unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from bench.book import bench_book
from bench.harness import bench_database
from bench.history import event_counts
from bench.memory_broker import MemoryBroker
from bench.runs import bench_signal, load
from orchestrator.adapters.brokers.base import BrokerOrder, OrderTicket
from orchestrator.adapters.temporal import data_converter, temporal_binary
from orchestrator.config import Settings
from orchestrator.domain import search_attributes
from orchestrator.services.history import fetch_with_children
from orchestrator.services.submit import submit_signal
from worker import build_activities, build_worker, tune_garbage_collector, worker_database


class TimedBroker(MemoryBroker):
    """The in-memory broker, noting when each entry order first reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: dict[str, float] = {}
        self._times = threading.Lock()

    def submit(self, ticket: OrderTicket) -> BrokerOrder:
        at = time.perf_counter()
        with self._times:
            if ticket.client_order_id.endswith(":1"):
                self.arrived.setdefault(ticket.client_order_id, at)
        return super().submit(ticket)


async def one_run(
    client: Any, db: Any, settings: Settings, broker: TimedBroker, *, legs: int, tag: str
) -> dict[str, Any]:
    ids = [f"bench-{i:05d}" for i in range(1, legs + 1)]
    await asyncio.to_thread(load, db, bench_book(ids))
    signal_id = f"first-{tag}-n{legs}"
    broker.arrived.clear()
    cpu = time.process_time()
    started = time.perf_counter()
    handle = await submit_signal(client, db, settings, bench_signal(signal_id, None))
    report = await handle.result()
    done = time.perf_counter()
    cpu = time.process_time() - cpu
    times = sorted(broker.arrived.values())
    histories = await fetch_with_children(client, handle.id)
    activities = Counter(
        e.activity_task_scheduled_event_attributes.activity_type.name
        for h in histories
        for e in h.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    )
    start = histories[0].events[0].event_time.ToDatetime()

    def after_start(kind: str) -> int | None:
        """Milliseconds from the signal's start to the last order activity of ``kind`` done."""
        ends = [
            e.event_time.ToDatetime()
            for h in histories
            for e in h.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
            and _scheduled_type(h, e.activity_task_completed_event_attributes.scheduled_event_id)
            == kind
        ]
        return round((max(ends) - start).total_seconds() * 1000) if ends else None

    return {
        "legs": legs,
        "last_slice_done_ms": after_start("place_and_follow_slice"),
        "last_order_activity_done_ms": after_start("place_and_follow_order"),
        "orders_at_broker": len(times),
        "first_order_ms": round((times[0] - started) * 1000) if times else None,
        "last_order_ms": round((times[-1] - started) * 1000) if times else None,
        "result_ms": round((done - started) * 1000),
        "by_status": report.by_status,
        "process_cpu_ms_per_leg": round(cpu * 1000 / legs, 2),
        "activities": {k: v for k, v in activities.items() if k.startswith("place_and_follow")},
        "events_per_leg": round(sum(len(h.events) for h in histories) / legs, 2),
        "events": dict(event_counts(histories).most_common(8)),
        "keeper_events": dict(
            event_counts([h for h in histories if h.workflow_id.endswith("/positions")])
        ),
    }


def _scheduled_type(history: Any, event_id: int) -> str:
    event = history.events[event_id - 1]
    return str(event.activity_task_scheduled_event_attributes.activity_type.name)


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--legs", default="500,5000")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--database-url", default="postgres")
    parser.add_argument(
        "--max-orders-in-flight", type=int, default=None, help="default: the setting's (5000)"
    )
    parser.add_argument(
        "--delays-s", default="0,0", help="MIN,MAX seconds of the legs' delays (default 0,0)"
    )
    args = parser.parse_args(argv)
    low, high = (Decimal(v) for v in args.delays_s.split(","))
    legs = [int(n) for n in args.legs.split(",")]
    tag = f"fo{int(time.time())}"
    logging.basicConfig(level=logging.WARNING)
    with (
        tempfile.TemporaryDirectory(prefix="bench-first-") as tmp,
        bench_database(args.database_url, tag, Path(tmp)) as bench_db,
    ):
        tune_garbage_collector(Settings())  # as the worker's process does
        db = worker_database(Settings(), bench_db.url)
        db.migrate()
        base: dict[str, Any] = {
            "task_queue": f"bench-first-{tag}",
            "database_url": bench_db.url,
            "delay_min_s": low,
            "delay_max_s": high,
        }
        if args.max_orders_in_flight:
            base["max_orders_in_flight"] = args.max_orders_in_flight
        env = await WorkflowEnvironment.start_local(
            data_converter=data_converter(Settings.model_validate(base)),
            dev_server_existing_path=temporal_binary(),
            search_attributes=search_attributes.ALL,
            ip="127.0.0.1",
            dev_server_log_level="error",
        )
        try:
            settings = Settings.model_validate(
                {**base, "temporal_address": env.client.service_client.config.target_host}
            )
            broker = TimedBroker()
            slots = settings.max_concurrent_activities
            with ThreadPoolExecutor(slots) as pool:
                activities = build_activities(db, settings, broker)
                async with build_worker(env.client, settings, activities, pool):
                    for n in legs:
                        for r in range(args.repeats):
                            run = await one_run(
                                env.client, db, settings, broker, legs=n, tag=f"{tag}r{r}"
                            )
                            print(json.dumps(run), flush=True)
        finally:
            await env.shutdown()
            db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))

"""Throughput: a closed loop of signals of 10 accounts, a fixed number in flight, against bare
floor workflows of 10 legs with the same lanes (``python -m bench.overhead`` runs it after the
per-N table; ``--throughput-seconds 0`` skips it).

The signals' positions stay open during the loop (their keepers follow their stops): part of
what ours costs in a steady state, none of the floor's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from temporalio.client import WorkflowHandle

from bench.book import bench_book
from bench.floor import FloorWorkflow
from bench.harness import CpuSample, bounded, per
from bench.history import pct
from bench.runs import FLOOR, OURS, Context, bench_signal, load
from bench.table import THROUGHPUT_LEGS
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import OrderRow
from orchestrator.domain.orders import OrderStatus
from orchestrator.services.submit import submit_signal

FAILURES_PER_LANE = 20
"""A throughput lane stops after this many failed signals (bounds a failing loop)."""


def ledger_filled_by_signal(db: Database, prefix: str) -> dict[str, int]:
    """FILLED orders per signal, for the signals whose id starts with ``prefix``."""
    with db.transaction() as session:
        rows = session.execute(
            select(OrderRow.signal_id, func.count())
            .where(OrderRow.signal_id.like(f"{prefix}%"))
            .where(OrderRow.status == OrderStatus.FILLED.value)
            .group_by(OrderRow.signal_id)
        ).tuples()
        return {signal_id: count for signal_id, count in rows}


@dataclass
class Throughput:
    kind: str
    legs_per_signal: int
    in_flight: int
    window_s: float
    submitted: int = 0
    completed_in_window: int = 0
    completed_after_window: int = 0
    """Submitted before the deadline, completed while draining."""
    failed: int = 0
    """Failed, timed out (terminated) or not submitted."""
    errors: dict[str, int] = field(default_factory=dict)
    drain_s: float = 0.0
    """From the deadline until the last lane stopped."""
    signals_per_s: float = 0.0
    legs_per_s: float = 0.0
    latency_ms_p50: float | None = None
    latency_ms_p95: float | None = None
    latency_ms_max: float | None = None
    process_cpu_ms_per_signal: float | None = None
    server_cpu_ms_per_signal: float | None = None
    """CPU over the window and the drain ÷ signals completed in both."""
    database_cpu_ms_per_signal: float | None = None
    ledger_filled_legs: int | None = None
    """Ours: FILLED orders of the signals completed in the window."""
    ledger_short_signals: int | None = None
    """Ours: signals completed in the window with fewer FILLED orders than legs."""


async def throughput(
    kind: str,
    start: Callable[[int, int], Awaitable[WorkflowHandle[Any, Any]]],
    *,
    in_flight: int,
    seconds: float,
    timeout_s: float,
    server_pids: list[int],
) -> tuple[Throughput, list[str]]:
    """``in_flight`` lanes, each starting (``start(lane, sequence)``) and awaiting one workflow
    after another until ``seconds`` have passed. Returns the figures and the workflow ids that
    completed inside the window."""
    out = Throughput(kind, THROUGHPUT_LEGS, in_flight, seconds)
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    in_window: list[str] = []
    before = CpuSample.now(server_pids)
    began = time.perf_counter()
    deadline = began + seconds

    async def lane(k: int) -> None:
        failures = 0
        sequence = 0
        while time.perf_counter() < deadline and failures < FAILURES_PER_LANE:
            sequence += 1
            submitted = time.perf_counter()
            try:
                handle = await asyncio.wait_for(start(k, sequence), timeout_s)
                out.submitted += 1
                await bounded(handle, handle.result(), timeout_s)
            except Exception as err:  # noqa: BLE001 — counted; the lane goes on (bounded)
                failures += 1
                out.failed += 1
                errors[f"{type(err).__name__}: {str(err)[:120]}"] += 1
                continue
            done = time.perf_counter()
            latencies.append((done - submitted) * 1000)
            if done <= deadline:
                out.completed_in_window += 1
                in_window.append(handle.id)
            else:
                out.completed_after_window += 1

    await asyncio.gather(*(lane(k) for k in range(in_flight)))
    ended = time.perf_counter()
    after = CpuSample.now(server_pids)
    out.drain_s = max(0.0, ended - deadline)
    out.errors = dict(errors.most_common())
    out.signals_per_s = out.completed_in_window / seconds
    out.legs_per_s = out.signals_per_s * THROUGHPUT_LEGS
    if latencies:
        out.latency_ms_p50 = pct(latencies, 50)
        out.latency_ms_p95 = pct(latencies, 95)
        out.latency_ms_max = max(latencies)
    completed = out.completed_in_window + out.completed_after_window
    if completed:
        out.process_cpu_ms_per_signal = (after.process_s - before.process_s) * 1000 / completed
        out.server_cpu_ms_per_signal = per(before.server_s, after.server_s, completed)
        out.database_cpu_ms_per_signal = per(before.database_s, after.database_s, completed)
    return out, in_window


async def throughput_pair(
    ctx: Context, *, in_flight: int, seconds: float, timeout_s: float
) -> dict[str, Any]:
    """The floor's throughput, then ours, with the same lanes."""
    pool = [f"bench-tp-{i:05d}" for i in range(1, in_flight * THROUGHPUT_LEGS + 1)]
    await asyncio.to_thread(load, ctx.db, bench_book(pool, generous=True))
    lanes = [pool[k * THROUGHPUT_LEGS : (k + 1) * THROUGHPUT_LEGS] for k in range(in_flight)]
    prefix = f"bench-{ctx.tag}-tp-"

    async def start_floor(k: int, sequence: int) -> WorkflowHandle[Any, Any]:
        return await ctx.client.start_workflow(
            FloorWorkflow.run,
            args=[THROUGHPUT_LEGS, None],
            id=f"bench-floor-{ctx.tag}-tp-{k:03d}-{sequence:06d}",
            task_queue=ctx.floor_queue,
        )

    async def start_ours(k: int, sequence: int) -> WorkflowHandle[Any, Any]:
        signal = bench_signal(f"{prefix}{k:03d}-{sequence:06d}", lanes[k])
        return await submit_signal(ctx.client, ctx.db, ctx.settings, signal)

    print(f"throughput: floor, {in_flight} in flight, {seconds:.0f} s …", flush=True)
    floor, _ = await throughput(
        FLOOR,
        start_floor,
        in_flight=in_flight,
        seconds=seconds,
        timeout_s=timeout_s,
        server_pids=ctx.server_pids,
    )
    print(f"throughput: ours, {in_flight} in flight, {seconds:.0f} s …", flush=True)
    ours, completed = await throughput(
        OURS,
        start_ours,
        in_flight=in_flight,
        seconds=seconds,
        timeout_s=timeout_s,
        server_pids=ctx.server_pids,
    )
    filled = await asyncio.to_thread(ledger_filled_by_signal, ctx.db, prefix)
    # Workflow id is "signal-<signal id>".
    counts = [filled.get(workflow_id.removeprefix("signal-"), 0) for workflow_id in completed]
    ours.ledger_filled_legs = sum(counts)
    ours.ledger_short_signals = sum(1 for c in counts if c != THROUGHPUT_LEGS)
    if ours.ledger_short_signals:
        logging.warning(
            "throughput: %d completed signals with fewer than %d FILLED orders",
            ours.ledger_short_signals,
            THROUGHPUT_LEGS,
        )
    return {
        "floor": floor,
        "ours": ours,
        "ratio_signals_per_s": (
            ours.signals_per_s / floor.signals_per_s if floor.signals_per_s else None
        ),
    }

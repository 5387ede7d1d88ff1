"""Per-leg overhead of the signal workflow against a bare Temporal floor, on one dev server.

    python -m bench.overhead [--legs 500] [--repeats 3] [--database-url URL]

One embedded Temporal dev server (127.0.0.1) and, side by side in this process, two workers:

* **floor** — ``bench.floor.FloorWorkflow``: per leg a zero-length timer and one no-op activity,
  all legs gathered in one workflow. What any leg costs on Temporal at the least.
* **ours** — the project's real worker (``build_worker`` + ``build_activities``, thread pool)
  running ``SignalExecutionWorkflow`` for one signal submitted through ``submit_signal``, with
  N eligible accounts the paper broker fills at once and zero delays (no timers). Run with
  ``batch_size >= N`` (legs inline) and with the default ``batch_size`` 500.

Each is repeated R times. Reported per run and as the median: wall time per leg (start to
result), the ratio ours/floor, history events and bytes per leg, workflow tasks per leg and CPU
per leg (this process: worker, activities and database; and the dev server). The table is
printed and everything is written to ``bench-results/overhead-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.floor import FloorTwoActivitiesWorkflow, FloorWorkflow, noop
from orchestrator import search_attributes
from orchestrator.book import AccountRecord, AccountState, Book
from orchestrator.db import repository
from orchestrator.db.engine import Database
from orchestrator.models import AccountLimits, ExecutionReport, LegStatus, Signal, SymbolSpec
from orchestrator.service import submit_signal
from orchestrator.settings import PROJECT_ROOT, Settings
from orchestrator.temporal import temporal_binary
from worker import build_activities, build_worker

T = TypeVar("T")

RESULTS_DIR = PROJECT_ROOT / "bench-results"
BROKER = "bench"
SYMBOL = "EURUSD"
WARMUP_LEGS = 50
FLOOR_2ACT = "floor-2act"
ACTIVITY_THREADS = "bench-activity"
"""Name prefix of the activity threads (both workers), to tell their CPU apart."""

SPEC = SymbolSpec(
    broker=BROKER,
    symbol=SYMBOL,
    tick_size=Decimal("0.00001"),
    tick_value=Decimal(1),
    contract_size=Decimal(100000),
    min_lot=Decimal("0.01"),
    lot_step=Decimal("0.01"),
    max_lot=Decimal(50),
    margin_per_lot=Decimal(1085),
)


# --------------------------------------------------------------------------------------------
# The book: N accounts, all eligible, all filled at once by the paper broker


def bench_account(account_id: str) -> AccountRecord:
    """Active, no drawdown, budget and margin for a ~1.7-lot leg many times over."""
    equity = Decimal(50000)
    return AccountRecord(
        id=account_id,
        broker=BROKER,
        currency="USD",
        limits=AccountLimits(
            risk_per_trade=Decimal("0.01"),
            daily_loss_budget=Decimal(5000),
            max_drawdown=Decimal("0.10"),
            max_open_positions=10,
            max_lots=Decimal(20),
        ),
        state=AccountState(balance=equity, equity=equity, peak_equity=equity, free_margin=equity),
    )


def bench_book(account_ids: Sequence[str]) -> Book:
    return Book(symbols=[SPEC], accounts=[bench_account(a) for a in account_ids], returns=[])


def load(db: Database, book: Book) -> None:
    """(Re)write the book; this also resets each account's committed risk, margin, positions."""
    with db.transaction() as session:
        repository.save_book(session, book, datetime.now(UTC))


def bench_signal(signal_id: str, account_ids: list[str] | None) -> Signal:
    return Signal.model_validate(
        {
            "signal_id": signal_id,
            "symbol": SYMBOL,
            "side": "BUY",
            "entry": Decimal("1.08500"),
            "stop": Decimal("1.08200"),
            "account_ids": account_ids,
        }
    )


# --------------------------------------------------------------------------------------------
# Measurements


@dataclass
class CpuSample:
    process_s: float
    server_s: float | None
    threads: dict[str, float]

    @staticmethod
    def now(server_pids: list[int]) -> CpuSample:
        return CpuSample(
            process_s=time.process_time(), server_s=_cpu_of(server_pids), threads=_thread_cpu()
        )


@dataclass
class Run:
    variant: str
    repeat: int
    legs: int
    batch_size: int | None
    workflow_id: str
    wall_ms: float
    ms_per_leg: float
    events: int
    events_per_leg: float
    workflow_tasks: int
    workflow_tasks_per_leg: float
    history_bytes: int
    """Sum of the serialized (protobuf) sizes of every event, children included."""
    history_json_bytes: int
    """``len(WorkflowHistory.to_json())``, summed over the histories."""
    history_bytes_per_leg: float
    histories: int
    largest_event_bytes: int
    largest_events: list[dict[str, Any]]
    """The five largest events: size, type and activity type (or workflow id)."""
    result_payload_bytes: int
    server_span_ms: float
    """First to last event time of the top-level history, as recorded by the server."""
    process_cpu_ms_per_leg: float
    server_cpu_ms_per_leg: float | None
    cpu_ms_per_leg_by_thread: dict[str, float]
    """This process's CPU by kind of thread (see ``_thread_cpu``)."""
    outcome: dict[str, int]
    event_types: dict[str, int] = field(default_factory=dict)
    event_bytes: dict[str, int] = field(default_factory=dict)
    activities: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per activity type: count, retried attempts, queue and run times (ms) from history."""
    retries: int = 0
    """Activity completions that came from a retried attempt (attempt > 1)."""
    ratio: float | None = None


def _event_name(event: HistoryEvent) -> str:
    return EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")


def _history_figures(histories: list[WorkflowHistory], legs: int) -> dict[str, Any]:
    events = [e for h in histories for e in h.events]
    types = Counter(_event_name(e) for e in events)
    sizes: Counter[str] = Counter()
    for e in events:
        sizes[_event_name(e)] += e.ByteSize()
    top = histories[0].events
    last = top[-1]
    result_bytes = 0
    if last.HasField("workflow_execution_completed_event_attributes"):
        payloads = last.workflow_execution_completed_event_attributes.result.payloads
        result_bytes = sum(p.ByteSize() for p in payloads)
    span = top[-1].event_time.ToDatetime() - top[0].event_time.ToDatetime()
    size = sum(e.ByteSize() for e in events)
    wft = types.get("WORKFLOW_TASK_COMPLETED", 0)
    activities = _activity_figures(histories)
    largest: list[tuple[int, str, str]] = []
    for history in histories:
        names: dict[int, str] = {}
        for e in history.events:
            if e.HasField("activity_task_scheduled_event_attributes"):
                names[e.event_id] = e.activity_task_scheduled_event_attributes.activity_type.name
            detail = history.workflow_id
            if e.HasField("activity_task_completed_event_attributes"):
                detail = names[e.activity_task_completed_event_attributes.scheduled_event_id]
            elif e.HasField("activity_task_scheduled_event_attributes"):
                detail = names[e.event_id]
            largest.append((e.ByteSize(), _event_name(e), detail))
    largest.sort(reverse=True)
    return {
        "events": len(events),
        "events_per_leg": len(events) / legs,
        "workflow_tasks": wft,
        "workflow_tasks_per_leg": wft / legs,
        "history_bytes": size,
        "history_json_bytes": sum(len(h.to_json()) for h in histories),
        "history_bytes_per_leg": size / legs,
        "histories": len(histories),
        "largest_event_bytes": max(e.ByteSize() for e in events),
        "largest_events": [
            {"bytes": size, "type": kind, "of": detail} for size, kind, detail in largest[:5]
        ],
        "result_payload_bytes": result_bytes,
        "server_span_ms": span.total_seconds() * 1000,
        "event_types": dict(types.most_common()),
        "event_bytes": dict(sizes.most_common()),
        "activities": activities,
        "retries": sum(int(a["retried"]) for a in activities.values()),
    }


def _activity_figures(histories: list[WorkflowHistory]) -> dict[str, dict[str, float]]:
    """Queue time (scheduled → started) and run time (started → completed) per activity type,
    as the server recorded them, and how many completions came from a retried attempt."""
    queue: dict[str, list[float]] = {}
    run: dict[str, list[float]] = {}
    retried: Counter[str] = Counter()
    for history in histories:
        scheduled: dict[int, tuple[str, datetime]] = {}
        started: dict[int, tuple[datetime, int]] = {}
        for e in history.events:
            at = e.event_time.ToDatetime()
            if e.HasField("activity_task_scheduled_event_attributes"):
                name = e.activity_task_scheduled_event_attributes.activity_type.name
                scheduled[e.event_id] = (name, at)
            elif e.HasField("activity_task_started_event_attributes"):
                a = e.activity_task_started_event_attributes
                started[a.scheduled_event_id] = (at, a.attempt)
            elif e.HasField("activity_task_completed_event_attributes"):
                key = e.activity_task_completed_event_attributes.scheduled_event_id
                name, queued_at = scheduled[key]
                started_at, attempt = started[key]
                queue.setdefault(name, []).append(_ms(started_at - queued_at))
                run.setdefault(name, []).append(_ms(at - started_at))
                if attempt > 1:
                    retried[name] += 1
    return {
        name: {
            "count": len(queue[name]),
            "retried": retried[name],
            "queue_ms_p50": _pct(queue[name], 50),
            "queue_ms_p95": _pct(queue[name], 95),
            "run_ms_p50": _pct(run[name], 50),
            "run_ms_p95": _pct(run[name], 95),
            "run_ms_max": max(run[name]),
            "run_ms_sum": sum(run[name]),
        }
        for name in queue
    }


def _ms(delta: timedelta) -> float:
    return delta.total_seconds() * 1000


def _pct(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, len(ordered) * pct // 100)]


def _cpu_figures(before: CpuSample, after: CpuSample, legs: int) -> dict[str, Any]:
    server = None
    if before.server_s is not None and after.server_s is not None:
        server = (after.server_s - before.server_s) * 1000 / legs
    threads = {
        kind: (after.threads.get(kind, 0.0) - before.threads.get(kind, 0.0)) * 1000 / legs
        for kind in dict.fromkeys([*before.threads, *after.threads])
    }
    return {
        "process_cpu_ms_per_leg": (after.process_s - before.process_s) * 1000 / legs,
        "server_cpu_ms_per_leg": server,
        "cpu_ms_per_leg_by_thread": threads,
    }


async def _bounded(handle: WorkflowHandle[Any, Any], waiting: Awaitable[T], timeout_s: float) -> T:
    """Wait for a result at most ``timeout_s``; on timeout terminate the run and raise."""
    try:
        return await asyncio.wait_for(waiting, timeout_s)
    except TimeoutError:
        await handle.terminate(reason="benchmark run timed out")
        raise TimeoutError(f"{handle.id} did not finish within {timeout_s:.0f} s") from None


async def run_floor(
    client: Client,
    task_queue: str,
    legs: int,
    *,
    variant: str = "floor",
    repeat: int,
    tag: str,
    timeout_s: float,
    server_pids: list[int],
) -> Run:
    workflow_id = f"bench-{variant}-{tag}-{repeat}"
    workflow = FloorWorkflow.run if variant == "floor" else FloorTwoActivitiesWorkflow.run
    before = CpuSample.now(server_pids)
    started = time.perf_counter()
    handle = await client.start_workflow(workflow, legs, id=workflow_id, task_queue=task_queue)
    done = await _bounded(handle, handle.result(), timeout_s)
    wall = time.perf_counter() - started
    after = CpuSample.now(server_pids)
    history = await handle.fetch_history()
    return Run(
        variant=variant,
        repeat=repeat,
        legs=legs,
        batch_size=None,
        workflow_id=workflow_id,
        wall_ms=wall * 1000,
        ms_per_leg=wall * 1000 / legs,
        outcome={"COMPLETED": done},
        **_history_figures([history], legs),
        **_cpu_figures(before, after, legs),
    )


async def run_ours(
    client: Client,
    db: Database,
    settings: Settings,
    book: Book,
    account_ids: list[str] | None,
    *,
    variant: str,
    repeat: int,
    tag: str,
    timeout_s: float,
    server_pids: list[int],
) -> Run:
    legs = len(account_ids) if account_ids is not None else len(book.accounts)
    load(db, book)  # fresh risk state for every run; not timed
    signal = bench_signal(f"bench-{tag}-{variant}-{repeat}", account_ids)
    before = CpuSample.now(server_pids)
    started = time.perf_counter()
    handle = await submit_signal(client, db, settings, signal)
    report: ExecutionReport = await _bounded(handle, handle.result(), timeout_s)
    wall = time.perf_counter() - started
    after = CpuSample.now(server_pids)

    parent = await handle.fetch_history()
    histories = [parent]
    for event in parent.events:
        if event.HasField("child_workflow_execution_started_event_attributes"):
            child = event.child_workflow_execution_started_event_attributes.workflow_execution
            histories.append(await client.get_workflow_handle(child.workflow_id).fetch_history())
    outcome = Counter(a.status.value for a in report.accounts)
    if outcome.get(LegStatus.FILLED.value, 0) != legs:
        logging.warning("%s: not every leg filled: %s", handle.id, dict(outcome))
    return Run(
        variant=variant,
        repeat=repeat,
        legs=legs,
        batch_size=settings.batch_size,
        workflow_id=handle.id,
        wall_ms=wall * 1000,
        ms_per_leg=wall * 1000 / legs,
        outcome=dict(outcome),
        **_history_figures(histories, legs),
        **_cpu_figures(before, after, legs),
    )


# --------------------------------------------------------------------------------------------
# Machine


def _server_pids() -> list[int]:
    """Child processes of this one named ``temporal`` (the dev server the SDK started)."""
    me = os.getpid()
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == me and comm.startswith("temporal"):
            pids.append(int(entry.name))
    return pids


def _cpu_of(pids: list[int]) -> float | None:
    if not pids:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's live threads, by kind: the asyncio event loop (SDK
    plumbing, activity payload conversion, client calls), workflow tasks (the SDK's
    ``temporal_workflow_`` threads: workflow code, sandbox, workflow payload conversion),
    activities (ours and the floor's thread pools: activity code, database) and threads
    Python did not start (the SDK's Rust core)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    main = threading.main_thread().native_id
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for entry in Path("/proc/self/task").iterdir():
        tid = int(entry.name)
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(tid)
        if tid == main:
            kind = "event loop"
        elif name is None:
            kind = "sdk core"
        elif name.startswith("temporal_workflow_"):
            kind = "workflow tasks"
        elif name.startswith(ACTIVITY_THREADS):
            kind = "activities"
        else:
            kind = "other"
        out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return out


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "temporalio": version("temporalio"),
        "temporal_cli": temporal_binary(),
    }


# --------------------------------------------------------------------------------------------
# Report


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(runs: list[Run]) -> dict[str, dict[str, Any]]:
    keys = (
        "wall_ms",
        "ms_per_leg",
        "events_per_leg",
        "workflow_tasks_per_leg",
        "history_bytes",
        "history_json_bytes",
        "history_bytes_per_leg",
        "result_payload_bytes",
        "process_cpu_ms_per_leg",
        "server_cpu_ms_per_leg",
        "ratio",
        "retries",
    )
    out: dict[str, dict[str, Any]] = {}
    for variant in dict.fromkeys(r.variant for r in runs):
        chosen = [r for r in runs if r.variant == variant]
        out[variant] = {k: _median([getattr(r, k) for r in chosen]) for k in keys}
        out[variant]["runs"] = len(chosen)
    floor = out.get("floor", {}).get("ms_per_leg")
    like = out.get(FLOOR_2ACT, {}).get("ms_per_leg")
    for variant, figures in out.items():
        if variant.startswith("ours"):
            figures["ratio_of_medians"] = figures["ms_per_leg"] / floor if floor else None
            figures["ratio_to_floor_2act"] = figures["ms_per_leg"] / like if like else None
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


COLUMNS = (
    ("variant", "<14"),
    ("rep", ">4"),
    ("wall ms", ">9"),
    ("ms/leg", ">7"),
    ("ours/floor", ">10"),
    ("events/leg", ">10"),
    ("WFT/leg", ">8"),
    ("hist KB", ">8"),
    ("B/leg", ">6"),
    ("json KB", ">8"),
    ("result KB", ">9"),
    ("cpu ms/leg", ">10"),
    ("srv cpu/leg", ">11"),
    ("retries", ">7"),
)


def _row(cells: Sequence[str]) -> str:
    return "  ".join(format(c, spec) for c, (_, spec) in zip(cells, COLUMNS, strict=True))


def table(runs: list[Run], summary: dict[str, dict[str, Any]]) -> str:
    lines = [_row([name for name, _ in COLUMNS])]
    lines.append("-" * len(lines[0]))
    order = list(summary)
    for r in sorted(runs, key=lambda r: (r.repeat, order.index(r.variant))):
        lines.append(
            _row(
                [
                    r.variant,
                    str(r.repeat),
                    f"{r.wall_ms:.0f}",
                    f"{r.ms_per_leg:.2f}",
                    _fmt(r.ratio, ".2f"),
                    f"{r.events_per_leg:.2f}",
                    f"{r.workflow_tasks_per_leg:.3f}",
                    f"{r.history_bytes / 1024:.0f}",
                    f"{r.history_bytes_per_leg:.0f}",
                    f"{r.history_json_bytes / 1024:.0f}",
                    f"{r.result_payload_bytes / 1024:.1f}",
                    f"{r.process_cpu_ms_per_leg:.2f}",
                    _fmt(r.server_cpu_ms_per_leg, ".2f"),
                    str(r.retries),
                ]
            )
        )
    lines.append("-" * len(lines[0]))
    for variant, s in summary.items():
        lines.append(
            _row(
                [
                    variant,
                    "med",
                    f"{s['wall_ms']:.0f}",
                    f"{s['ms_per_leg']:.2f}",
                    _fmt(s["ratio"], ".2f"),
                    f"{s['events_per_leg']:.2f}",
                    f"{s['workflow_tasks_per_leg']:.3f}",
                    f"{s['history_bytes'] / 1024:.0f}",
                    f"{s['history_bytes_per_leg']:.0f}",
                    f"{s['history_json_bytes'] / 1024:.0f}",
                    f"{s['result_payload_bytes'] / 1024:.1f}",
                    f"{s['process_cpu_ms_per_leg']:.2f}",
                    _fmt(s["server_cpu_ms_per_leg"], ".2f"),
                    _fmt(s["retries"], ".0f"),
                ]
            )
        )
    return "\n".join(lines)


def breakdown(runs: list[Run]) -> str:
    """From the last run of each variant: events and bytes per leg by event type, CPU per leg
    by thread kind, and the activities' queue and run times."""
    last = {r.variant: r for r in runs}
    names = sorted({n for r in last.values() for n in r.event_types})
    width = max(len(n) for n in names)
    head = f"{'per leg (last repeat)':<{width}}  " + "  ".join(
        f"{v + ' n':>16}  {'B':>6}" for v in last
    )
    lines = [head, "-" * len(head)]
    for name in names:
        cells = "  ".join(
            f"{r.event_types.get(name, 0) / r.legs:>16.3f}  "
            f"{r.event_bytes.get(name, 0) / r.legs:>6.0f}"
            for r in last.values()
        )
        lines.append(f"{name:<{width}}  {cells}")
    kinds = sorted({k for r in last.values() for k in r.cpu_ms_per_leg_by_thread})
    lines += [
        "",
        f"{'CPU ms per leg, this process':<{width}}  " + "  ".join(f"{v:>24}" for v in last),
    ]
    for kind in kinds:
        cells = "  ".join(
            f"{r.cpu_ms_per_leg_by_thread.get(kind, 0.0):>24.2f}" for r in last.values()
        )
        lines.append(f"{kind:<{width}}  {cells}")
    server = "  ".join(f"{_fmt(r.server_cpu_ms_per_leg, '.2f'):>24}" for r in last.values())
    lines.append(f"{'(dev server)':<{width}}  {server}")
    lines += [
        "",
        f"{'activity (last repeat)':<{width}}  {'variant':>12}  {'count':>6}  {'retried':>7}"
        f"  {'queue p50/p95 ms':>16}  {'run p50/p95/max ms':>20}",
    ]
    for r in last.values():
        for name, a in r.activities.items():
            lines.append(
                f"{name:<{width}}  {r.variant:>12}  {a['count']:>6.0f}  {a['retried']:>7.0f}  "
                f"{a['queue_ms_p50']:>7.0f}/{a['queue_ms_p95']:<8.0f}  "
                f"{a['run_ms_p50']:>7.0f}/{a['run_ms_p95']:.0f}/{a['run_ms_max']:.0f}"
            )
    lines += ["", "largest events (last repeat)"]
    for r in last.values():
        for e in r.largest_events[:3]:
            lines.append(f"  {r.variant:<12} {e['bytes'] / 1024:>8.1f} KB  {e['type']} ({e['of']})")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Main


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    legs: int = args.legs
    tag = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    timeout_s = args.run_timeout or 120 + 0.5 * legs
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        fresh = args.database_url is None
        url = args.database_url or f"sqlite:///{Path(tmp) / 'orchestrator.db'}"
        db = Database(url)
        db.migrate()
        ids = [f"bench-{i:05d}" for i in range(1, legs + 1)]
        book = bench_book(ids)
        # A fresh database holds only the bench book: the signal covers the whole book, as a
        # real one does. A given database may hold other accounts: restrict to ours.
        scope = None if fresh else ids
        env = await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter,
            dev_server_existing_path=temporal_binary(),
            search_attributes=search_attributes.ALL,
            ip="127.0.0.1",
            dev_server_log_level="error",
        )
        try:
            client = env.client
            server_pids = _server_pids()
            base: dict[str, Any] = {
                "temporal_address": client.service_client.config.target_host,
                "task_queue": f"bench-ours-{tag}",
                "database_url": url,
                "delay_min_s": Decimal(0),
                "delay_max_s": Decimal(0),
            }
            inline_batch = min(legs, 1000)  # the field's upper bound
            inline = Settings.model_validate({**base, "batch_size": inline_batch})
            default_batch = Settings.model_validate(base)
            variants = [
                ("ours-inline" if inline_batch >= legs else "ours-b1000", inline),
                (f"ours-b{default_batch.batch_size}", default_batch),
            ]
            floor_queue = f"bench-floor-{tag}"
            slots = inline.max_concurrent_activities
            with (
                ThreadPoolExecutor(slots, f"{ACTIVITY_THREADS}-ours") as ours_pool,
                ThreadPoolExecutor(slots, f"{ACTIVITY_THREADS}-floor") as floor_pool,
            ):
                floor_worker = Worker(
                    client,
                    task_queue=floor_queue,
                    workflows=[FloorWorkflow, FloorTwoActivitiesWorkflow],
                    activities=[noop],
                    activity_executor=floor_pool,
                    max_concurrent_activities=slots,
                    max_cached_workflows=2000,
                )
                ours_worker = build_worker(client, inline, build_activities(db, inline), ours_pool)
                async with floor_worker, ours_worker:
                    print(f"warm-up ({min(legs, WARMUP_LEGS)} legs each) …", flush=True)
                    for warm in ("floor", FLOOR_2ACT):
                        await run_floor(
                            client,
                            floor_queue,
                            min(legs, WARMUP_LEGS),
                            variant=warm,
                            repeat=0,
                            tag=tag,
                            timeout_s=timeout_s,
                            server_pids=server_pids,
                        )
                    await run_ours(
                        client,
                        db,
                        inline,
                        book,
                        ids[:WARMUP_LEGS],
                        variant="warmup",
                        repeat=0,
                        tag=tag,
                        timeout_s=timeout_s,
                        server_pids=server_pids,
                    )
                    for repeat in range(1, args.repeats + 1):
                        floor = await run_floor(
                            client,
                            floor_queue,
                            legs,
                            repeat=repeat,
                            tag=tag,
                            timeout_s=timeout_s,
                            server_pids=server_pids,
                        )
                        runs.append(floor)
                        print(f"repeat {repeat}: floor {floor.ms_per_leg:.2f} ms/leg", flush=True)
                        like = await run_floor(
                            client,
                            floor_queue,
                            legs,
                            variant=FLOOR_2ACT,
                            repeat=repeat,
                            tag=tag,
                            timeout_s=timeout_s,
                            server_pids=server_pids,
                        )
                        like.ratio = like.ms_per_leg / floor.ms_per_leg
                        runs.append(like)
                        print(
                            f"repeat {repeat}: {FLOOR_2ACT} {like.ms_per_leg:.2f} ms/leg",
                            flush=True,
                        )
                        for variant, settings in variants:
                            run = await run_ours(
                                client,
                                db,
                                settings,
                                book,
                                scope,
                                variant=variant,
                                repeat=repeat,
                                tag=tag,
                                timeout_s=timeout_s,
                                server_pids=server_pids,
                            )
                            run.ratio = run.ms_per_leg / floor.ms_per_leg
                            runs.append(run)
                            print(
                                f"repeat {repeat}: {variant} {run.ms_per_leg:.2f} ms/leg",
                                flush=True,
                            )
        finally:
            await env.shutdown()
            db.dispose()
    return {
        "tag": tag,
        "legs": legs,
        "repeats": args.repeats,
        "database": "sqlite (fresh temp file)" if fresh else _redact(url),
        "signal_scope": "whole book" if scope is None else "account_ids",
        "settings": {
            "delay_min_s": 0,
            "delay_max_s": 0,
            "batch_sizes": {v: s.batch_size for v, s in variants},
            "max_concurrent_activities": slots,
            "activity_threads": slots,
            "max_cached_workflows": 2000,
        },
        "runs": runs,
    }


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--legs", type=int, default=500, help="accounts / legs (default 500)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument(
        "--database-url",
        default=None,
        help="SQLAlchemy URL (sqlite:///… or postgresql+psycopg://…); "
        "default: a fresh SQLite file in a temporary directory",
    )
    parser.add_argument(
        "--run-timeout",
        type=float,
        default=None,
        help="seconds one run may take before it is terminated (default 120 + 0.5 × legs)",
    )
    args = parser.parse_args(argv)
    if args.legs < 1 or args.repeats < 1:
        parser.error("--legs and --repeats must be at least 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    host = machine()
    print(
        f"machine: nproc {host['nproc']} ({host['cpu_model'] or 'unknown cpu'}), "
        f"python {host['python']}, temporalio {host['temporalio']}, {host['platform']}",
        flush=True,
    )
    result = await bench(args)
    runs: list[Run] = result["runs"]
    summary = summarize(runs)

    print()
    print(
        f"{args.legs} legs × {args.repeats} repeats, database {result['database']}, "
        f"signal scope {result['signal_scope']}, batch sizes {result['settings']['batch_sizes']}"
    )
    print(table(runs, summary))
    print(
        "ours/floor: ms/leg ÷ the same repeat's floor (med: median of those ratios); "
        "hist KB / B/leg: protobuf size of all events (children included); json KB: "
        "WorkflowHistory.to_json(); cpu: this process (worker, activities, database), "
        "srv: dev server; retries: activity completions from attempt > 1"
    )
    for variant, figures in summary.items():
        if variant.startswith("ours"):
            print(
                f"{variant}: median ms/leg ÷ floor {_fmt(figures['ratio_of_medians'], '.2f')}, "
                f"÷ {FLOOR_2ACT} (same shape: 2 activities, no timer) "
                f"{_fmt(figures['ratio_to_floor_2act'], '.2f')}"
            )
    print()
    print(breakdown(runs))

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"overhead-{result['tag']}.json"
    document = {
        **{k: v for k, v in result.items() if k != "runs"},
        "machine": host,
        "summary": summary,
        "runs": [asdict(r) for r in runs],
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

"""The signal workflow against a bare Temporal floor: per-leg overhead by signal size,
throughput, replay and the worker's own costs (issue 8). A benchmark, not a test.

    python -m bench.overhead [--legs 10,100,500,1000,5000] [--repeats 3] [--repeats-large 1]
                             [--throughput-seconds 120] [--in-flight 20]
                             [--throughput-timeout 60] [--database-url postgres|sqlite|URL]
                             [--run-timeout S]

Setup. One process holds an embedded Temporal dev server (127.0.0.1, in memory, the project's
data converter) and, side by side, two workers:

* **floor**: ``bench.floor.FloorWorkflow``, per leg a zero-length timer and one no-op activity,
  all legs gathered in one workflow. What any leg costs on Temporal at the least. The dev
  server fires a zero-length timer about a second late (the detail shows timer started → fired),
  so at small N the floor's wall time is mostly that second and ours/floor can fall below 1.
* **ours**: the project's real worker (``build_worker`` + ``build_activities``, its thread pool
  of ``max_concurrent_activities``) running ``SignalExecutionWorkflow`` with the default
  ``batch_size`` of ``Settings`` (legs per batch child; the table header says which), zero
  delays, every account eligible, and a broker that fills at once: ``--broker memory`` (the
  default, ``bench.memory_broker``) or ``--broker paper`` (the project's ``PaperBroker``, whose
  book lives in the database: the simulator's own three transactions per order). The ledger
  (reservation, order, fills, settlement) is always the real one. Signals go in through
  ``orchestrator.services.submit.submit_signal``.

Per N (``--legs``, a comma list, run in ascending order). One signal of N accounts against the
floor with N legs, side by side in the same run; for N <= 1000 also ``floor-2act`` (per leg two
no-op activities in sequence, no timer: a reference without the floor's timer). The book grows
with N (the first N bench accounts) and the signal covers the whole book, as a real one does
(with a given ``--database-url`` that may hold other accounts, the signal names its accounts).
Repeats: ``--repeats`` (default 3) for N <= 1000, ``--repeats-large`` (default 1) above; medians
are reported. Per N: wall time per leg (submission to result), workflow tasks, history events
and bytes per leg (protobuf size of every event of the parent and all its children), the ratio
ours/floor (median of the per-repeat ratios), the number of histories (parent + children), the
largest single history (events, bytes), the largest payload in any event (bytes of one
``Payload``), and CPU per leg: this process (workers, activities, database client, bench), the
dev server and PostgreSQL (every ``postgres`` process on the machine).

Outcome check. Every run of ours is checked in the database ledger, not in the report (a large
signal's report is a summary whose per-account lines live in the batch children): the orders
of the signal by status. Fewer FILLED orders than legs is logged as a warning and recorded.

Throughput. For ``--throughput-seconds`` (default 120; 0 skips it), a closed loop of
``--in-flight`` lanes (default 20): each lane submits a signal of 10 accounts, waits for its
result and submits the next, so exactly that many signals are in flight. Each lane owns 10
accounts with generous limits (positions, daily budget, free margin), so no two signals in flight
share an account and no leg is denied however many signals an account takes. Submission stops at
the deadline; the signals then in flight get at most ``--throughput-timeout`` seconds (also the
bound of any one signal; a late one is terminated) and are reported separately. Signals/s and
legs/s count only signals completed inside the window. The same for bare floor workflows of 10
floor legs with the same lanes, and the ratio ours/floor of signals/s. The completed signals'
FILLED orders are counted in the ledger.

Replay. The largest N's signal (its last repeat: parent and every child, grandchildren
included) is fetched and replayed with ``temporalio.worker.Replayer``, the project's workflows
(``workflows.registry.WORKFLOWS``) and data converter; seconds and ms per leg (fetching is not
timed).

Worker. Peak RSS of this process (``ru_maxrss``; it holds the dev server's client, both workers,
the bench and the fetched histories, not the dev server itself), taken before and after the
in-process timings below. Planning time: ``plan_signal`` on a synthetic snapshot of 5,000
accounts, with a realistic correlation result (a fifth of the accounts in groups of 5) and with
an empty one, default plan settings; median of 3. Correlation time for 5,000 accounts x 250 days
from ``bench.correlation_timing.time_correlation`` (reported as missing if it cannot be
imported).

Database. Default (``postgres``): a fresh PostgreSQL database ``bench_<tag>`` on 127.0.0.1:5432
(user postgres, trust auth), created at the start, migrated, dropped at the end (also on
failure). ``sqlite``: a fresh SQLite file in a temporary directory. Any other value is used as a
SQLAlchemy URL as is (not created, migrated to head, not dropped).

Output. A table with one row per N, then throughput, replay, RSS, planning and correlation, and
the detail of the largest N (events by type, CPU by thread, activity times, largest events);
everything in ``bench-results/overhead-<tag>.json``. Every run is bounded (``--run-timeout``,
default 120 s + 0.5 s x N; a run past it is terminated) and every loop bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import importlib
import json
import logging
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from psycopg import sql
from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from bench.book import BROKER, SPEC, SYMBOL, bench_account, bench_book
from bench.floor import FloorTwoActivitiesWorkflow, FloorWorkflow, noop
from bench.memory_broker import MemoryBroker
from orchestrator.adapters.book_file import Book
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import OrderRow
from orchestrator.adapters.temporal import data_converter, temporal_binary
from orchestrator.config import PROJECT_ROOT, Settings
from orchestrator.domain import search_attributes
from orchestrator.domain.book import AccountSnapshot, AccountStatus, BookSnapshot, Mandate, spec_key
from orchestrator.domain.correlation import AccountCorrelation, CorrelationResult
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.planning import plan_signal
from orchestrator.domain.signal import Signal
from orchestrator.services.history import fetch_with_children
from orchestrator.services.submit import submit_signal
from worker import build_activities, build_worker, worker_database
from workflows.registry import WORKFLOWS

T = TypeVar("T")

RESULTS_DIR = PROJECT_ROOT / "bench-results"
DEFAULT_LEGS = "10,100,500,1000,5000"
LARGE = 1000
"""Above this many legs: ``--repeats-large`` repeats and no floor-2act."""
WARMUP_LEGS = 50
THROUGHPUT_LEGS = 10
FAILURES_PER_LANE = 20
"""A throughput lane stops after this many failed signals (bounds a failing loop)."""
PLANNING_ACCOUNTS = 5000
CORRELATION_ACCOUNTS = 5000
CORRELATION_DAYS = 250
CORRELATION_SEED = 8
FLOOR = "floor"
FLOOR_2ACT = "floor-2act"
OURS = "ours"
ACTIVITY_THREADS = "bench-activity"
"""Name prefix of the activity threads (both workers), to tell their CPU apart."""
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


# --------------------------------------------------------------------------------------------
# The book: N accounts, all eligible, all filled at once by the paper broker


FRESH_STATE = repository.StateReplacement(
    operator="bench", reason="fresh risk state for every run", source="bench book"
)


def load(db: Database, book: Book) -> None:
    """(Re)write the book, replacing the state of accounts already loaded: each account's
    committed risk, margin and positions start again from the book's."""
    with db.transaction() as session:
        repository.save_book(session, book, datetime.now(UTC), replace_state=FRESH_STATE)


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


def ledger_orders(db: Database, signal_id: str) -> dict[str, int]:
    """The signal's orders in the ledger, by status."""
    with db.transaction() as session:
        rows = session.execute(
            select(OrderRow.status, func.count())
            .where(OrderRow.signal_id == signal_id)
            .group_by(OrderRow.status)
        ).tuples()
        return {status: count for status, count in rows}


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


# --------------------------------------------------------------------------------------------
# The database


@dataclass(frozen=True)
class BenchDb:
    url: str
    label: str
    """Which database ran, for the table header."""
    fresh: bool
    """Holds nothing but what the bench loads."""


@contextmanager
def bench_database(choice: str, tag: str, tmp: Path) -> Iterator[BenchDb]:
    """``postgres``: create ``bench_<tag>`` on 127.0.0.1:5432 and drop it afterwards (also on
    failure); ``sqlite``: a file in ``tmp``; anything else: that URL, as is."""
    if choice == "postgres":
        name = f"bench_{tag.lower()}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield BenchDb(
                PG_URL.format(name=name),
                f"PostgreSQL {_pg_version()} (fresh database {name} on 127.0.0.1:5432)",
                fresh=True,
            )
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
    elif choice == "sqlite":
        yield BenchDb(f"sqlite:///{tmp / 'orchestrator.db'}", "SQLite (fresh temp file)", True)
    else:
        yield BenchDb(choice, f"given: {_redact(choice)}", fresh=False)


def _pg_version() -> str:
    with psycopg.connect(PG_ADMIN) as admin:
        row = admin.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else "?"


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


# --------------------------------------------------------------------------------------------
# Measurements of one run


@dataclass
class CpuSample:
    process_s: float
    server_s: float | None
    threads: dict[str, float]
    database_s: float | None = None
    """Every ``postgres`` process on the machine (backends, WAL writer, checkpointer)."""

    @staticmethod
    def now(server_pids: list[int]) -> CpuSample:
        return CpuSample(
            process_s=time.process_time(),
            server_s=_cpu_of(server_pids),
            threads=_thread_cpu(),
            database_s=_cpu_of(_postgres_pids(), vanished_ok=True),
        )


@dataclass
class Run:
    variant: str
    legs: int
    repeat: int
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
    history_bytes_per_leg: float
    histories: int
    """Parent and every child (grandchildren included)."""
    largest_history_events: int
    largest_history_bytes: int
    largest_history: str
    """Workflow id of the history with the most bytes."""
    largest_event_bytes: int
    largest_events: list[dict[str, Any]]
    """The five largest events: size, type and activity type (or workflow id)."""
    largest_payload_bytes: int
    """The largest single ``Payload`` (data and metadata) in any event of any history."""
    largest_payload: dict[str, Any]
    result_payload_bytes: int
    server_span_ms: float
    """First to last event time of the top-level history, as recorded by the server."""
    process_cpu_ms_per_leg: float
    server_cpu_ms_per_leg: float | None
    cpu_ms_per_leg_by_thread: dict[str, float]
    database_cpu_ms_per_leg: float | None
    """PostgreSQL's processes (``None`` on SQLite, which runs in this process)."""
    """This process's CPU by kind of thread (see ``_thread_cpu``)."""
    ledger: dict[str, int] | None = None
    """Ours: the signal's orders in the database by status."""
    filled_orders: int | None = None
    event_types: dict[str, int] = field(default_factory=dict)
    event_bytes: dict[str, int] = field(default_factory=dict)
    activities: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per activity type: count, retried attempts, queue and run times (ms) from history."""
    timers: dict[str, float] = field(default_factory=dict)
    """Timers started, and started → fired (ms) as the server recorded them."""
    retries: int = 0
    """Activity completions that came from a retried attempt (attempt > 1)."""
    ratio: float | None = None
    """ms/leg ÷ the same repeat's floor."""


def _event_name(event: HistoryEvent) -> str:
    return EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")


PAYLOAD = "temporal.api.common.v1.Payload"
_HOLDS_PAYLOAD: dict[str, bool] = {}


def _holds_payload(descriptor: Descriptor) -> bool:
    """Whether a message of this type can contain a ``Payload`` (memoized; a type met again
    while it is being decided counts as not holding one, which only prunes a cycle)."""
    name = descriptor.full_name
    if name not in _HOLDS_PAYLOAD:
        _HOLDS_PAYLOAD[name] = False
        _HOLDS_PAYLOAD[name] = name == PAYLOAD or any(
            f.message_type is not None and _holds_payload(f.message_type) for f in descriptor.fields
        )
    return _HOLDS_PAYLOAD[name]


def _payload_sizes(message: Message) -> Iterator[int]:
    """The serialized size of every ``Payload`` inside ``message`` (inputs, results, details,
    headers, memos, search attributes, failures)."""
    if message.DESCRIPTOR.full_name == PAYLOAD:
        yield message.ByteSize()
        return
    for fd, value in message.ListFields():
        kind = fd.message_type
        if fd.type != FieldDescriptor.TYPE_MESSAGE or kind is None or not _holds_payload(kind):
            continue
        if kind.GetOptions().map_entry:
            for item in value.values():
                if isinstance(item, Message):
                    yield from _payload_sizes(item)
        elif fd.is_repeated:
            for item in value:
                yield from _payload_sizes(item)
        else:
            yield from _payload_sizes(value)


def _history_figures(histories: Sequence[WorkflowHistory], legs: int) -> dict[str, Any]:
    types: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    events: list[tuple[int, str, str]] = []
    payload = (0, "", "")
    per_history: list[tuple[int, int, str]] = []
    for history in histories:
        names: dict[int, str] = {}
        history_bytes = 0
        for e in history.events:
            kind = _event_name(e)
            size = e.ByteSize()
            types[kind] += 1
            sizes[kind] += size
            history_bytes += size
            detail = history.workflow_id
            if e.HasField("activity_task_scheduled_event_attributes"):
                names[e.event_id] = e.activity_task_scheduled_event_attributes.activity_type.name
                detail = names[e.event_id]
            elif e.HasField("activity_task_completed_event_attributes"):
                scheduled = e.activity_task_completed_event_attributes.scheduled_event_id
                detail = names.get(scheduled, history.workflow_id)
            events.append((size, kind, detail))
            for payload_size in _payload_sizes(e):
                if payload_size > payload[0]:
                    payload = (payload_size, kind, detail)
        per_history.append((history_bytes, len(history.events), history.workflow_id))
    total = sum(b for b, _, _ in per_history)
    count = sum(n for _, n, _ in per_history)
    largest_bytes, largest_events, largest_id = max(per_history)
    top = histories[0].events
    result_bytes = 0
    if top[-1].HasField("workflow_execution_completed_event_attributes"):
        payloads = top[-1].workflow_execution_completed_event_attributes.result.payloads
        result_bytes = sum(p.ByteSize() for p in payloads)
    span = top[-1].event_time.ToDatetime() - top[0].event_time.ToDatetime()
    wft = types.get("WORKFLOW_TASK_COMPLETED", 0)
    activities = _activity_figures(histories)
    return {
        "events": count,
        "events_per_leg": count / legs,
        "workflow_tasks": wft,
        "workflow_tasks_per_leg": wft / legs,
        "history_bytes": total,
        "history_bytes_per_leg": total / legs,
        "histories": len(histories),
        "largest_history_events": max(n for _, n, _ in per_history),
        "largest_history_bytes": largest_bytes,
        "largest_history": f"{largest_id} ({largest_events} events)",
        "largest_event_bytes": max(size for size, _, _ in events),
        "largest_events": [
            {"bytes": size, "type": kind, "of": detail}
            for size, kind, detail in heapq.nlargest(5, events)
        ],
        "largest_payload_bytes": payload[0],
        "largest_payload": {"bytes": payload[0], "event": payload[1], "of": payload[2]},
        "result_payload_bytes": result_bytes,
        "server_span_ms": _ms(span),
        "event_types": dict(types.most_common()),
        "event_bytes": dict(sizes.most_common()),
        "activities": activities,
        "timers": _timer_figures(histories),
        "retries": sum(int(a["retried"]) for a in activities.values()),
    }


def _timer_figures(histories: Sequence[WorkflowHistory]) -> dict[str, float]:
    """How long the server took to fire the timers (the floor's are zero-length)."""
    fired: list[float] = []
    count = 0
    for history in histories:
        started: dict[int, datetime] = {}
        for e in history.events:
            if e.HasField("timer_started_event_attributes"):
                count += 1
                started[e.event_id] = e.event_time.ToDatetime()
            elif e.HasField("timer_fired_event_attributes"):
                at = started.get(e.timer_fired_event_attributes.started_event_id)
                if at is not None:
                    fired.append(_ms(e.event_time.ToDatetime() - at))
    if not fired:
        return {"count": count}
    return {
        "count": count,
        "fire_ms_p50": _pct(fired, 50),
        "fire_ms_p95": _pct(fired, 95),
        "fire_ms_max": max(fired),
    }


def _activity_figures(histories: Sequence[WorkflowHistory]) -> dict[str, dict[str, float]]:
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
                if key not in scheduled or key not in started:
                    continue
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


def _pct(values: Sequence[float], pct: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, len(ordered) * pct // 100)]


def _cpu_figures(before: CpuSample, after: CpuSample, legs: int) -> dict[str, Any]:
    server = _per(before.server_s, after.server_s, legs)
    threads = {
        kind: (after.threads.get(kind, 0.0) - before.threads.get(kind, 0.0)) * 1000 / legs
        for kind in dict.fromkeys([*before.threads, *after.threads])
    }
    return {
        "process_cpu_ms_per_leg": (after.process_s - before.process_s) * 1000 / legs,
        "server_cpu_ms_per_leg": server,
        "cpu_ms_per_leg_by_thread": threads,
        "database_cpu_ms_per_leg": _per(before.database_s, after.database_s, legs),
    }


def _per(before: float | None, after: float | None, count: int) -> float | None:
    """CPU milliseconds per item between two samples of seconds (``None`` if either is)."""
    if before is None or after is None or count == 0:
        return None
    return (after - before) * 1000 / count


async def _bounded(handle: WorkflowHandle[Any, Any], waiting: Awaitable[T], timeout_s: float) -> T:
    """Wait for a result at most ``timeout_s``; on timeout terminate the run and raise."""
    try:
        return await asyncio.wait_for(waiting, timeout_s)
    except TimeoutError:
        await handle.terminate(reason="benchmark run timed out")
        raise TimeoutError(f"{handle.id} did not finish within {timeout_s:g} s") from None


@dataclass(frozen=True)
class Context:
    """What every run needs."""

    client: Client
    db: Database
    settings: Settings
    floor_queue: str
    tag: str
    server_pids: list[int]


FLOOR_MAX_LEGS = 1000
"""Legs per floor workflow at most. One workflow cannot hold 5,000 floor legs: Temporal allows
2,000 pending activities per workflow, and the dev server failed to persist 5,000 timers
started in one workflow task ("too many SQL variables"). A larger floor runs as several
workflows of at most this many legs, started together and timed as one."""


async def run_floor(ctx: Context, legs: int, *, variant: str, repeat: int, timeout_s: float) -> Run:
    workflow_id = f"bench-{variant}-{ctx.tag}-n{legs}-r{repeat}"
    workflow = FloorWorkflow.run if variant == FLOOR else FloorTwoActivitiesWorkflow.run
    parts = [min(FLOOR_MAX_LEGS, legs - i) for i in range(0, legs, FLOOR_MAX_LEGS)]
    ids = [workflow_id] if len(parts) == 1 else [f"{workflow_id}-p{n}" for n in range(len(parts))]
    before = CpuSample.now(ctx.server_pids)
    started = time.perf_counter()
    handles = [
        await ctx.client.start_workflow(workflow, n, id=wid, task_queue=ctx.floor_queue)
        for wid, n in zip(ids, parts, strict=True)
    ]
    for handle in handles:
        await _bounded(handle, handle.result(), timeout_s)
    wall = time.perf_counter() - started
    after = CpuSample.now(ctx.server_pids)
    histories = [await handle.fetch_history() for handle in handles]
    return Run(
        variant=variant,
        legs=legs,
        repeat=repeat,
        batch_size=FLOOR_MAX_LEGS if len(parts) > 1 else None,
        workflow_id=workflow_id,
        wall_ms=wall * 1000,
        ms_per_leg=wall * 1000 / legs,
        **_history_figures(histories, legs),
        **_cpu_figures(before, after, legs),
    )


async def run_ours(
    ctx: Context,
    book: Book,
    account_ids: list[str] | None,
    *,
    repeat: int,
    timeout_s: float,
    variant: str = OURS,
) -> Run:
    legs = len(account_ids) if account_ids is not None else len(book.accounts)
    await asyncio.to_thread(load, ctx.db, book)  # fresh risk state for every run; not timed
    signal_id = f"bench-{ctx.tag}-{variant}-n{legs}-r{repeat}"
    signal = bench_signal(signal_id, account_ids)
    before = CpuSample.now(ctx.server_pids)
    started = time.perf_counter()
    handle = await submit_signal(ctx.client, ctx.db, ctx.settings, signal)
    await _bounded(handle, handle.result(), timeout_s)
    wall = time.perf_counter() - started
    after = CpuSample.now(ctx.server_pids)

    histories = await fetch_with_children(ctx.client, handle.id)
    ledger = await asyncio.to_thread(ledger_orders, ctx.db, signal_id)
    filled = ledger.get(OrderStatus.FILLED.value, 0)
    if filled != legs:
        logging.warning(
            "%s: %d of %d legs FILLED in the ledger: %s", handle.id, filled, legs, ledger
        )
    return Run(
        variant=variant,
        legs=legs,
        repeat=repeat,
        batch_size=ctx.settings.batch_size,
        workflow_id=handle.id,
        wall_ms=wall * 1000,
        ms_per_leg=wall * 1000 / legs,
        ledger=ledger,
        filled_orders=filled,
        **_history_figures(histories, legs),
        **_cpu_figures(before, after, legs),
    )


# --------------------------------------------------------------------------------------------
# Throughput


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
                await _bounded(handle, handle.result(), timeout_s)
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
        out.latency_ms_p50 = _pct(latencies, 50)
        out.latency_ms_p95 = _pct(latencies, 95)
        out.latency_ms_max = max(latencies)
    completed = out.completed_in_window + out.completed_after_window
    if completed:
        out.process_cpu_ms_per_signal = (after.process_s - before.process_s) * 1000 / completed
        out.server_cpu_ms_per_signal = _per(before.server_s, after.server_s, completed)
        out.database_cpu_ms_per_signal = _per(before.database_s, after.database_s, completed)
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
            THROUGHPUT_LEGS,
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


# --------------------------------------------------------------------------------------------
# Replay, planning, correlation


async def time_replay(
    client: Client, workflow_id: str, legs: int, converter: DataConverter
) -> dict[str, Any]:
    """Fetch the run and all its children, then time their replay with the project's
    workflows and data converter (fetching not timed)."""
    histories = await fetch_with_children(client, workflow_id)

    async def feed() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    replayer = Replayer(workflows=WORKFLOWS, data_converter=converter)
    started = time.perf_counter()
    results = await replayer.replay_workflows(feed(), raise_on_replay_failure=False)
    seconds = time.perf_counter() - started
    failures = {run: f"{type(e).__name__}: {e}"[:300] for run, e in results.replay_failures.items()}
    if failures:
        logging.warning("replay of %s: %d histories failed", workflow_id, len(failures))
    return {
        "workflow_id": workflow_id,
        "legs": legs,
        "histories": len(histories),
        "events": sum(len(h.events) for h in histories),
        "seconds": seconds,
        "ms_per_leg": seconds * 1000 / legs,
        "failures": failures,
    }


def planning_inputs(accounts: int) -> tuple[Signal, BookSnapshot, CorrelationResult]:
    """A snapshot of ``accounts`` eligible accounts, and a correlation result with a fifth of
    them in groups of 5 (the rest uncorrelated)."""
    now = datetime.now(UTC)
    equity = Decimal(50000)
    ids = [f"plan-{i:05d}" for i in range(accounts)]
    snapshot = BookSnapshot(
        symbol=SYMBOL,
        taken_at=now,
        accounts=[
            AccountSnapshot(
                account_id=account_id,
                broker=BROKER,
                currency="USD",
                status=AccountStatus.ACTIVE,
                limits=bench_account(account_id).limits,
                mandate=Mandate(),
                broker_symbol=SYMBOL,
                balance=equity,
                equity=equity,
                peak_equity=equity,
                free_margin=equity,
                open_positions=0,
                realized_loss_today=Decimal(0),
                risk_committed_today=Decimal(0),
                as_of=now,
            )
            for account_id in ids
        ],
        specs={spec_key(BROKER, SYMBOL): SPEC},
    )
    grouped = accounts // 5
    correlation = CorrelationResult(
        threshold=Decimal("0.7"),
        accounts=[
            AccountCorrelation(
                account_id=account_id,
                group=f"g{i // 5}" if i < grouped else None,
                max_correlation=Decimal("0.85") if i < grouped else Decimal("0.2"),
                peers=(
                    [ids[j] for j in range(i // 5 * 5, i // 5 * 5 + 5) if j != i]
                    if i < grouped
                    else []
                ),
                observations=60,
                insufficient_history=False,
            )
            for i, account_id in enumerate(ids)
        ],
    )
    return bench_signal("bench-planning", None), snapshot, correlation


def time_planning(accounts: int, repeats: int = 3) -> dict[str, Any]:
    """``plan_signal`` on ``accounts`` accounts with the realistic and an empty correlation."""
    signal, snapshot, correlation = planning_inputs(accounts)
    empty = CorrelationResult(threshold=correlation.threshold, accounts=[])
    settings = Settings().plan_settings()
    out: dict[str, Any] = {"accounts": accounts, "settings": "the default settings"}
    for name, result in (("correlated", correlation), ("empty_correlation", empty)):
        runs: list[float] = []
        legs = denials = 0
        for _ in range(repeats):
            started = time.perf_counter()
            plan = plan_signal(signal, snapshot, result, settings, datetime.now(UTC))
            runs.append(time.perf_counter() - started)
            legs, denials = len(plan.legs), len(plan.denials)
        out[name] = {"median_s": statistics.median(runs), "runs_s": runs}
        out[name] |= {"legs": legs, "denials": denials}
    out["correlation_input"] = f"{accounts // 5} accounts in groups of 5, the rest uncorrelated"
    return out


def time_correlation_or_missing() -> dict[str, Any]:
    try:
        module = importlib.import_module("bench.correlation_timing")
        timer: Callable[..., dict[str, Any]] = module.time_correlation
    except (ImportError, AttributeError) as err:
        return {"missing": f"bench.correlation_timing.time_correlation: {err}"}
    result = timer(accounts=CORRELATION_ACCOUNTS, days=CORRELATION_DAYS, seed=CORRELATION_SEED)
    return dict(result)


def _guarded(name: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one of the in-process timings; a failure is reported, not fatal (the per-N figures
    are already measured by then)."""
    try:
        return work()
    except Exception as err:
        logging.exception("%s failed", name)
        return {"error": f"{type(err).__name__}: {err}"}


def peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


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


def _postgres_pids() -> list[int]:
    """Every process named ``postgres`` (the server and its backends). A backend that exits
    between two samples takes its CPU with it; the worker's pool keeps its connections."""
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("postgres"):
            pids.append(int(entry.name))
    return pids


def _cpu_of(pids: list[int], *, vanished_ok: bool = False) -> float | None:
    """CPU seconds of the processes; ``None`` if there are none, or one is gone and
    ``vanished_ok`` is false."""
    if not pids:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            if vanished_ok:
                continue
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


MEDIAN_KEYS = (
    "wall_ms",
    "ms_per_leg",
    "events_per_leg",
    "workflow_tasks_per_leg",
    "history_bytes",
    "history_bytes_per_leg",
    "result_payload_bytes",
    "process_cpu_ms_per_leg",
    "server_cpu_ms_per_leg",
    "database_cpu_ms_per_leg",
    "ratio",
    "retries",
)
MAX_KEYS = ("histories", "largest_history_events", "largest_history_bytes", "largest_payload_bytes")


def summarize(runs: list[Run]) -> dict[int, dict[str, dict[str, Any]]]:
    """Per N, per variant: medians over the repeats (the largest figures: their maximum)."""
    out: dict[int, dict[str, dict[str, Any]]] = {}
    for legs in sorted({r.legs for r in runs}):
        of_n = [r for r in runs if r.legs == legs]
        figures: dict[str, dict[str, Any]] = {}
        for variant in dict.fromkeys(r.variant for r in of_n):
            chosen = [r for r in of_n if r.variant == variant]
            f: dict[str, Any] = {k: _median([getattr(r, k) for r in chosen]) for k in MEDIAN_KEYS}
            f |= {k: max(getattr(r, k) for r in chosen) for k in MAX_KEYS}
            f["runs"] = len(chosen)
            if variant == OURS:
                f["filled_orders_min"] = min(r.filled_orders or 0 for r in chosen)
            figures[variant] = f
        floor = figures.get(FLOOR, {}).get("ms_per_leg")
        like = figures.get(FLOOR_2ACT, {}).get("ms_per_leg")
        if OURS in figures:
            ours = figures[OURS]
            ours["ratio_of_medians"] = ours["ms_per_leg"] / floor if floor else None
            ours["ratio_to_floor_2act"] = ours["ms_per_leg"] / like if like else None
        out[legs] = figures
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


COLUMNS = (
    ("N", ">5"),
    ("reps", ">4"),
    ("floor ms/leg", ">12"),
    ("2act ms/leg", ">11"),
    ("ours ms/leg", ">11"),
    ("ours/floor", ">10"),
    ("ev/leg", ">6"),
    ("WFT/leg", ">7"),
    ("B/leg", ">6"),
    ("hists", ">5"),
    ("max hist ev", ">11"),
    ("max hist KB", ">11"),
    ("max payload KB", ">14"),
    ("cpu ms/leg", ">10"),
    ("srv cpu ms/leg", ">14"),
    ("db cpu ms/leg", ">13"),
    ("FILLED", ">11"),
)


def _row(cells: Sequence[str]) -> str:
    return "  ".join(format(c, spec) for c, (_, spec) in zip(cells, COLUMNS, strict=True))


def table(summary: dict[int, dict[str, dict[str, Any]]]) -> str:
    lines = [_row([name for name, _ in COLUMNS])]
    lines.append("-" * len(lines[0]))
    for legs, figures in summary.items():
        floor = figures.get(FLOOR, {})
        like = figures.get(FLOOR_2ACT, {})
        ours = figures.get(OURS)
        if ours is None:
            continue
        lines.append(
            _row(
                [
                    str(legs),
                    str(ours["runs"]),
                    _fmt(floor.get("ms_per_leg"), ".2f"),
                    _fmt(like.get("ms_per_leg"), ".2f"),
                    f"{ours['ms_per_leg']:.2f}",
                    _fmt(ours["ratio"], ".2f"),
                    f"{ours['events_per_leg']:.2f}",
                    f"{ours['workflow_tasks_per_leg']:.3f}",
                    f"{ours['history_bytes_per_leg']:.0f}",
                    str(ours["histories"]),
                    str(ours["largest_history_events"]),
                    f"{ours['largest_history_bytes'] / 1024:.0f}",
                    f"{ours['largest_payload_bytes'] / 1024:.1f}",
                    f"{ours['process_cpu_ms_per_leg']:.2f}",
                    _fmt(ours["server_cpu_ms_per_leg"], ".2f"),
                    _fmt(ours["database_cpu_ms_per_leg"], ".2f"),
                    f"{ours['filled_orders_min']}/{legs}",
                ]
            )
        )
    return "\n".join(lines)


def table_notes() -> str:
    return (
        "medians over the repeats; ours/floor: median of the per-repeat ratios of ms/leg; "
        "2act: floor-2act (two no-op activities per leg, no timer; N <= 1000 only); ev, WFT "
        "(workflow tasks completed), B (protobuf bytes of the events): per leg, parent and all "
        "children; hists: histories (parent + children); max hist: the largest single history; "
        "max payload: the largest single Payload in any event; cpu: this process (both workers, "
        "activities, database client, bench), srv: the dev server; db: every postgres process "
        "on the machine (- on SQLite, which runs in this process); FILLED: the fewest FILLED "
        "orders in the ledger over the repeats / legs"
    )


def throughput_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for kind in ("floor", "ours"):
        t: Throughput = result[kind]
        lines.append(
            f"  {kind:<5} {t.signals_per_s:7.2f} signals/s  {t.legs_per_s:8.1f} legs/s  "
            f"({t.completed_in_window} completed in {t.window_s:.0f} s, {t.in_flight} in flight; "
            f"{t.completed_after_window} more in {t.drain_s:.1f} s after; {t.failed} failed)  "
            f"latency p50/p95/max {_fmt(t.latency_ms_p50, '.0f')}/{_fmt(t.latency_ms_p95, '.0f')}"
            f"/{_fmt(t.latency_ms_max, '.0f')} ms  cpu/signal "
            f"{_fmt(t.process_cpu_ms_per_signal, '.1f')} ms, srv "
            f"{_fmt(t.server_cpu_ms_per_signal, '.1f')} ms, db "
            f"{_fmt(t.database_cpu_ms_per_signal, '.1f')} ms"
        )
        if t.errors:
            lines.append(f"        errors: {t.errors}")
    ours: Throughput = result["ours"]
    lines.append(
        f"  ours/floor signals/s {_fmt(result['ratio_signals_per_s'], '.3f')}; ledger: "
        f"{ours.ledger_filled_legs} FILLED legs for {ours.completed_in_window} signals "
        f"completed in the window ({ours.ledger_short_signals} short)"
    )
    return lines


def breakdown(runs: list[Run]) -> str:
    """Of the largest N, last repeat of each variant: events and bytes per leg by event type,
    CPU per leg by thread kind, the activities' queue and run times, the largest events."""
    legs = max(r.legs for r in runs)
    last = {r.variant: r for r in runs if r.legs == legs}
    names = sorted({n for r in last.values() for n in r.event_types})
    width = max(len(n) for n in [*names, "CPU ms per leg, this process"])
    head = f"{f'N={legs}, per leg':<{width}}  " + "  ".join(
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
    database = "  ".join(f"{_fmt(r.database_cpu_ms_per_leg, '.2f'):>24}" for r in last.values())
    lines.append(f"{'(PostgreSQL, all processes)':<{width}}  {database}")
    lines += [
        "",
        f"{'activity':<{width}}  {'variant':>12}  {'count':>6}  {'retried':>7}"
        f"  {'queue p50/p95 ms':>16}  {'run p50/p95/max ms':>20}",
    ]
    for r in last.values():
        for name, a in r.activities.items():
            lines.append(
                f"{name:<{width}}  {r.variant:>12}  {a['count']:>6.0f}  {a['retried']:>7.0f}  "
                f"{a['queue_ms_p50']:>7.0f}/{a['queue_ms_p95']:<8.0f}  "
                f"{a['run_ms_p50']:>7.0f}/{a['run_ms_p95']:.0f}/{a['run_ms_max']:.0f}"
            )
    for r in last.values():
        t = r.timers
        if "fire_ms_p50" in t:
            lines.append(
                f"{'timer started → fired':<{width}}  {r.variant:>12}  {t['count']:>6.0f}  "
                f"{'':>7}  {'':>16}  {t['fire_ms_p50']:>7.0f}/{t['fire_ms_p95']:.0f}"
                f"/{t['fire_ms_max']:.0f}"
            )
    lines += ["", "largest events and payload"]
    for r in last.values():
        for e in r.largest_events[:3]:
            lines.append(f"  {r.variant:<12} {e['bytes'] / 1024:>8.1f} KB  {e['type']} ({e['of']})")
        p = r.largest_payload
        lines.append(
            f"  {r.variant:<12} {p['bytes'] / 1024:>8.1f} KB  payload in {p['event']} ({p['of']})"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Main


async def bench(args: argparse.Namespace, tag: str) -> dict[str, Any]:
    legs_list: list[int] = args.legs
    largest = legs_list[-1]
    runs: list[Run] = []
    out: dict[str, Any] = {"tag": tag, "legs": legs_list}
    with (
        tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp,
        bench_database(args.database_url, tag, Path(tmp)) as bench_db,
    ):
        out["database"] = bench_db.label
        out["broker"] = (
            "in-memory (bench.memory_broker)"
            if args.broker == "memory"
            else "PaperBroker (database)"
        )
        db = worker_database(Settings(), bench_db.url)
        try:
            db.migrate()
            ids = [f"bench-{i:05d}" for i in range(1, largest + 1)]
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
                settings = Settings.model_validate(
                    {**base, "temporal_address": client.service_client.config.target_host}
                )
                ctx = Context(
                    client=client,
                    db=db,
                    settings=settings,
                    floor_queue=f"bench-floor-{tag}",
                    tag=tag,
                    server_pids=_server_pids(),
                )
                slots = settings.max_concurrent_activities
                out["settings"] = {
                    "delay_min_s": 0,
                    "delay_max_s": 0,
                    "batch_size": settings.batch_size,
                    "max_concurrent_activities": slots,
                    "max_orders_in_flight": settings.max_orders_in_flight,
                    "activity_threads": slots,
                    "max_cached_workflows": 2000,
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
                        workflows=[FloorWorkflow, FloorTwoActivitiesWorkflow],
                        activities=[noop],
                        activity_executor=floor_pool,
                        max_concurrent_activities=slots,
                        max_cached_workflows=2000,
                    )
                    broker = MemoryBroker() if args.broker == "memory" else None
                    ours_worker = build_worker(
                        client, settings, build_activities(db, settings, broker), ours_pool
                    )
                    async with floor_worker, ours_worker:
                        await per_n(ctx, args, ids, bench_db.fresh, runs)
                        if args.throughput_seconds > 0:
                            out["throughput"] = await throughput_pair(
                                ctx,
                                in_flight=args.in_flight,
                                seconds=args.throughput_seconds,
                                timeout_s=args.throughput_timeout,
                            )
                target = [r for r in runs if r.variant == OURS and r.legs == largest][-1]
                print(f"replay: {target.workflow_id} and its children …", flush=True)
                try:
                    out["replay"] = await time_replay(
                        client, target.workflow_id, largest, converter
                    )
                except Exception as err:
                    logging.exception("replay failed")
                    out["replay"] = {"error": f"{type(err).__name__}: {err}"}
                out["peak_rss_kib_bench"] = peak_rss_kib()
            finally:
                await env.shutdown()
        finally:
            db.dispose()
    print(f"planning: plan_signal on {PLANNING_ACCOUNTS} accounts …", flush=True)
    out["planning"] = _guarded("planning", lambda: time_planning(PLANNING_ACCOUNTS))
    print(f"correlation: {CORRELATION_ACCOUNTS} × {CORRELATION_DAYS} …", flush=True)
    out["correlation"] = _guarded("correlation", time_correlation_or_missing)
    out["peak_rss_kib_end"] = peak_rss_kib()
    out["runs"] = runs
    return out


async def per_n(
    ctx: Context, args: argparse.Namespace, ids: list[str], fresh: bool, runs: list[Run]
) -> None:
    """Warm up, then for each N (ascending, so the book only grows): floor, floor-2act
    (N <= 1000) and ours, repeated."""
    legs_list: list[int] = args.legs
    first = legs_list[0]
    warm = min(first, WARMUP_LEGS)
    print(f"warm-up (floor {WARMUP_LEGS} legs, ours {first} legs) …", flush=True)
    for variant in (FLOOR, FLOOR_2ACT):
        await run_floor(ctx, WARMUP_LEGS, variant=variant, repeat=0, timeout_s=120)
    book = bench_book(ids[:first])
    await run_ours(
        ctx,
        book,
        None if fresh else ids[:warm],
        repeat=0,
        timeout_s=args.run_timeout or 120 + 0.5 * first,
        variant="warmup",
    )
    for legs in legs_list:
        book = bench_book(ids[:legs])
        scope = None if fresh else ids[:legs]
        timeout_s = args.run_timeout or 120 + 0.5 * legs
        repeats = args.repeats if legs <= LARGE else args.repeats_large
        for repeat in range(1, repeats + 1):
            floor = await run_floor(ctx, legs, variant=FLOOR, repeat=repeat, timeout_s=timeout_s)
            runs.append(floor)
            progress = f"N={legs} repeat {repeat}: floor {floor.ms_per_leg:.2f}"
            if legs <= LARGE:
                like = await run_floor(
                    ctx, legs, variant=FLOOR_2ACT, repeat=repeat, timeout_s=timeout_s
                )
                like.ratio = like.ms_per_leg / floor.ms_per_leg
                runs.append(like)
                progress += f", {FLOOR_2ACT} {like.ms_per_leg:.2f}"
            ours = await run_ours(ctx, book, scope, repeat=repeat, timeout_s=timeout_s)
            ours.ratio = ours.ms_per_leg / floor.ms_per_leg
            runs.append(ours)
            print(
                f"{progress}, ours {ours.ms_per_leg:.2f} ms/leg (×{ours.ratio:.2f}), "
                f"{ours.filled_orders}/{legs} FILLED",
                flush=True,
            )


def _legs(text: str) -> list[int]:
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of integers: {text!r}") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("legs must be positive integers")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--legs",
        type=_legs,
        default=_legs(DEFAULT_LEGS),
        help=f"comma list (default {DEFAULT_LEGS})",
    )
    p.add_argument("--repeats", type=int, default=3, help="runs per N <= 1000 (default 3)")
    p.add_argument("--repeats-large", type=int, default=1, help="runs per N > 1000 (default 1)")
    p.add_argument(
        "--throughput-seconds",
        type=float,
        default=120,
        help="window of each throughput loop, floor and ours (default 120; 0: skip)",
    )
    p.add_argument(
        "--in-flight", type=int, default=20, help="signals (floor workflows) in flight (default 20)"
    )
    p.add_argument(
        "--throughput-timeout",
        type=float,
        default=60,
        help="seconds one throughput signal may take before it is terminated; also bounds the "
        "wait after the window (default 60)",
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
        help="memory (default: bench.memory_broker, fills at once in memory) or paper (the "
        "project's PaperBroker, whose book is in the database: three more transactions per "
        "order)",
    )
    p.add_argument(
        "--run-timeout",
        type=float,
        default=None,
        help="seconds one per-N run may take before it is terminated (default 120 + 0.5 × N)",
    )
    return p


async def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.repeats < 1 or args.repeats_large < 1 or args.in_flight < 1:
        p.error("--repeats, --repeats-large and --in-flight must be at least 1")
    if args.throughput_seconds < 0 or args.throughput_timeout <= 0:
        p.error("--throughput-seconds must be >= 0 and --throughput-timeout > 0")
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
    summary = summarize(runs)

    print()
    print(
        f"database {result['database']}; dev server in memory; batch size "
        f"{result['settings']['batch_size']}, at most {result['settings']['max_orders_in_flight']} "
        f"orders in flight per signal, zero delays, {result['broker']} broker; signal scope "
        f"{result['settings']['signal_scope']}"
    )
    print(table(summary))
    print(table_notes())

    print()
    if "throughput" in result:
        tp = result["throughput"]
        print(
            f"throughput ({THROUGHPUT_LEGS} legs per signal, closed loop, "
            f"{args.in_flight} in flight, {args.throughput_seconds:.0f} s window, "
            f"counted only if completed inside it):"
        )
        print("\n".join(throughput_lines(tp)))
    else:
        print("throughput: skipped (--throughput-seconds 0)")
    replay = result.get("replay", {})
    if "error" in replay:
        print(f"replay: failed: {replay['error']}")
    elif replay:
        print(
            f"replay of the N={replay['legs']} signal ({replay['histories']} histories, "
            f"{replay['events']} events): {replay['seconds']:.2f} s, "
            f"{replay['ms_per_leg']:.3f} ms/leg, {len(replay['failures'])} failures"
        )
    print(
        f"peak RSS {result['peak_rss_kib_bench'] / 1024:.0f} MiB (this process: both workers, "
        f"the bench, fetched histories; not the dev server), "
        f"{result['peak_rss_kib_end'] / 1024:.0f} MiB after planning and correlation"
    )
    planning = result["planning"]
    if "error" in planning:
        print(f"planning: failed: {planning['error']}")
    else:
        print(
            f"planning {planning['accounts']} accounts (plan_signal, median of 3): "
            f"{planning['correlated']['median_s'] * 1000:.0f} ms with correlation groups "
            f"({planning['correlated']['legs']} legs), "
            f"{planning['empty_correlation']['median_s'] * 1000:.0f} ms with none"
        )
    correlation = result["correlation"]
    if "median_s" in correlation:
        print(
            f"correlation {CORRELATION_ACCOUNTS} accounts × {CORRELATION_DAYS} days "
            f"(bench.correlation_timing, median): {correlation['median_s']:.2f} s"
        )
    else:
        print(f"correlation: {correlation.get('missing') or correlation.get('error')}")
    print()
    print(breakdown(runs))

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"overhead-{tag}.json"
    document = {
        **result,
        "machine": host,
        "summary": {str(legs): figures for legs, figures in summary.items()},
        "runs": [asdict(r) for r in runs],
    }
    if "throughput" in result:
        tp = result["throughput"]
        document["throughput"] = {
            "floor": asdict(tp["floor"]),
            "ours": asdict(tp["ours"]),
            "ratio_signals_per_s": tp["ratio_signals_per_s"],
            "in_flight": args.in_flight,
            "note": "closed loop; signals/s and legs/s count only signals completed in the window",
        }
    document["worker_note"] = (
        "peak RSS is this process's ru_maxrss (KiB): the project's worker, the floor worker and "
        "the bench with its fetched histories, not the dev server"
    )
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

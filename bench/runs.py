"""One measured run each: the floor, our signal (zero or staggered delays), the CLOSE of the
positions a signal opened, and the account sync of N accounts.

Every run reads CPU before and after (``harness.CpuSample``), the wall time from submission to
result, and the times from submission to the first and the last order: at the broker for ours
(``MemoryBroker`` notes each order's arrival; the paper broker: the ledger's write-ahead rows),
the first and last no-op activity for the floor.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from bench import account_sync
from bench.book import SYMBOL
from bench.floor import FloorWorkflow, arrivals
from bench.harness import CpuSample, bounded, cpu_figures, fresh_postgres
from bench.history import delay_timers_ms, history_figures
from bench.memory_broker import MemoryBroker
from orchestrator.adapters.book_file import Book
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import OrderRow
from orchestrator.config import Settings
from orchestrator.domain import ids
from orchestrator.domain.actions import ActionKind, TradeAction
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.report import SignalReport
from orchestrator.domain.signal import Signal
from orchestrator.domain.values import OrderType
from orchestrator.services.actions import submit_action
from orchestrator.services.history import fetch_with_children
from orchestrator.services.submit import submit_signal

FLOOR = "floor"
OURS = "ours"
ENTRY = "entry"
"""Scenario: a signal of N accounts, zero delays (the floor: one no-op activity per leg)."""
STAGGERED = "staggered"
"""Scenario: a signal of N accounts with delays; the floor waits the same delays."""
EXIT = "exit"
"""Scenario: a CLOSE of the N positions the entry opened (the floor: as for the entry)."""
SYNC = "sync"
"""Scenario: the account sync of N accounts (``bench.account_sync``; no floor)."""

FLOOR_MAX_LEGS = 1000
"""Legs per floor workflow at most. One workflow cannot hold 5,000 floor legs: Temporal allows
2,000 pending activities per workflow. A larger floor runs as several workflows of at most this
many legs, started together and timed as one."""

FRESH_STATE = repository.StateReplacement(
    operator="bench", reason="fresh risk state for every run", source="bench book"
)


@dataclass(frozen=True)
class Context:
    """What every run needs."""

    client: Client
    db: Database
    settings: Settings
    """Ours with zero delays."""
    staggered: Settings
    """Ours with the staggered delays (its own worker and task queue)."""
    floor_queue: str
    tag: str
    server_pids: list[int]
    broker: MemoryBroker | None
    """``None``: the paper broker (the first and last order are read from the ledger)."""


@dataclass
class Run:
    scenario: str
    variant: str
    legs: int
    repeat: int
    workflow_id: str
    wall_ms: float
    ms_per_leg: float
    process_cpu_ms_per_leg: float
    """This process: both workers, their activities, the database client, the bench."""
    server_cpu_ms_per_leg: float | None
    """The dev server's processes."""
    database_cpu_ms_per_leg: float | None
    """PostgreSQL's processes (``None`` on SQLite, which runs in this process)."""
    cpu_ms_per_leg_by_thread: dict[str, float]
    """This process's CPU by kind of thread (see ``harness.thread_cpu``)."""
    first_order_s: float | None = None
    """Submission to the first order at the broker (the floor: its first no-op activity)."""
    last_order_s: float | None = None
    orders: int = 0
    """Orders (no-op activities) counted for the two times above."""
    batch_size: int | None = None
    delays_ms: list[int] = field(default_factory=list)
    """Staggered: the delays the legs waited (ours drew them; the floor took them)."""
    events: int = 0
    events_per_leg: float = 0.0
    workflow_tasks: int = 0
    workflow_tasks_per_leg: float = 0.0
    history_bytes: int = 0
    history_bytes_per_leg: float = 0.0
    histories: int = 0
    largest_history_events: int = 0
    largest_history_bytes: int = 0
    largest_history: str = ""
    largest_event_bytes: int = 0
    largest_events: list[dict[str, Any]] = field(default_factory=list)
    largest_payload_bytes: int = 0
    largest_payload: dict[str, Any] = field(default_factory=dict)
    result_payload_bytes: int = 0
    server_span_ms: float = 0.0
    event_types: dict[str, int] = field(default_factory=dict)
    event_bytes: dict[str, int] = field(default_factory=dict)
    activities: dict[str, dict[str, float]] = field(default_factory=dict)
    timers: dict[str, float] = field(default_factory=dict)
    retries: int = 0
    ledger: dict[str, int] | None = None
    """Ours: the signal's orders in the database by status."""
    filled_orders: int | None = None
    keepers_terminated: int = 0
    """Exit: keepers still open after their CLOSE, terminated by the bench."""
    note: str = ""


def _times(started: float, at: Sequence[float]) -> dict[str, Any]:
    if not at:
        return {"first_order_s": None, "last_order_s": None, "orders": 0}
    return {
        "first_order_s": min(at) - started,
        "last_order_s": max(at) - started,
        "orders": len(at),
    }


# --------------------------------------------------------------------------------------------
# The floor


async def run_floor(
    ctx: Context,
    legs: int,
    *,
    scenario: str,
    repeat: int,
    timeout_s: float,
    delays_ms: list[int] | None = None,
) -> Run:
    """The floor of N legs: zero delays (no timer, one no-op activity per leg) or the given
    delays (a timer of each, then the activity)."""
    workflow_id = f"bench-floor-{ctx.tag}-{scenario}-n{legs}-r{repeat}"
    parts = [min(FLOOR_MAX_LEGS, legs - i) for i in range(0, legs, FLOOR_MAX_LEGS)]
    ids_ = [workflow_id] if len(parts) == 1 else [f"{workflow_id}-p{n}" for n in range(len(parts))]
    delays = list(delays_ms) if delays_ms else None
    if delays is not None:
        delays += [0] * (legs - len(delays))  # legs drawn a zero delay take no timer
    before = CpuSample.now(ctx.server_pids)
    started_at = time.time()
    started = time.perf_counter()
    handles = []
    offset = 0
    for wid, n in zip(ids_, parts, strict=True):
        part = delays[offset : offset + n] if delays is not None else None
        offset += n
        handles.append(
            await ctx.client.start_workflow(
                FloorWorkflow.run, args=[n, part], id=wid, task_queue=ctx.floor_queue
            )
        )
    for handle in handles:
        await bounded(handle, handle.result(), timeout_s)
    wall = time.perf_counter() - started
    after = CpuSample.now(ctx.server_pids)
    histories = [await handle.fetch_history() for handle in handles]
    return Run(
        scenario=scenario,
        variant=FLOOR,
        legs=legs,
        repeat=repeat,
        workflow_id=workflow_id,
        wall_ms=wall * 1000,
        ms_per_leg=wall * 1000 / legs,
        batch_size=FLOOR_MAX_LEGS if len(parts) > 1 else None,
        delays_ms=delays_ms or [],
        **_times(started_at, arrivals(ids_)),
        **history_figures(histories, legs),
        **cpu_figures(before, after, legs),
    )


# --------------------------------------------------------------------------------------------
# Ours: entry, close


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


def ledger_entry_times(db: Database, signal_id: str) -> list[float]:
    """When the signal's entry orders were written, ahead of sending (the paper broker)."""
    with db.transaction() as session:
        rows = session.execute(
            select(OrderRow.created_at)
            .where(OrderRow.signal_id == signal_id)
            .where(OrderRow.purpose == "ENTRY")
        ).scalars()
        return [at.timestamp() for at in rows]


def _broker_times(ctx: Context, mark: int) -> list[float]:
    """Arrivals at the memory broker since ``mark``, protective stops left out."""
    if ctx.broker is None:
        return []
    return [a.at for a in ctx.broker.arrivals_since(mark) if a.order_type is not OrderType.STOP]


@dataclass
class Entry:
    run: Run
    signal_id: str
    keepers: list[str]
    """Workflow ids of the keepers of the positions it opened."""


async def run_entry(
    ctx: Context,
    book: Book,
    account_ids: list[str] | None,
    *,
    scenario: str,
    repeat: int,
    timeout_s: float,
    prefix: str = "",
) -> Entry:
    """One signal of N accounts through ``submit_signal``; zero delays or, for ``STAGGERED``,
    the staggered worker's delays (read back from its delay timers for the floor)."""
    legs = len(account_ids) if account_ids is not None else len(book.accounts)
    await asyncio.to_thread(load, ctx.db, book)  # fresh risk state for every run; not timed
    settings = ctx.staggered if scenario == STAGGERED else ctx.settings
    signal_id = f"bench-{ctx.tag}-{prefix}{scenario}-n{legs}-r{repeat}"
    mark = ctx.broker.mark() if ctx.broker else 0
    before = CpuSample.now(ctx.server_pids)
    started_at = time.time()
    started = time.perf_counter()
    handle = await submit_signal(ctx.client, ctx.db, settings, bench_signal(signal_id, account_ids))
    report: SignalReport = await bounded(handle, handle.result(), timeout_s)
    wall = time.perf_counter() - started
    after = CpuSample.now(ctx.server_pids)

    at = _broker_times(ctx, mark)
    if ctx.broker is None:
        at = await asyncio.to_thread(ledger_entry_times, ctx.db, signal_id)
    histories = await fetch_with_children(ctx.client, handle.id)
    delays = await delay_timers_ms(histories, ctx.client.data_converter)
    ledger = await asyncio.to_thread(ledger_orders, ctx.db, signal_id)
    filled = ledger.get(OrderStatus.FILLED.value, 0)
    if filled != legs:
        logging.warning(
            "%s: %d of %d legs FILLED in the ledger: %s", handle.id, filled, legs, ledger
        )
    run = Run(
        scenario=scenario,
        variant=OURS,
        legs=legs,
        repeat=repeat,
        workflow_id=handle.id,
        wall_ms=wall * 1000,
        ms_per_leg=wall * 1000 / legs,
        batch_size=settings.batch_size,
        delays_ms=delays,
        ledger=ledger,
        filled_orders=filled,
        **_times(started_at, at),
        **history_figures(histories, legs),
        **cpu_figures(before, after, legs),
    )
    keepers = [ids.positions_workflow_id(owner) for owner in [handle.id, *report.batches]]
    return Entry(run, signal_id, keepers)


async def protected(ctx: Context, resting: int, timeout_s: float) -> bool:
    """Wait (not timed) until ``resting`` protective orders work at the broker: the keepers
    have placed the entry's stops, so their work does not fall into the next run."""
    if ctx.broker is None:
        return True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ctx.broker.resting() >= resting:
            return True
        await asyncio.sleep(0.1)
    logging.warning("%d of %d stops resting after %.0f s", ctx.broker.resting(), resting, timeout_s)
    return False


async def run_close(
    ctx: Context, entry: Entry, *, repeat: int, timeout_s: float, staggered: bool = False
) -> Run:
    """CLOSE every position of the entry's signal (``submit_action``), timed to the action's
    report; then wait (not timed) for its keepers to end, so none outlives its repeat."""
    legs = entry.run.legs
    action_id = f"{entry.signal_id}-close"
    action = TradeAction(action_id=action_id, action=ActionKind.CLOSE, signal_id=entry.signal_id)
    mark = ctx.broker.mark() if ctx.broker else 0
    before = CpuSample.now(ctx.server_pids)
    started_at = time.time()
    started = time.perf_counter()
    settings = ctx.staggered if staggered else ctx.settings
    handle = await submit_action(ctx.client, ctx.db, settings, action)
    report = await bounded(handle, handle.result(), timeout_s)
    wall = time.perf_counter() - started
    after = CpuSample.now(ctx.server_pids)
    histories = await fetch_with_children(ctx.client, handle.id)
    # Accounts, not outcomes: a signal run in batches reports each account once per keeper
    # that answered (seen: two outcomes per account at N = 500).
    closed = len({a.account_id for a in report.accounts if a.closed > 0 and a.open_quantity == 0})
    if closed != legs:
        logging.warning(
            "%s: %d of %d positions closed (%s)", action_id, closed, legs, report.status
        )
    run = Run(
        scenario=EXIT,
        variant=OURS,
        legs=legs,
        repeat=repeat,
        workflow_id=handle.id,
        wall_ms=wall * 1000,
        ms_per_leg=wall * 1000 / legs,
        filled_orders=closed,
        **_times(started_at, _broker_times(ctx, mark)),
        **history_figures(histories, legs),
        **cpu_figures(before, after, legs),
    )
    run.keepers_terminated, run.note = await keepers_ended(
        ctx.client, entry.keepers, KEEPER_WAIT_S + KEEPER_WAIT_PER_LEG_S * legs
    )
    return run


KEEPER_WAIT_S = 30.0
KEEPER_WAIT_PER_LEG_S = 0.02
"""How long the keepers of a closed signal get to end before the bench terminates them (not
timed; seen: batch keepers retrying ``record_positions`` after PostgreSQL deadlocks)."""


async def keepers_ended(client: Client, keepers: list[str], timeout_s: float) -> tuple[int, str]:
    """Wait for each keeper to end (one never started is fine); terminate those still open at
    the deadline, so none runs into the next repeat. How many were terminated, and why."""
    left: list[str] = []
    terminated = 0
    deadline = time.monotonic() + timeout_s
    for keeper in keepers:
        handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(keeper)
        try:
            await asyncio.wait_for(handle.result(), max(1.0, deadline - time.monotonic()))
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                left.append(f"{keeper}: {err}")
        except TimeoutError:
            await handle.terminate(reason="benchmark: keeper still open after its CLOSE")
            terminated += 1
            left.append(f"{keeper}: still open after {timeout_s:.0f} s, terminated")
    if left:
        logging.warning("keepers: %s", "; ".join(left))
    return terminated, "; ".join(left)


# --------------------------------------------------------------------------------------------
# The account sync


SYNC_LINE = re.compile(r"^(first|second) sync: ([0-9.]+) s", re.MULTILINE)


def run_sync(accounts: int, *, repeat: int, tag: str, positions_every: int = 10) -> Run:
    """``bench.account_sync.run`` on a fresh PostgreSQL database of its own (its accounts are
    at the bench's broker: in the entries' database the sync would read theirs too). Wall time:
    the first sync, as it prints it; CPU: this process and PostgreSQL over the whole call,
    which also writes the book and places the outside positions it then finds."""
    name = f"bench_{tag.lower()}_sync_n{accounts}_r{repeat}"
    with fresh_postgres(name) as url:
        db = Database(url)
        try:
            db.migrate()
            printed = io.StringIO()
            before = CpuSample.now([])
            with contextlib.redirect_stdout(printed):
                account_sync.run(db, accounts, positions_every)
            after = CpuSample.now([])
        finally:
            db.dispose()
    times = {kind: float(seconds) for kind, seconds in SYNC_LINE.findall(printed.getvalue())}
    first = times.get("first", 0.0)
    return Run(
        scenario=SYNC,
        variant=OURS,
        legs=accounts,
        repeat=repeat,
        workflow_id=name,
        wall_ms=first * 1000,
        ms_per_leg=first * 1000 / accounts,
        note=f"second sync {times.get('second', 0.0):.2f} s; CPU includes setup",
        **cpu_figures(before, after, accounts),
    )

"""The fault suite: signals across several accounts, a fault injected, recovery, then the
invariants — every signal reached a terminal state; the broker holds exactly one order per
(signal, account, business sequence); the ledger (reservations, orders, fills, account state)
agrees with the broker and with the execution reports; no account is past a limit.

Real components throughout: the worker as a process of its own (``tests.faults.worker_process``,
killed with SIGKILL at each step and started again), a file-backed Temporal dev server (stopped
and started again), a private PostgreSQL cluster (restarted), the paper broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal as signals
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowHandle

from activities.keeper_orders import NOT_SENT
from orchestrator.adapters.brokers.paper import PaperBroker, PaperMarket
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import (
    AccountStateRow,
    OrderRow,
    PaperOrderRow,
    PositionFillRow,
    RiskReservationRow,
)
from orchestrator.adapters.temporal import connect
from orchestrator.config import PROJECT_ROOT, Settings
from orchestrator.domain import ids
from orchestrator.domain.actions import ActionKind, ActionStatus, TradeAction
from orchestrator.domain.contracts.positions import PositionsResult
from orchestrator.domain.positions import CloseCause, PositionStatus
from orchestrator.domain.progress import SignalProgress
from orchestrator.domain.report import LegStatus, SignalReport
from orchestrator.services.actions import submit_action
from orchestrator.services.submit import submit_signal
from tests.dev_server import DevServer
from tests.faults.conftest import PrivatePostgres, Results, Row
from tests.faults.worker_process import KILL_POINTS
from tests.support import (
    FaultyBroker,
    account,
    book,
    is_entry,
    load,
    poll_until,
    protection_gaps,
    protection_violations,
    signal,
)
from workflows.signal import SignalExecutionWorkflow

pytestmark = pytest.mark.faults

SIGNALS = 3
ENTRY = Decimal("1.08500")
STOP = Decimal("1.08200")
TARGET = Decimal("1.09100")
GAP = Decimal("1.08150")
"""A bid 5 pips through the stop: the stops fill there."""
SPREAD = Decimal("0.00002")
PARTIAL = {"fill": "partial", "partial_ratio": "0.5", "partial_orders": 1}
SLICES = {"slices": 3, "latency_ms": 1500}
REJECT = {"fill": "reject", "reject_text": "Not enough money [10019]"}


EXPECTED = {
    "plain": LegStatus.FILLED,
    "slices": LegStatus.FILLED,
    "partial": LegStatus.FILLED,  # with its completion
    "rejects": LegStatus.REJECTED,  # and rerouted
    "spare-1": LegStatus.FILLED,  # the reroute's target
    "spare-2": LegStatus.DENIED,  # reserve, not needed
    "spare-3": LegStatus.DENIED,
}
"""What each account's line must say once the system has recovered: a fault may delay a leg,
never change its outcome (a FAILED leg whose order filled would be a wrong outcome)."""


def fault_book() -> Any:
    """Plain fills, fills in slices (followed), a partial fill (completion child), a rejection
    (reroute child) and the reserve it reroutes to."""
    return book(
        account("plain"),
        account("slices", paper=SLICES),
        account("partial", paper=PARTIAL),
        account("rejects", paper=REJECT),
        # Twice the equity of "rejects": its own risk per trade never binds, so the reroute's
        # carried risk (95 % of the rejected order's) finds a home here in one hop.
        account("spare-1", equity="100000", reserve_only=True),
        account("spare-2", reserve_only=True),
        account("spare-3", reserve_only=True),
    )


Handle = WorkflowHandle[Any, SignalReport]


@dataclass
class Run:
    settings: Settings
    client: Client
    db: Database
    workdir: Path
    marker: Path
    send_log: Path
    worker: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    """More of the worker's environment (a scenario's own settings)."""

    def env(self) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "TEO_TEMPORAL_ADDRESS": s.temporal_address,
            "TEO_TASK_QUEUE": s.task_queue,
            "TEO_DATABASE_URL": s.database_url,
            "TEO_ORDER_POLL_INTERVAL_S": str(s.order_poll_interval_s),
            "TEO_ORDER_HEARTBEAT_S": str(s.order_heartbeat_s),
            # The worker plans with its own settings: the run's delays, not the defaults (up
            # to 30 s a leg, which the rows would spend waiting on timers).
            "TEO_DELAY_MIN_S": str(s.delay_min_s),
            "TEO_DELAY_MAX_S": str(s.delay_max_s),
            "TEO_CORRELATED_MIN_GAP_S": str(s.correlated_min_gap_s),
            "TEO_LOG_FORMAT": "text",
            "TEO_LOG_LEVEL": "WARNING",
            "TEO_METRICS_PORT": "0",
            "TEO_TEMPORAL_METRICS_PORT": "0",
            "TEO_ARCHIVE_EVERY_S": "0",
            **self.extra_env,
        }

    def start_worker(self, point: str = "none") -> None:
        log = (self.workdir / "worker.log").open("ab")
        self.worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.faults.worker_process",
                point,
                str(self.marker),
                str(self.send_log),
            ],
            cwd=PROJECT_ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    async def worker_exit(self, timeout_s: float) -> int:
        assert self.worker is not None
        worker = self.worker
        await poll_until(lambda: worker.poll() is not None, timeout_s=timeout_s)
        return worker.returncode

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signals.SIGTERM)
            try:
                self.worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait(timeout=10)
        self.worker = None


@asynccontextmanager
async def fault_run(
    server: DevServer,
    cluster: PrivatePostgres,
    tmp_path: Path,
    name: str,
    accounts: Any = None,
    *,
    worker_env: dict[str, str] | None = None,
) -> AsyncIterator[Run]:
    """A database of its own on the cluster, loaded with ``accounts`` (default: the fault
    book), and the settings a worker process runs with."""
    database = f"faults_{name.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(cluster.admin_url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    db = Database(f"postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/{database}")
    db.migrate()
    load(db, accounts if accounts is not None else fault_book())
    settings = Settings(
        temporal_address=server.address,
        task_queue=f"faults-{name}-{datetime.now(UTC):%H%M%S%f}",
        database_url=db.url,
        delay_min_s=Decimal("1.0"),
        delay_max_s=Decimal("2.5"),
        correlated_min_gap_s=Decimal(0),
        order_poll_interval_s=0.1,
        order_heartbeat_s=5,
        archive_every_s=0,
    )
    run = Run(
        settings=settings,
        client=await connect(settings),
        db=db,
        workdir=tmp_path,
        marker=tmp_path / "fired",
        send_log=tmp_path / "sends.log",
        extra_env=worker_env or {},
    )
    try:
        yield run
    finally:
        run.stop_worker()
        db.dispose()


async def submit_all(run: Run, name: str, **fields: Any) -> list[Handle]:
    return [
        await submit_signal(run.client, run.db, run.settings, signal(f"f-{name}-{n}", **fields))
        for n in range(SIGNALS)
    ]


def working_stops(db: Database) -> list[OrderRow]:
    with db.transaction() as session:
        return list(
            session.scalars(
                select(OrderRow).where(OrderRow.purpose == "STOP", OrderRow.status == "NEW")
            )
        )


async def all_done(handles: list[Handle], timeout_s: float = 240) -> list[SignalReport]:
    return list(await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), timeout_s))


async def legs_waiting(handles: list[Handle]) -> None:
    async def waiting() -> bool:
        for handle in handles:
            progress: SignalProgress = await handle.query(SignalExecutionWorkflow.progress)
            if not progress.legs or any(
                leg.status is not LegStatus.WAITING for leg in progress.legs
            ):
                return False
        return True

    await poll_until(waiting, timeout_s=60, interval_s=0.05)


# --------------------------------------------------------------------------------------------
# The invariants


def written_ahead_only(db: Database) -> list[str]:
    """Protective orders the ledger wrote ahead that the broker has not received (yet): a
    keeper between writing and sending, or one that never sent."""
    with db.transaction() as session:
        sent = set(session.scalars(select(PaperOrderRow.client_order_id)))
        ahead = session.scalars(
            select(OrderRow.client_order_id).where(
                OrderRow.purpose != "ENTRY",
                OrderRow.reject_text.is_distinct_from(NOT_SENT),
            )
        )
        return [f"{cid}: written ahead, not at the broker" for cid in ahead if cid not in sent]


def protection_problems(db: Database) -> list[str]:
    """What is wrong with the positions' protective orders now: a protective order working
    beyond its position's open quantity or on a flat one, an open position without exactly
    one working stop for all of it, an order written ahead that the broker lacks."""
    return protection_violations(db) + protection_gaps(db) + written_ahead_only(db)


async def settled_protection(db: Database, timeout_s: float = 90) -> list[str]:
    """:func:`protection_problems` once the keepers have settled: a keeper needs a moment
    after a fill to resize or cancel the other side (one-cancels-other is ours), so the check
    waits for it, then reports what is still wrong."""
    with contextlib.suppress(TimeoutError):
        await poll_until(
            lambda: not protection_problems(db) or None, timeout_s=timeout_s, interval_s=0.5
        )
    return protection_problems(db)


async def check(
    run: Run, scenario: str, faults: int, reports: list[SignalReport], timeout_s: float = 90
) -> Row:
    """The row once the system is quiet: the signals are done, but a keeper may still be
    resizing a stop for a late completion fill (a write-ahead row the broker has not seen
    yet). Checked again until every invariant holds or ``timeout_s`` passed; the last row
    then says what is still wrong."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        row = await _check_once(run, scenario, faults, reports)
        if row.clean:
            return row
        if asyncio.get_running_loop().time() > deadline:
            return await _check_once(run, scenario, faults, reports, say=True)
        await asyncio.sleep(1)


async def _check_once(
    run: Run, scenario: str, faults: int, reports: list[SignalReport], *, say: bool = False
) -> Row:
    protection = protection_problems(run.db)  # check() is the one that waits
    if protection and say:
        print(f"{scenario}: protection problems: {protection}")
    with run.db.transaction() as session:
        broker = list(session.scalars(select(PaperOrderRow)))
        ledger = {o.client_order_id: o for o in session.scalars(select(OrderRow))}
        held = list(session.scalars(select(RiskReservationRow)))
        states = list(session.scalars(select(AccountStateRow)))
    # One broker order per (signal, account, business sequence): the key is in the client
    # order id, and no key may appear twice.
    keys = [tuple(o.client_order_id.rsplit(":", 2)) for o in broker]
    doubled = len(keys) - len(set(keys))
    # Every report line's fills are the broker's fills for its account and signal.
    mismatches: list[str] = []
    broker_fills: dict[tuple[str, str], Decimal] = {}
    for order in broker:
        signal_id = order.client_order_id.rsplit(":", 2)[0]
        key = (signal_id, order.account_id)
        if is_entry(order.client_order_id):  # what the report's lines say they filled
            broker_fills[key] = broker_fills.get(key, Decimal(0)) + order.filled_quantity
        booked = ledger.get(order.client_order_id)
        if booked is None or booked.filled_quantity != order.filled_quantity:
            # The ledger lost or misbooked a broker order.
            mismatches.append(
                f"{order.client_order_id}: broker {order.status} filled "
                f"{order.filled_quantity}, ledger "
                + (f"{booked.status} filled {booked.filled_quantity}" if booked else "none")
            )
    # A protective order written ahead for a replace the broker refused, and not needed after
    # all, is ended in the ledger unsent: the only ledger order the broker may lack.
    unsent = {cid for cid, o in ledger.items() if o.reject_text == NOT_SENT}
    mismatches += [
        f"{cid}: in the ledger, not at the broker"
        for cid in sorted(set(ledger) - unsent - {o.client_order_id for o in broker})
    ]
    for report in reports:
        for line in report.accounts:
            at_broker = broker_fills.get((report.signal_id, line.account_id), Decimal(0))
            if at_broker != line.filled:
                mismatches.append(
                    f"{report.signal_id}/{line.account_id}: report filled {line.filled}, "
                    f"broker {at_broker}"
                )
    # One reservation per (signal, account), and only for accounts that were sent orders.
    reserved = [(r.signal_id, r.account_id) for r in held]
    mismatches += [f"{key}: reserved twice" for key in set(reserved) if reserved.count(key) > 1]
    if mismatches and say:
        print(f"{scenario}: ledger mismatches: {mismatches}")
    breaches = sum(
        1
        for s in states
        if s.open_positions > 10 or s.free_margin < 0 or s.risk_committed_today > 5000
    )
    lost = SIGNALS - sum(1 for r in reports if r.status == "COMPLETED")
    wrong = sum(
        1
        for report in reports
        for line in report.accounts
        if EXPECTED.get(line.account_id) is not line.status
    )
    sends = run.send_log.read_text().splitlines() if run.send_log.exists() else []
    row = Row(
        scenario=scenario,
        faults=faults,
        signals=len(reports),
        orders=len(broker),
        resends_absorbed=sum(1 for line in sends if line.endswith(" again")),
        doubled=doubled,
        lost=lost,
        breaches=breaches,
        ledger_mismatches=len(mismatches),
        wrong_outcomes=wrong,
        protection=len(protection),
    )
    return row


def assert_clean(row: Row, results: Results) -> None:
    results.rows.append(row)
    invariants = (
        row.doubled,
        row.lost,
        row.breaches,
        row.ledger_mismatches,
        row.wrong_outcomes,
        row.protection,
    )
    assert invariants == (0, 0, 0, 0, 0, 0), row
    assert row.signals == SIGNALS


# --------------------------------------------------------------------------------------------
# Worker killed at each step


@pytest.mark.parametrize("point", list(KILL_POINTS), ids=list(KILL_POINTS))
async def test_worker_killed_at_a_step_then_restarted(
    point: str,
    file_server: DevServer,
    private_pg: PrivatePostgres,
    tmp_path: Path,
    results: Results,
) -> None:
    async with fault_run(file_server, private_pg, tmp_path, point) as run:
        run.start_worker(point)
        handles = await submit_all(run, point)
        code = await run.worker_exit(timeout_s=120)
        assert code == -signals.SIGKILL, f"the worker was to die at {point!r}, exited {code}"
        assert run.marker.read_text() == point
        run.start_worker()
        reports = await all_done(handles)
        assert_clean(await check(run, f"worker SIGKILL: {point}", 1, reports), results)


async def test_worker_killed_mid_slice_then_restarted(
    file_server: DevServer, private_pg: PrivatePostgres, tmp_path: Path, results: Results
) -> None:
    """Zero delays: each signal's legs go out in one slice. The worker dies inside the slice's
    send loop, right after the broker accepted an order; the slice's retry asks the broker about
    every client order id and sends only what it does not hold."""
    zero_delay = {"TEO_DELAY_MIN_S": "0", "TEO_DELAY_MAX_S": "0"}
    async with fault_run(
        file_server, private_pg, tmp_path, "mid-slice", worker_env=zero_delay
    ) as run:
        run.start_worker("mid_slice")
        handles = await submit_all(run, "mid-slice")
        code = await run.worker_exit(timeout_s=120)
        assert code == -signals.SIGKILL, f"the worker was to die mid-slice, exited {code}"
        assert run.marker.read_text() == "mid_slice"
        run.start_worker()
        reports = await all_done(handles)
        row = await check(run, "worker SIGKILL: mid-slice", 1, reports)
        assert_clean(row, results)
        # The retry asked the broker first: nothing the broker held was sent to it again.
        assert row.resends_absorbed == 0, row


async def test_worker_killed_while_legs_wait_on_timers(
    file_server: DevServer, private_pg: PrivatePostgres, tmp_path: Path, results: Results
) -> None:
    async with fault_run(file_server, private_pg, tmp_path, "timers") as run:
        run.start_worker()
        handles = await submit_all(run, "timers")
        await legs_waiting(handles)
        assert run.worker is not None
        run.worker.send_signal(signals.SIGKILL)
        assert await run.worker_exit(timeout_s=30) == -signals.SIGKILL
        run.start_worker()
        reports = await all_done(handles)
        assert_clean(await check(run, "worker SIGKILL: legs on timers", 1, reports), results)


async def test_worker_killed_while_a_stop_fills_then_restarted(
    file_server: DevServer, private_pg: PrivatePostgres, tmp_path: Path, results: Results
) -> None:
    """Every position protected, the market gaps through the stops, and the worker dies the
    moment the broker first reports a stop's fill, before the keeper booked it. Restarted, the
    keepers find each fill, book it once, and cancel each take-profit."""
    async with fault_run(file_server, private_pg, tmp_path, "stop") as run:
        market = PaperMarket(run.db)
        market.set_quote("EURUSD", ENTRY, ENTRY + SPREAD)
        run.start_worker("stop_filled")
        handles = await submit_all(run, "stop", take_profit=TARGET)
        reports = await all_done(handles)
        filled = {
            (r.signal_id, line.account_id) for r in reports for line in r.accounts if line.filled
        }
        await poll_until(lambda: len(working_stops(run.db)) == len(filled) or None, timeout_s=90)
        market.set_quote("EURUSD", GAP, GAP + SPREAD)
        assert await run.worker_exit(timeout_s=120) == -signals.SIGKILL
        assert run.marker.read_text() == "stop_filled"
        run.start_worker()
        keepers = [
            run.client.get_workflow_handle(
                ids.positions_workflow_id(handle.id), result_type=PositionsResult
            )
            for handle in handles
        ]
        ended = await asyncio.wait_for(asyncio.gather(*(k.result() for k in keepers)), 240)
        row = await check(run, "worker SIGKILL: a stop filling", 1, reports)
        held = {(p.signal_id, p.account_id): p for r in ended for p in r.positions}
        assert set(held) == filled
        with run.db.transaction() as session:
            booked = list(session.scalars(select(PositionFillRow)))
            orders = list(session.scalars(select(OrderRow).where(OrderRow.purpose != "ENTRY")))
        for (signal_id, account_id), position in held.items():
            assert position.status is PositionStatus.CLOSED, position
            [close] = position.closes  # booked once
            assert close.cause is CloseCause.STOP_HIT and close.price <= STOP
            mine = [o for o in orders if (o.signal_id, o.account_id) == (signal_id, account_id)]
            assert {o.purpose: o.status for o in mine if o.status != "CANCELLED"} == {
                "STOP": "FILLED"
            }, mine
            assert any(o.purpose == "TAKE_PROFIT" and o.status == "CANCELLED" for o in mine)
        assert len(booked) == len({b.execution_id for b in booked}) == len(filled)
        assert_clean(row, results)


async def test_worker_killed_during_a_twenty_account_close_then_restarted(
    file_server: DevServer, private_pg: PrivatePostgres, tmp_path: Path, results: Results
) -> None:
    """A signal's positions on 20 accounts, each with its stop; a CLOSE of the signal; the
    worker dies right after the broker accepted the first closing order. Restarted, every
    position is closed exactly once and no protective order is left working."""
    names = [f"c{n:02d}" for n in range(20)]
    async with fault_run(
        file_server, private_pg, tmp_path, "close", book(*(account(a) for a in names))
    ) as run:
        PaperMarket(run.db).set_quote("EURUSD", ENTRY, ENTRY + SPREAD)
        run.start_worker("closing")
        handle = await submit_signal(run.client, run.db, run.settings, signal("f-close-x"))
        report = await asyncio.wait_for(handle.result(), 240)
        await poll_until(lambda: len(working_stops(run.db)) == len(names) or None, timeout_s=120)
        close = TradeAction(action_id="f-close-1", action=ActionKind.CLOSE, signal_id="f-close-x")
        done = await submit_action(run.client, run.db, run.settings, close)
        assert await run.worker_exit(timeout_s=120) == -signals.SIGKILL
        assert run.marker.read_text() == "closing"
        run.start_worker()
        outcome = await asyncio.wait_for(done.result(), 240)
        protection = await settled_protection(run.db)
        with run.db.transaction() as session:
            broker = list(session.scalars(select(PaperOrderRow)))
            booked = list(session.scalars(select(PositionFillRow)))
            held = repository.list_positions(session, signal_id="f-close-x")

    assert {line.status for line in report.accounts} == {LegStatus.FILLED}
    closing = [o for o in broker if o.client_order_id.rsplit(":", 1)[-1].startswith("C")]
    per_account = sorted(o.account_id for o in closing)
    assert per_account == names  # one closing order per position: none sent twice
    assert all(o.status == "FILLED" for o in closing)
    assert {p.status for p in held} == {"CLOSED"} and len(held) == len(names)
    assert sorted(b.account_id for b in booked) == names  # each closing fill booked once
    assert sorted(a.account_id for a in outcome.accounts if a.open_quantity == 0) == names
    working = [
        o
        for o in broker
        if not is_entry(o.client_order_id) and o.status in ("NEW", "PARTIALLY_FILLED")
    ]
    assert working == [] and protection == []
    sends = run.send_log.read_text().splitlines()
    results.rows.append(
        Row(
            scenario="worker SIGKILL: a 20-account close",
            faults=1,
            signals=2,
            orders=len(broker),
            resends_absorbed=sum(1 for line in sends if line.endswith(" again")),
            doubled=len(per_account) - len(set(per_account)),
            lost=0 if outcome.status is ActionStatus.COMPLETED else 1,
            breaches=0,
            ledger_mismatches=len(booked) - len(names),
            wrong_outcomes=sum(1 for p in held if p.status != "CLOSED"),
            protection=len(protection) + len(working),
        )
    )


# --------------------------------------------------------------------------------------------
# Servers restarted


async def test_temporal_server_stopped_and_restarted_mid_signal(
    file_server: DevServer, private_pg: PrivatePostgres, tmp_path: Path, results: Results
) -> None:
    async with fault_run(file_server, private_pg, tmp_path, "temporal") as run:
        run.start_worker()
        handles = await submit_all(run, "temporal")
        await legs_waiting(handles)
        file_server.stop()
        file_server.start()  # same file, same port: the runs are still there
        reports = await all_done(handles)
        assert_clean(await check(run, "Temporal dev server restarted", 1, reports), results)


async def test_postgres_restarted_mid_signal(
    file_server: DevServer, private_pg: PrivatePostgres, tmp_path: Path, results: Results
) -> None:
    async with fault_run(file_server, private_pg, tmp_path, "postgres") as run:
        run.start_worker()
        handles = await submit_all(run, "postgres", take_profit=TARGET)
        restarts = 0

        # Restarted while entry orders are placed and followed, then while the first
        # protective orders are: every connection is dropped.
        def first(purpose: str) -> Callable[[], bool]:
            def probe() -> bool:
                with run.db.transaction() as session:
                    query = select(OrderRow.client_order_id).where(OrderRow.purpose == purpose)
                    return session.scalar(query.limit(1)) is not None

            return probe

        for purpose in ("ENTRY", "STOP"):
            await poll_until(first(purpose), timeout_s=90, interval_s=0.05)
            await asyncio.to_thread(private_pg.restart)
            restarts += 1
        reports = await all_done(handles)
        # One stop (the check counts them) and one take-profit working per position.
        row = await check(run, "PostgreSQL restarted (entries, protection)", restarts, reports)
        filled = sorted(
            (r.signal_id, line.account_id) for r in reports for line in r.accounts if line.filled
        )

        def take_profits() -> list[tuple[str, str]]:
            with run.db.transaction() as session:
                working = session.scalars(
                    select(OrderRow).where(
                        OrderRow.purpose == "TAKE_PROFIT", OrderRow.status == "NEW"
                    )
                )
                return sorted((o.signal_id, o.account_id) for o in working)

        # A keeper places the take-profit after the stop: give the last one its moment.
        with contextlib.suppress(TimeoutError):
            await poll_until(lambda: take_profits() == filled or None, timeout_s=60)
        assert take_profits() == filled
        assert_clean(row, results)


# --------------------------------------------------------------------------------------------
# Broker faults (in-process worker: the faults live in the broker client)


async def run_with_broker(
    run: Run, name: str, broker: FaultyBroker, harness_factory: Callable[..., Any]
) -> list[SignalReport]:
    """The signals, on an in-process worker whose broker client is ``broker``, kept running
    until the positions' keepers have settled their protective orders."""
    async with harness_factory(run.client, run.db, run.settings, broker).running():
        reports = await all_done(await submit_all(run, name))
        await settled_protection(run.db)
        return reports


async def test_broker_busy_ambiguous_and_slow(
    file_server: DevServer,
    private_pg: PrivatePostgres,
    tmp_path: Path,
    results: Results,
    harness_factory: Callable[..., Any],
) -> None:
    async with fault_run(file_server, private_pg, tmp_path, "broker") as run:
        broker = FaultyBroker(PaperBroker(run.db), busy=4, ambiguous=4)
        reports = await run_with_broker(run, "broker", broker, harness_factory)
        row = await check(run, "broker: 4 busy, 4 acks lost after sending", 8, reports)
        assert_clean(row, results)
        with run.db.transaction() as session:
            entries = [
                o for o in session.scalars(select(PaperOrderRow)) if is_entry(o.client_order_id)
            ]
        # The busy submits never reached it (submit_calls counts entries, as these do).
        assert broker.submit_calls >= len(entries) + 4


async def test_broker_reports_arriving_late_out_of_order_and_repeated(
    file_server: DevServer,
    private_pg: PrivatePostgres,
    tmp_path: Path,
    results: Results,
    harness_factory: Callable[..., Any],
) -> None:
    """Every second status answer is the order's first report again: a state it has left and
    fewer executions. Each poll also repeats the last report (at-least-once delivery)."""
    async with fault_run(file_server, private_pg, tmp_path, "late") as run:
        broker = FaultyBroker(PaperBroker(run.db), late_every=2)
        reports = await run_with_broker(run, "late", broker, harness_factory)
        assert broker.late_reports > 0
        row = await check(
            run, "broker: reports late, out of order, repeated", broker.late_reports, reports
        )
        assert_clean(row, results)


async def test_broker_stalls_longer_than_the_heartbeat_timeout(
    file_server: DevServer,
    private_pg: PrivatePostgres,
    tmp_path: Path,
    results: Results,
    harness_factory: Callable[..., Any],
) -> None:
    """The first status request of every followed order stalls 7 s, past the 5 s heartbeat
    timeout: Temporal abandons the attempt and retries it, which asks the broker first."""
    async with fault_run(file_server, private_pg, tmp_path, "slow") as run:
        broker = FaultyBroker(PaperBroker(run.db), slow_first_status_s=7)
        reports = await run_with_broker(run, "slow", broker, harness_factory)
        assert broker.stalls > 0
        row = await check(run, "broker: status stalls 7 s (heartbeat 5 s)", broker.stalls, reports)
        assert_clean(row, results)

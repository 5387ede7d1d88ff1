"""The account sync on the time-skipping server with the real activities, SQLite and the paper
broker (or a broker that says what a test needs around it): the state it writes sizes the next
plan, the trading-day boundary resets today's realized loss, a position opened outside the
system turns the account reduce-only until the operator adopts it, a position the broker does
not report is unknown (never flat), and a breached daily loss budget turns the account
reduce-only, and flat when its limits say so."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import starter as starter_main
from activities.sync import AccountSyncActivities
from orchestrator.adapters.book_file import AccountRecord
from orchestrator.adapters.brokers.base import AccountReading, BrokerPosition, OrderTicket
from orchestrator.adapters.brokers.paper import PaperBroker
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import (
    AccountRow,
    AccountStateRow,
    OperatorActionRow,
    OrderRow,
    PositionRow,
    RiskReservationRow,
)
from orchestrator.config import Settings, get_settings
from orchestrator.domain import ids
from orchestrator.domain.book import OnBreach
from orchestrator.domain.contracts.positions import PositionsResult
from orchestrator.domain.contracts.sync import AccountSyncInput, SyncResult
from orchestrator.domain.positions import CloseCause, PositionStatus
from orchestrator.domain.report import AccountReport, LegStatus
from orchestrator.domain.sync import MismatchKind, ReduceOnlyCause
from orchestrator.domain.values import DenialReason, OrderType, Side
from orchestrator.services import audit, history, sync
from orchestrator.services.submit import submit_signal
from tests.support import (
    account,
    book,
    load,
    paper_orders,
    poll_until,
    protection_violations,
    protective_orders,
    signal,
)
from workflows.positions import PositionsWorkflow
from workflows.sync import AccountSyncWorkflow

SYMBOL = "EURUSD"
ENTRY = Decimal("1.08500")


@pytest.fixture
def settings(test_settings: Settings) -> Settings:
    return test_settings.model_copy(
        update={"delay_min_s": Decimal(0), "delay_max_s": Decimal(1), "size_variance": Decimal(0)}
    )


@pytest.fixture
def paper(sqlite_db: Database) -> PaperBroker:
    broker = PaperBroker(sqlite_db)
    broker.market.set_quote(SYMBOL, ENTRY, ENTRY + Decimal("0.00002"))
    return broker


@dataclass
class ScriptedBroker:
    """The paper broker, but for the money and positions a test sets: ``reading`` (``None``
    unset: the paper broker's), ``positions`` (``"paper"``: the paper broker's; ``None``: no
    answer)."""

    inner: PaperBroker
    readings: dict[str, AccountReading | None] = field(default_factory=dict)
    held: dict[str, list[BrokerPosition] | None] = field(default_factory=dict)

    def account_state(self, account_id: str) -> AccountReading | None:
        if account_id in self.readings:
            return self.readings[account_id]
        return self.inner.account_state(account_id)

    def positions(self, account_id: str) -> list[BrokerPosition] | None:
        if account_id in self.held:
            return self.held[account_id]
        return self.inner.positions(account_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def reading(equity: str, *, balance: str = "50000", at: datetime | None = None) -> AccountReading:
    return AccountReading(
        balance=Decimal(balance),
        equity=Decimal(equity),
        free_margin=Decimal(equity),
        reported=True,
        at=at or datetime.now(UTC),
    )


class Clock:
    def __init__(self, now: datetime | None = None) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now or datetime.now(UTC)


@asynccontextmanager
async def sync_worker(
    env: WorkflowEnvironment,
    *,
    db: Database,
    settings: Settings,
    broker: Any,
    executor: Any,
    clock: Callable[[], datetime] | None = None,
) -> AsyncIterator[Callable[[], Any]]:
    """A worker for the sync alone (its own queue, its activities on ``clock``); yields a
    function that runs one sync of broker ``alpha`` and returns its result."""
    client = env.client
    queue = f"sync-{uuid.uuid4().hex[:8]}"
    activities = AccountSyncActivities(db, broker, client, settings, clock=clock)
    async with Worker(
        client,
        task_queue=queue,
        workflows=[AccountSyncWorkflow],
        activities=activities.all(),
        activity_executor=executor,
    ):

        async def run() -> SyncResult:
            # Waiting on the sync must not skip time ahead to another workflow's timer (years
            # away): the state it writes would look stale to the next signal.
            with env.auto_time_skipping_disabled():
                return await client.execute_workflow(
                    AccountSyncWorkflow.run,
                    AccountSyncInput(broker="alpha"),
                    id=f"account-sync-alpha-{uuid.uuid4().hex[:8]}",
                    task_queue=queue,
                )

        yield run


async def run_signal(
    env: WorkflowEnvironment, db: Database, settings: Settings, signal_id: str
) -> dict[str, AccountReport]:
    # An earlier signal's keeper waits on a long timer: skipping time ahead to it while this
    # signal plans would make the synced state look years old (CI saw it).
    with env.auto_time_skipping_disabled():
        handle = await submit_signal(env.client, db, settings, signal(signal_id))
        report = await handle.result()
    return {line.account_id: line for line in report.accounts}


def state_of(db: Database, account_id: str) -> AccountStateRow:
    with db.transaction() as session:
        row = session.get(AccountStateRow, account_id)
        assert row is not None
        session.expunge(row)
        return row


def account_of(db: Database, account_id: str) -> AccountRow:
    with db.transaction() as session:
        row = session.get(AccountRow, account_id)
        assert row is not None
        session.expunge(row)
        return row


def positions_of(db: Database, account_id: str) -> list[PositionRow]:
    with db.transaction() as session:
        rows = list(
            session.scalars(select(PositionRow).where(PositionRow.account_id == account_id))
        )
        session.expunge_all()
        return rows


def entries_settled(db: Database) -> bool:
    with db.transaction() as session:
        return not session.scalars(
            select(RiskReservationRow).where(RiskReservationRow.status == "RESERVED")
        ).first()


def with_limits(record: AccountRecord, **limits: Any) -> AccountRecord:
    return record.model_copy(update={"limits": record.limits.model_copy(update=limits)})


# --------------------------------------------------------------------------------------------


async def test_a_sync_writes_the_reported_state_and_the_next_plan_sizes_from_it(
    time_skipping_env: WorkflowEnvironment,
    *,
    sqlite_db: Database,
    settings: Settings,
    paper: PaperBroker,
    harness_factory,
    executor,
) -> None:
    load(sqlite_db, book(account("a")))
    broker = ScriptedBroker(
        paper, readings={"a": reading("80000", balance="80000")}, held={"a": []}
    )
    async with (
        harness_factory(time_skipping_env.client, sqlite_db, settings, paper).running(),
        sync_worker(
            time_skipping_env, db=sqlite_db, settings=settings, broker=broker, executor=executor
        ) as run_sync,
    ):
        result = await run_sync()
        synced = state_of(sqlite_db, "a")
        line = (await run_signal(time_skipping_env, sqlite_db, settings, "sync-size"))["a"]

    assert result.reported == ["a"] and result.unread == []
    assert (synced.source, synced.equity, synced.peak_equity) == (
        "reported",
        Decimal(80000),
        Decimal(80000),
    )
    assert line.size is not None and line.size.equity == Decimal(80000)
    assert line.status is LegStatus.FILLED


async def test_an_equity_drop_shrinks_the_next_plans_drawdown_factor(
    time_skipping_env: WorkflowEnvironment,
    *,
    sqlite_db: Database,
    settings: Settings,
    paper: PaperBroker,
    harness_factory,
    executor,
) -> None:
    load(sqlite_db, book(account("a")))  # max drawdown 10 %
    broker = ScriptedBroker(paper, readings={"a": reading("47500")}, held={"a": []})
    async with (
        harness_factory(time_skipping_env.client, sqlite_db, settings, paper).running(),
        sync_worker(
            time_skipping_env, db=sqlite_db, settings=settings, broker=broker, executor=executor
        ) as run_sync,
    ):
        before = (await run_signal(time_skipping_env, sqlite_db, settings, "dd-before"))["a"]
        await poll_until(lambda: entries_settled(sqlite_db))
        broker.held["a"] = None  # the broker does not answer for positions: not a mismatch
        await run_sync()
        after = (await run_signal(time_skipping_env, sqlite_db, settings, "dd-after"))["a"]

    assert before.size is not None and before.size.drawdown_factor == 1
    # 5 % down from the 50,000 peak, half the 10 % limit: half the size.
    assert after.size is not None and after.size.drawdown == Decimal("0.05")
    assert after.size.drawdown_factor == Decimal("0.5")
    assert after.requested < before.requested
    assert account_of(sqlite_db, "a").reduce_only is False


async def test_the_trading_day_boundary_resets_todays_realized_loss(
    time_skipping_env: WorkflowEnvironment,
    *,
    sqlite_db: Database,
    settings: Settings,
    paper: PaperBroker,
    executor,
) -> None:
    # 2 March 2026, New York on EST (UTC-5): the FX day turns at 22:00 UTC.
    morning = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    load(sqlite_db, book(account("a", as_of=morning, realized_loss_today=Decimal(300))))
    clock = Clock(datetime(2026, 3, 2, 21, 59, tzinfo=UTC))
    broker = ScriptedBroker(paper, held={"a": []})
    broker.readings["a"] = reading("50000", at=clock.now)
    async with sync_worker(
        time_skipping_env,
        db=sqlite_db,
        settings=settings,
        broker=broker,
        executor=executor,
        clock=clock,
    ) as run_sync:
        before_boundary = await run_sync()
        kept = state_of(sqlite_db, "a")
        clock.now = datetime(2026, 3, 2, 22, 1, tzinfo=UTC)
        after_boundary = await run_sync()
        reset = state_of(sqlite_db, "a")

    assert before_boundary.day_reset == [] and kept.realized_loss_today == 300
    assert before_boundary.trading_day_start == datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
    assert after_boundary.day_reset == ["a"] and reset.realized_loss_today == 0
    assert reset.trading_day_start == datetime(2026, 3, 2, 22, 0, tzinfo=UTC)


async def test_a_position_opened_outside_the_system_turns_the_account_reduce_only_until_adopted(
    time_skipping_env: WorkflowEnvironment,
    *,
    sqlite_db: Database,
    settings: Settings,
    paper: PaperBroker,
    harness_factory,
    executor,
) -> None:
    load(sqlite_db, book(account("a")))
    # Someone buys 2 lots at the broker, by hand.
    paper.submit(
        OrderTicket(
            client_order_id="by-hand-1",
            account_id="a",
            symbol=SYMBOL,
            side=Side.BUY,
            order_type=OrderType.MARKET,
            quantity=Decimal(2),
            limit_price=None,
            reference_price=ENTRY,
        )
    )
    await poll_until(lambda: paper.positions("a"))
    async with (
        harness_factory(time_skipping_env.client, sqlite_db, settings, paper).running(),
        sync_worker(
            time_skipping_env, db=sqlite_db, settings=settings, broker=paper, executor=executor
        ) as run_sync,
    ):
        first = await run_sync()
        after_first = account_of(sqlite_db, "a")
        await run_sync()  # seen again: it acts
        held = account_of(sqlite_db, "a")
        denied = (await run_signal(time_skipping_env, sqlite_db, settings, "rec-denied"))["a"]
        accepted = sync.accept(sqlite_db, "a", operator="jane", reason="bought by hand")
        freed = account_of(sqlite_db, "a")
        again = await run_sync()
        allowed = (await run_signal(time_skipping_env, sqlite_db, settings, "rec-allowed"))["a"]

    [mismatch] = first.mismatches
    assert (mismatch.kind, mismatch.broker_quantity, mismatch.ledger_quantity) == (
        MismatchKind.UNKNOWN_TO_LEDGER,
        Decimal(2),
        Decimal(0),
    )
    assert after_first.reduce_only is False  # first sighting: a fill in flight looks the same
    assert held.reduce_only and held.reduce_only_by == "system"
    assert held.reduce_only_cause == ReduceOnlyCause.RECONCILIATION.value
    assert "EURUSD" in (held.reduce_only_reason or "")
    assert denied.denial is DenialReason.REDUCE_ONLY
    [adopted] = accepted.adopted
    assert adopted.opened is not None and accepted.released
    assert freed.reduce_only is False
    assert again.mismatches == []
    assert allowed.status is LegStatus.FILLED, (allowed.denial, allowed.reason)
    adopted_row = next(p for p in positions_of(sqlite_db, "a") if p.signal_id == adopted.opened)
    assert (adopted_row.side, adopted_row.open_quantity) == ("BUY", Decimal(2))
    with sqlite_db.transaction() as session:
        actions = [
            (r.action, r.operator)
            for r in session.scalars(select(OperatorActionRow).order_by(OperatorActionRow.id))
        ]
    assert ("reduce_only", "system") in actions
    assert ("reconcile_accept", "jane") in actions


async def test_a_ledger_position_the_broker_does_not_report_is_flagged_unknown_not_flat(
    time_skipping_env: WorkflowEnvironment,
    *,
    sqlite_db: Database,
    settings: Settings,
    paper: PaperBroker,
    harness_factory,
    executor,
) -> None:
    load(sqlite_db, book(account("a")))
    broker = ScriptedBroker(paper, held={"a": None})
    async with (
        harness_factory(time_skipping_env.client, sqlite_db, settings, paper).running(),
        sync_worker(
            time_skipping_env, db=sqlite_db, settings=settings, broker=broker, executor=executor
        ) as run_sync,
    ):
        line = (await run_signal(time_skipping_env, sqlite_db, settings, "unk"))["a"]
        await poll_until(lambda: positions_of(sqlite_db, "a") and entries_settled(sqlite_db))
        await run_sync()
        result = await run_sync()

    [mismatch] = result.mismatches
    assert (mismatch.kind, mismatch.broker_quantity, mismatch.ledger_quantity) == (
        MismatchKind.UNKNOWN,
        None,
        line.filled,
    )
    assert account_of(sqlite_db, "a").reduce_only is False
    [stored] = sync.mismatches(sqlite_db, "a")
    assert stored.kind == "UNKNOWN" and stored.broker_quantity is None


async def test_a_daily_loss_breach_turns_the_account_reduce_only_until_the_next_trading_day(
    time_skipping_env: WorkflowEnvironment,
    *,
    sqlite_db: Database,
    settings: Settings,
    paper: PaperBroker,
    executor,
) -> None:
    load(sqlite_db, book(with_limits(account("a"), daily_loss_budget=Decimal(1000))))
    clock = Clock(datetime.now(UTC))
    broker = ScriptedBroker(paper, readings={"a": reading("48800")}, held={"a": []})
    async with sync_worker(
        time_skipping_env,
        db=sqlite_db,
        settings=settings,
        broker=broker,
        executor=executor,
        clock=clock,
    ) as run_sync:
        breached = await run_sync()
        held = account_of(sqlite_db, "a")
        still = await run_sync()
        assert clock.now is not None
        clock.now += timedelta(days=1)
        broker.readings["a"] = reading("50000")
        next_day = await run_sync()
        freed = account_of(sqlite_db, "a")

    [breach] = breached.breaches
    assert breach.breach.cause is ReduceOnlyCause.DAILY_LOSS and not breach.flatten
    assert "1200" in breach.breach.reason and "1000" in breach.breach.reason
    assert held.reduce_only and held.reduce_only_cause == "daily_loss"
    assert still.breaches == []  # held already: nothing new
    assert next_day.day_reset == ["a"] and next_day.released == ["a"]
    assert freed.reduce_only is False


async def test_a_daily_loss_breach_flattens_the_account_when_its_limits_say_so(
    time_skipping_env: WorkflowEnvironment,
    *,
    sqlite_db: Database,
    settings: Settings,
    paper: PaperBroker,
    harness_factory,
    executor,
) -> None:
    record = with_limits(account("a"), daily_loss_budget=Decimal(1000), on_breach=OnBreach.FLATTEN)
    load(sqlite_db, book(record))
    broker = ScriptedBroker(paper)
    async with (
        harness_factory(time_skipping_env.client, sqlite_db, settings, paper).running(),
        sync_worker(
            time_skipping_env, db=sqlite_db, settings=settings, broker=broker, executor=executor
        ) as run_sync,
    ):
        line = (await run_signal(time_skipping_env, sqlite_db, settings, "flat-me"))["a"]
        assert line.status is LegStatus.FILLED
        await poll_until(lambda: positions_of(sqlite_db, "a") and entries_settled(sqlite_db))
        broker.readings["a"] = reading("48800")
        result = await run_sync()
        await poll_until(
            lambda: all(p.status == "CLOSED" for p in positions_of(sqlite_db, "a")),
            timeout_s=60,
        )

    [breach] = result.breaches
    assert breach.flatten and breach.breach.cause is ReduceOnlyCause.DAILY_LOSS
    assert account_of(sqlite_db, "a").reduce_only
    assert paper.positions("a") == []


def working_ledger_orders(db: Database, account_id: str) -> dict[str, str]:
    with db.transaction() as session:
        return {
            row.client_order_id: row.purpose
            for row in session.scalars(
                select(OrderRow).where(
                    OrderRow.account_id == account_id,
                    OrderRow.status.in_(["NEW", "PARTIALLY_FILLED"]),
                )
            )
        }


async def test_protective_orders_agree_with_the_broker_and_an_order_placed_by_hand_is_caught(
    time_skipping_env: WorkflowEnvironment,
    *,
    sqlite_db: Database,
    settings: Settings,
    paper: PaperBroker,
    harness_factory,
    executor,
) -> None:
    load(sqlite_db, book(account("a")))
    async with (
        harness_factory(time_skipping_env.client, sqlite_db, settings, paper).running(),
        sync_worker(
            time_skipping_env, db=sqlite_db, settings=settings, broker=paper, executor=executor
        ) as run_sync,
    ):
        with time_skipping_env.auto_time_skipping_disabled():
            await submit_signal(
                time_skipping_env.client,
                sqlite_db,
                settings,
                signal("ord-1", take_profit=Decimal("1.09100")),
            )
            # The position's keeper has its stop and take-profit working at the broker, and
            # the ledger says so (and has the position).
            await poll_until(
                lambda: (
                    sorted(working_ledger_orders(sqlite_db, "a").values())
                    == ["STOP", "TAKE_PROFIT"]
                    and len(paper.open_orders("a")) == 2
                    and any(p.open_quantity > 0 for p in positions_of(sqlite_db, "a"))
                ),
                timeout_s=60,
            )
        await poll_until(lambda: entries_settled(sqlite_db), timeout_s=60)
        agreed = [await run_sync(), await run_sync()]
        # Someone places a take-profit of their own at the broker, by hand.
        paper.submit(
            OrderTicket(
                client_order_id="by-hand-tp",
                account_id="a",
                symbol=SYMBOL,
                side=Side.SELL,
                order_type=OrderType.LIMIT,
                quantity=Decimal("0.10"),
                limit_price=Decimal("1.09500"),
                reference_price=ENTRY,
            )
        )
        first = await run_sync()
        after_first = account_of(sqlite_db, "a")
        await run_sync()
        held = account_of(sqlite_db, "a")
        accepted = sync.accept(sqlite_db, "a", operator="jane", reason="my own take-profit")
        again = await run_sync()

    assert [r.order_mismatches for r in agreed] == [[], []]
    assert [r.mismatches for r in agreed] == [[], []]
    assert [(m.client_order_id, m.kind) for m in first.order_mismatches] == [
        ("by-hand-tp", MismatchKind.UNKNOWN_TO_LEDGER)
    ]
    assert after_first.reduce_only is False
    assert held.reduce_only and held.reduce_only_cause == ReduceOnlyCause.RECONCILIATION.value
    assert "by-hand-tp UNKNOWN_TO_LEDGER" in (held.reduce_only_reason or "")
    assert [o.client_order_id for o in accepted.adopted_orders] == ["by-hand-tp"]
    assert accepted.released
    assert again.order_mismatches == [] and account_of(sqlite_db, "a").reduce_only is False
    assert working_ledger_orders(sqlite_db, "a")["by-hand-tp"] == "ADOPTED"


# --------------------------------------------------------------------------------------------
# A position closed at the broker by an order we did not send


async def starter(
    monkeypatch: pytest.MonkeyPatch, env: WorkflowEnvironment, settings: Settings, *argv: str
) -> int:
    """``starter.py ARGV`` against this server and ledger, on a thread of its own (its own
    event loop: the workers on this one go on serving); its exit code."""
    client = env.client
    monkeypatch.setenv("TEO_TEMPORAL_ADDRESS", client.service_client.config.target_host)
    monkeypatch.setenv("TEO_TEMPORAL_NAMESPACE", client.namespace)
    monkeypatch.setenv("TEO_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("TEO_TASK_QUEUE", settings.task_queue)
    get_settings.cache_clear()
    try:
        with env.auto_time_skipping_disabled():
            return await asyncio.to_thread(starter_main.main, list(argv))
    finally:
        get_settings.cache_clear()


async def test_a_position_closed_at_the_broker_is_closed_by_its_keeper_with_its_cause(
    time_skipping_env: WorkflowEnvironment,
    *,
    sqlite_db: Database,
    settings: Settings,
    paper: PaperBroker,
    harness_factory,
    executor,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A trader closes the position by hand at the broker: the sync sees it twice (reduce-only),
    the operator accepts the broker's view, and the position's keeper books the close
    (CLOSED_AT_BROKER) and cancels its stop and take-profit, which would otherwise stay working
    on a flat position (and could open a reverse one)."""
    client = time_skipping_env.client
    target = Decimal("1.09100")
    load(sqlite_db, book(account("a")))
    async with (
        harness_factory(client, sqlite_db, settings, paper).running(),
        sync_worker(
            time_skipping_env, db=sqlite_db, settings=settings, broker=paper, executor=executor
        ) as run_sync,
    ):
        with time_skipping_env.auto_time_skipping_disabled():
            handle = await submit_signal(
                client, sqlite_db, settings, signal("cab", take_profit=target)
            )
            line = (await handle.result()).accounts[0]
        assert line.status is LegStatus.FILLED
        protective = await poll_until(
            lambda: (
                [o for o in protective_orders(sqlite_db, "cab") if o.status == "NEW"]
                if len([o for o in protective_orders(sqlite_db, "cab") if o.status == "NEW"]) == 2
                else None
            )
        )
        assert sorted(o.client_order_id for o in protective) == ["cab:a:S1", "cab:a:T1"]
        # The keeper recorded the position, and the entries settled (else not compared).
        await poll_until(
            lambda: (
                any(p.stop_client_order_id for p in positions_of(sqlite_db, "a"))
                and entries_settled(sqlite_db)
            )
        )
        # The trader closes it at the broker, by hand.
        paper.submit(
            OrderTicket(
                client_order_id="closed-by-hand",
                account_id="a",
                symbol=SYMBOL,
                side=Side.SELL,
                order_type=OrderType.MARKET,
                quantity=line.filled,
                limit_price=None,
                reference_price=ENTRY,
            )
        )
        await poll_until(lambda: not paper.positions("a") or None)
        await run_sync()
        await run_sync()  # seen again: it acts
        held = account_of(sqlite_db, "a")
        capsys.readouterr()
        code = await starter(
            monkeypatch,
            time_skipping_env,
            settings,
            "reconcile",
            "--account",
            "a",
            "--accept",
            "--reason",
            "closed by hand",
            "--operator",
            "jane",
            "--json",
        )
        accepted = json.loads(capsys.readouterr().out)
        keeper: WorkflowHandle[PositionsWorkflow, PositionsResult] = client.get_workflow_handle_for(
            PositionsWorkflow.run, ids.positions_workflow_id(ids.signal_workflow_id("cab"))
        )

        async def keeper_done() -> bool:
            return (await keeper.describe()).status is WorkflowExecutionStatus.COMPLETED

        # The keeper ends once its position is closed and its orders settled (not before:
        # a keeper never told keeps its stop working on what is flat at the broker).
        await poll_until(keeper_done)
        result = await keeper.result()
        freed = account_of(sqlite_db, "a")
        again = await run_sync()
        code_positions = await starter(
            monkeypatch, time_skipping_env, settings, "positions", "--signal", "cab", "--json"
        )
        shown = json.loads(capsys.readouterr().out)
        histories = await history.fetch_with_children(client, ids.signal_workflow_id("cab"))

    assert held.reduce_only and held.reduce_only_cause == ReduceOnlyCause.RECONCILIATION.value
    assert code == 0
    [adopted] = accepted["adopted"]
    assert adopted["closed_by_keepers"] == ["cab"] and adopted["closed"] == []
    assert accepted["reduce_only_lifted"] and freed.reduce_only is False
    # The keeper booked the close, with its cause, for what the broker no longer holds.
    [position] = result.positions
    [close] = position.closes
    assert position.status is PositionStatus.CLOSED and position.open_quantity == 0
    assert (close.cause, close.quantity) == (CloseCause.CLOSED_AT_BROKER, line.filled)
    assert (close.price, close.pnl) == (position.average_entry, Decimal(0))  # price unknown
    assert "price unknown" in (position.note or "")
    # No protective order left working: in the ledger and in the paper broker's own book.
    assert {o.client_order_id: o.status for o in protective_orders(sqlite_db, "cab")} == {
        "cab:a:S1": "CANCELLED",
        "cab:a:T1": "CANCELLED",
    }
    book_orders = paper_orders(sqlite_db, entries_only=False)
    assert (book_orders["cab:a:S1"].status, book_orders["cab:a:T1"].status) == (
        "CANCELLED",
        "CANCELLED",
    )
    assert protection_violations(sqlite_db) == []
    [row] = positions_of(sqlite_db, "a")
    assert (row.status, row.open_quantity) == ("CLOSED", Decimal(0))
    assert state_of(sqlite_db, "a").open_positions == 0
    assert again.mismatches == [] and again.order_mismatches == []
    # The positions command and the audit show the cause.
    assert code_positions == 0
    [document] = shown
    assert [(c["cause"], Decimal(c["quantity"])) for c in document["closes"]] == [
        ("CLOSED_AT_BROKER", line.filled)
    ]
    trail = await audit.audit_histories(histories)
    assert trail.ok, "\n".join(audit.render(trail))
    assert trail.positions is not None and trail.positions.ok
    rendered = "\n".join(audit.render(trail))
    assert "CLOSED_AT_BROKER" in rendered

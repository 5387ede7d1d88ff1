"""Positions, one test per path, on the time-skipping server with the real activities, SQLite
and the paper broker, whose market each test drives: the stop and take-profit placed for what
filled, resized by a later fill, one-cancels-other when either fills (fully or partly), a
refused stop, and a position a reroute opened. Every test ends with the protection invariant:
no protective order working on a flat position, never more working than is open."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.api.testservice.v1 import SleepRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from orchestrator.adapters.book_file import AccountRecord
from orchestrator.adapters.brokers.base import BrokerOrder, OrderTicket
from orchestrator.adapters.brokers.paper import PaperBroker
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import AccountStateRow, OrderRow, PositionRow
from orchestrator.config import Settings
from orchestrator.domain import ids
from orchestrator.domain.contracts.positions import PositionsResult
from orchestrator.domain.errors import BrokerUnavailable
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.positions import CloseCause, PositionStatus, RefusedStop
from orchestrator.domain.report import AccountReport, LegStatus
from orchestrator.services import audit, history
from orchestrator.services.submit import submit_signal
from tests.support import (
    account,
    book,
    is_entry,
    keeper_told,
    load,
    poll_until,
    protection_violations,
    protective_orders,
    signal,
)
from workflows.positions import PositionsWorkflow

SYMBOL = "EURUSD"
ENTRY = Decimal("1.08500")
STOP = Decimal("1.08200")
TARGET = Decimal("1.09100")


@pytest.fixture
def settings(test_settings: Settings) -> Settings:
    return test_settings.model_copy(
        update={
            "delay_min_s": Decimal(0),
            "delay_max_s": Decimal(1),
            "size_variance": Decimal(0),
            "completion_deadline_s": 60,
        }
    )


@pytest.fixture
def paper(sqlite_db: Database) -> PaperBroker:
    broker = PaperBroker(sqlite_db)
    broker.market.set_quote(SYMBOL, ENTRY, ENTRY + Decimal("0.00002"))
    return broker


def keeper_of(client: Client, signal_id: str) -> WorkflowHandle[PositionsWorkflow, PositionsResult]:
    return client.get_workflow_handle_for(
        PositionsWorkflow.run, ids.positions_workflow_id(ids.signal_workflow_id(signal_id))
    )


def orders_by_id(db: Database, signal_id: str) -> dict[str, OrderRow]:
    return {o.client_order_id: o for o in protective_orders(db, signal_id)}


def working(db: Database, signal_id: str) -> dict[str, OrderRow]:
    return {
        cid: o
        for cid, o in orders_by_id(db, signal_id).items()
        if o.status in ("NEW", "PARTIALLY_FILLED")
    }


def state_of(db: Database, account_id: str) -> AccountStateRow:
    with db.transaction() as session:
        row = session.get(AccountStateRow, account_id)
        assert row is not None
        session.expunge(row)
        return row


def position_row(db: Database, signal_id: str, account_id: str) -> PositionRow | None:
    with db.transaction() as session:
        row = session.scalar(
            select(PositionRow).where(
                PositionRow.signal_id == signal_id, PositionRow.account_id == account_id
            )
        )
        if row is not None:
            session.expunge(row)
        return row


def with_budget(record: AccountRecord, budget: Decimal) -> AccountRecord:
    limits = record.limits.model_copy(update={"daily_loss_budget": budget})
    return record.model_copy(update={"limits": limits})


async def run_signal(
    client: Client, db: Database, settings: Settings, signal_id: str, **overrides: object
) -> dict[str, AccountReport]:
    handle = await submit_signal(client, db, settings, signal(signal_id, **overrides))
    report = await handle.result()
    return {line.account_id: line for line in report.accounts}


# --------------------------------------------------------------------------------------------


async def test_a_fill_gets_its_stop_and_take_profit_for_exactly_the_filled_quantity(
    ts_client: Client, sqlite_db: Database, settings: Settings, paper: PaperBroker, harness_factory
) -> None:
    load(sqlite_db, book(account("a")))
    async with harness_factory(ts_client, sqlite_db, settings, paper).running():
        lines = await run_signal(ts_client, sqlite_db, settings, "p-fill", take_profit=TARGET)
        placed = await poll_until(lambda: len(working(sqlite_db, "p-fill")) == 2 or None)
        row = await poll_until(lambda: position_row(sqlite_db, "p-fill", "a"))
        held = await keeper_of(ts_client, "p-fill").query(PositionsWorkflow.positions)

    line = lines["a"]
    assert line.status is LegStatus.FILLED and line.position is not None
    assert placed
    orders = working(sqlite_db, "p-fill")
    stop, target = orders["p-fill:a:S1"], orders["p-fill:a:T1"]
    assert (stop.order_type, stop.side, stop.stop_price, stop.quantity) == (
        "STOP",
        "SELL",
        STOP,
        line.filled,
    )
    assert (target.order_type, target.side, target.limit_price, target.quantity) == (
        "LIMIT",
        "SELL",
        TARGET,
        line.filled,
    )
    [position] = held
    assert (position.status, position.open_quantity) == (PositionStatus.OPEN, line.filled)
    assert row.stop_client_order_id == "p-fill:a:S1"
    assert (row.status, row.open_quantity) == ("OPEN", line.filled)
    assert protection_violations(sqlite_db) == []


class LosesTheStopsAnswer(PaperBroker):
    """The paper broker, except that the answer to the first stop order sent is lost after the
    broker took it (a timeout after sending); counts what is sent, per client order id."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.sent: dict[str, int] = {}

    def submit(self, ticket: OrderTicket) -> BrokerOrder:
        cid = ticket.client_order_id
        self.sent[cid] = self.sent.get(cid, 0) + 1
        order = super().submit(ticket)
        if cid.endswith(":S1") and self.sent[cid] == 1:
            raise BrokerUnavailable("timed out waiting for the acknowledgement")
        return order


async def test_a_stop_whose_answer_was_lost_is_found_by_its_id_and_never_sent_twice(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    broker = LosesTheStopsAnswer(sqlite_db)
    broker.market.set_quote(SYMBOL, ENTRY, ENTRY + Decimal("0.00002"))
    load(sqlite_db, book(account("a")))
    async with harness_factory(ts_client, sqlite_db, settings, broker).running():
        line = (await run_signal(ts_client, sqlite_db, settings, "p-lost", take_profit=TARGET))["a"]
        await poll_until(lambda: len(working(sqlite_db, "p-lost")) == 2 or None)

    # The retry asked the broker for p-lost:a:S1 first, found it, and sent nothing again.
    assert {cid: n for cid, n in broker.sent.items() if not is_entry(cid)} == {
        "p-lost:a:S1": 1,
        "p-lost:a:T1": 1,
    }
    orders = working(sqlite_db, "p-lost")
    assert {cid: o.quantity for cid, o in orders.items()} == {
        "p-lost:a:S1": line.filled,
        "p-lost:a:T1": line.filled,
    }
    assert protection_violations(sqlite_db) == []


class CompletionHeld(PaperBroker):
    """The paper broker, except that an account's entry orders after its first (a completion)
    are reported as they were acknowledged until ``release`` is set: the test, not the clock,
    decides when the completion's fill reaches the workflows."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.release = threading.Event()
        self._first: dict[str, str] = {}
        self._held: dict[str, BrokerOrder] = {}

    def submit(self, ticket: OrderTicket) -> BrokerOrder:
        order = super().submit(ticket)
        cid = ticket.client_order_id
        if is_entry(cid) and self._first.setdefault(ticket.account_id, cid) != cid:
            self._held.setdefault(cid, order)
        return self._held.get(cid, order) if not self.release.is_set() else order

    def status(self, client_order_id: str) -> BrokerOrder | None:
        order = super().status(client_order_id)
        if self.release.is_set():
            return order
        return self._held.get(client_order_id, order)


async def waiting_on_a_timer(handle: WorkflowHandle[Any, Any], at_least: timedelta) -> bool:
    """Whether the workflow's last event is a timer of ``at_least`` started: it is idle, and
    stays so that long unless something is sent to it."""
    events = [e async for e in handle.fetch_history_events()]
    last = events[-1] if events else None
    return (
        last is not None
        and last.HasField("timer_started_event_attributes")
        and last.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta() >= at_least
    )


async def test_a_partial_fill_is_protected_then_resized_when_its_completion_fills(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    # Half of the entry fills; the completion's fill is held back until the half is protected
    # and the keeper is idle on a timer of 2 s or more. Sent while a timer of the keeper came
    # due, the fill's signal makes the keeper cancel a timer that had just fired, which the
    # time-skipping server refuses for good ("invalid history builder state for action",
    # temporalio/sdk-java#3088): a 1 s latency on the completion met the keeper's 1 s check.
    half = {"fill": "partial", "partial_ratio": "0.5", "partial_orders": 1, "latency_ms": 200}
    broker = CompletionHeld(sqlite_db)
    broker.market.set_quote(SYMBOL, ENTRY, ENTRY + Decimal("0.00002"))
    load(sqlite_db, book(account("thin", paper=half)))
    async with harness_factory(ts_client, sqlite_db, settings, broker).running():
        handle = await submit_signal(
            ts_client, sqlite_db, settings, signal("p-resize", take_profit=TARGET)
        )
        report = asyncio.ensure_future(handle.result())
        protected_half = await poll_until(
            lambda: {o.quantity for o in working(sqlite_db, "p-resize").values()}
        )
        await poll_until(
            lambda: waiting_on_a_timer(keeper_of(ts_client, "p-resize"), timedelta(seconds=2))
        )
        assert not report.done()  # the completion's fill is still held back
        broker.release.set()
        line = {a.account_id: a for a in (await report).accounts}["thin"]
        await poll_until(
            lambda: {o.quantity for o in working(sqlite_db, "p-resize").values()} == {line.filled}
        )
        await poll_until(
            lambda: (
                (p := position_row(sqlite_db, "p-resize", "thin")) is not None
                and p.open_quantity == line.filled
            )
        )

    assert line.status is LegStatus.FILLED and line.completion is not None
    [half_filled] = protected_half
    assert half_filled < line.filled
    orders = orders_by_id(sqlite_db, "p-resize")
    first, resized = orders["p-resize:thin:S1"], orders["p-resize:thin:S2"]
    assert (first.quantity, first.status) == (half_filled, "CANCELLED")
    assert (resized.quantity, resized.status) == (line.filled, "NEW")
    assert orders["p-resize:thin:T1"].status == "CANCELLED"
    assert orders["p-resize:thin:T2"].quantity == line.filled
    assert protection_violations(sqlite_db) == []


async def test_a_stop_hit_closes_the_position_cancels_its_take_profit_and_shrinks_the_next_budget(
    ts_client: Client, sqlite_db: Database, settings: Settings, paper: PaperBroker, harness_factory
) -> None:
    load(sqlite_db, book(with_budget(account("a"), Decimal(800))))
    async with harness_factory(ts_client, sqlite_db, settings, paper).running():
        first = (await run_signal(ts_client, sqlite_db, settings, "p-stop", take_profit=TARGET))[
            "a"
        ]
        await poll_until(lambda: len(working(sqlite_db, "p-stop")) == 2 or None)
        # The market gaps through the stop: the stop fills at the first bid through it.
        gap = STOP - Decimal("0.00050")
        paper.market.set_quote(SYMBOL, gap, gap + Decimal("0.00002"))
        result = await keeper_of(ts_client, "p-stop").result()
        after_stop = state_of(sqlite_db, "a")
        second = (await run_signal(ts_client, sqlite_db, settings, "p-next"))["a"]

    [position] = result.positions
    assert position.status is PositionStatus.CLOSED and position.open_quantity == 0
    [close] = position.closes
    assert (close.cause, close.quantity, close.price) == (CloseCause.STOP_HIT, first.filled, gap)
    loss = (ENTRY - gap) / Decimal("0.00001") * first.filled  # EURUSD: 1 USD a tick a lot
    assert close.pnl == -loss == result.realized_pnl
    orders = orders_by_id(sqlite_db, "p-stop")
    assert orders["p-stop:a:S1"].status == "FILLED"
    assert orders["p-stop:a:T1"].status == "CANCELLED"
    assert after_stop.realized_loss_today == loss
    assert after_stop.risk_committed_today == 0
    assert after_stop.open_positions == 0
    # What was left of the day's budget after the loss bounds the next signal's leg.
    assert second.position is not None
    per_lot = (ENTRY - STOP) / Decimal("0.00001")  # risk of one lot at the stop
    assert second.requested * per_lot <= Decimal(800) - loss < first.requested * per_lot
    assert second.requested < first.requested
    row = position_row(sqlite_db, "p-stop", "a")
    assert row is not None and row.status == "CLOSED" and row.realized_pnl == -loss
    assert protection_violations(sqlite_db) == []


async def test_a_stop_that_fills_as_it_is_placed_is_booked_once_and_never_sent_again(
    ts_client: Client, sqlite_db: Database, settings: Settings, paper: PaperBroker, harness_factory
) -> None:
    # The market is through the stop by the time the position is protected: the stop fills
    # the moment it is placed. Its fill closes the position; no second stop follows it, and
    # no take-profit goes out for what is no longer open.
    gap = STOP - Decimal("0.00050")
    paper.market.set_quote(SYMBOL, gap, gap + Decimal("0.00002"))
    load(sqlite_db, book(account("a")))
    async with harness_factory(ts_client, sqlite_db, settings, paper).running():
        line = (await run_signal(ts_client, sqlite_db, settings, "p-gap", take_profit=TARGET))["a"]
        result = await keeper_of(ts_client, "p-gap").result()

    [position] = result.positions
    assert position.status is PositionStatus.CLOSED and position.open_quantity == 0
    [close] = position.closes
    assert (close.cause, close.quantity) == (CloseCause.STOP_HIT, line.filled)
    orders = orders_by_id(sqlite_db, "p-gap")
    # Nothing was left open for a take-profit to cover: none was sent.
    assert sorted(orders) == ["p-gap:a:S1"]
    assert orders["p-gap:a:S1"].status == "FILLED"
    assert state_of(sqlite_db, "a").open_positions == 0
    assert protection_violations(sqlite_db) == []


async def test_a_take_profit_hit_closes_the_position_and_cancels_its_stop(
    ts_client: Client, sqlite_db: Database, settings: Settings, paper: PaperBroker, harness_factory
) -> None:
    load(sqlite_db, book(account("a")))
    async with harness_factory(ts_client, sqlite_db, settings, paper).running():
        line = (await run_signal(ts_client, sqlite_db, settings, "p-tp", take_profit=TARGET))["a"]
        await poll_until(lambda: len(working(sqlite_db, "p-tp")) == 2 or None)
        paper.market.set_quote(SYMBOL, TARGET + Decimal("0.00010"), TARGET + Decimal("0.00012"))
        result = await keeper_of(ts_client, "p-tp").result()

    [position] = result.positions
    [close] = position.closes
    assert close.cause is CloseCause.TAKE_PROFIT_HIT
    assert close.price >= TARGET and close.pnl > 0
    orders = orders_by_id(sqlite_db, "p-tp")
    assert orders["p-tp:a:T1"].status == "FILLED"
    assert orders["p-tp:a:S1"].status == "CANCELLED"
    state = state_of(sqlite_db, "a")
    assert state.realized_loss_today == 0 and state.open_positions == 0
    assert state.balance == Decimal(50000) + close.pnl
    assert line.filled == close.quantity
    assert protection_violations(sqlite_db) == []


async def test_a_stop_refused_by_the_broker_closes_the_position_at_market(
    ts_client: Client, sqlite_db: Database, settings: Settings, paper: PaperBroker, harness_factory
) -> None:
    refuses = {"stop_refusal": "Invalid stops (too close to market)"}
    load(sqlite_db, book(account("a", paper=refuses)))
    async with harness_factory(ts_client, sqlite_db, settings, paper).running():
        line = (await run_signal(ts_client, sqlite_db, settings, "p-refused"))["a"]
        result = await keeper_of(ts_client, "p-refused").result()

    [position] = result.positions
    assert position.status is PositionStatus.CLOSED
    [close] = position.closes
    assert (close.cause, close.quantity) == (CloseCause.STOP_REFUSED, line.filled)
    assert position.note is not None and "Invalid stops (too close to market)" in position.note
    orders = orders_by_id(sqlite_db, "p-refused")
    assert orders["p-refused:a:S1"].status == "REJECTED"
    assert orders["p-refused:a:S1"].reject_text == "Invalid stops (too close to market)"
    assert protection_violations(sqlite_db) == []


class RefusesMarketCloses(PaperBroker):
    """The paper broker, except that it refuses every closing order at market, as QuickFIX's
    ``ordermatch`` refuses any market order."""

    TEXT = "Unsupported order type: use limit"

    def submit(self, ticket: OrderTicket) -> BrokerOrder:
        if ticket.client_order_id.rsplit(":", 1)[-1].startswith("C"):
            return BrokerOrder(
                client_order_id=ticket.client_order_id,
                broker_order_id=None,
                status=OrderStatus.REJECTED,
                quantity=ticket.quantity,
                executions=(),
                reject_text=self.TEXT,
            )
        return super().submit(ticket)


async def test_a_refused_stop_whose_close_at_market_is_refused_too_stays_open_unprotected(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    # A venue with neither stop nor market orders (ordermatch): the default rule closes at
    # market, the close is refused too, and the position stays open, UNPROTECTED, with both
    # texts, its take-profit still working; the keeper neither hangs nor sends the stop again.
    broker = RefusesMarketCloses(sqlite_db)
    broker.market.set_quote(SYMBOL, ENTRY, ENTRY + Decimal("0.00002"))
    load(sqlite_db, book(account("a", paper={"stop_refusal": "Stop orders not supported"})))
    async with harness_factory(ts_client, sqlite_db, settings, broker).running():
        line = (await run_signal(ts_client, sqlite_db, settings, "p-noclose", take_profit=TARGET))[
            "a"
        ]
        row = await poll_until(
            lambda: (
                (r := position_row(sqlite_db, "p-noclose", "a")) is not None
                and r.status == "UNPROTECTED"
                and working(sqlite_db, "p-noclose")
                and r
            )
        )
        [held] = await keeper_of(ts_client, "p-noclose").query(PositionsWorkflow.positions)

    assert (held.status, held.open_quantity, held.closes) == (
        PositionStatus.UNPROTECTED,
        line.filled,
        [],
    )
    assert row.note is not None
    assert "stop refused by the broker: Stop orders not supported" in row.note
    assert f"the close at market was rejected: {RefusesMarketCloses.TEXT}" in row.note
    orders = orders_by_id(sqlite_db, "p-noclose")
    with sqlite_db.transaction() as session:
        closing = session.get(OrderRow, "p-noclose:a:C1")
        assert closing is not None and closing.purpose == "CLOSE"
        assert (closing.status, closing.reject_text) == ("REJECTED", RefusesMarketCloses.TEXT)
    assert orders["p-noclose:a:S1"].status == "REJECTED"
    assert not any(cid.endswith(":S2") for cid in orders)  # the stop is not sent again
    [target] = working(sqlite_db, "p-noclose").values()
    assert (target.purpose, target.quantity) == ("TAKE_PROFIT", line.filled)
    assert protection_violations(sqlite_db) == []


async def test_a_stop_refused_by_the_broker_can_be_kept_open_marked_unprotected(
    ts_client: Client, sqlite_db: Database, settings: Settings, paper: PaperBroker, harness_factory
) -> None:
    keep = settings.model_copy(update={"on_refused_stop": RefusedStop.KEEP})
    load(sqlite_db, book(account("a", paper={"stop_refusal": "Stop orders not supported"})))
    async with harness_factory(ts_client, sqlite_db, keep, paper).running():
        await run_signal(ts_client, sqlite_db, keep, "p-keep", take_profit=TARGET)
        row = await poll_until(
            lambda: (
                (r := position_row(sqlite_db, "p-keep", "a")) is not None
                and r.status == "UNPROTECTED"
                and r
            )
        )
        [held] = await keeper_of(ts_client, "p-keep").query(PositionsWorkflow.positions)

    assert held.status is PositionStatus.UNPROTECTED and held.open_quantity > 0
    assert row.note is not None and "Stop orders not supported" in row.note
    # Its take-profit still works, for exactly what is open.
    [target] = working(sqlite_db, "p-keep").values()
    assert (target.purpose, target.quantity) == ("TAKE_PROFIT", held.open_quantity)
    assert protection_violations(sqlite_db) == []


async def test_a_position_a_reroute_opened_is_protected_the_same_way(
    ts_client: Client, sqlite_db: Database, settings: Settings, paper: PaperBroker, harness_factory
) -> None:
    load(
        sqlite_db,
        book(
            account("rejects", paper={"fill": "reject", "reject_text": "Trade disabled"}),
            account("spare", reserve_only=True),
        ),
    )
    async with harness_factory(ts_client, sqlite_db, settings, paper).running():
        lines = await run_signal(ts_client, sqlite_db, settings, "p-reroute", take_profit=TARGET)
        await poll_until(lambda: len(working(sqlite_db, "p-reroute")) == 2 or None)

    spare = lines["spare"]
    assert spare.filled > 0 and spare.position is not None
    assert "rejects" not in {o.account_id for o in protective_orders(sqlite_db)}
    orders = working(sqlite_db, "p-reroute")
    assert {o.client_order_id: o.quantity for o in orders.values()} == {
        "p-reroute:spare:S1": spare.filled,
        "p-reroute:spare:T1": spare.filled,
    }
    assert protection_violations(sqlite_db) == []


async def test_a_stop_partly_filled_reduces_its_take_profit_to_what_is_left(
    time_skipping_env: WorkflowEnvironment,
    sqlite_db: Database,
    settings: Settings,
    paper: PaperBroker,
    harness_factory,
) -> None:
    ts_client = time_skipping_env.client
    thin_market = {"resting_fill_ratio": "0.4"}
    load(sqlite_db, book(account("a", paper=thin_market)))
    async with harness_factory(ts_client, sqlite_db, settings, paper).running():
        line = (await run_signal(ts_client, sqlite_db, settings, "p-part", take_profit=TARGET))["a"]
        await poll_until(lambda: len(working(sqlite_db, "p-part")) == 2 or None)
        paper.market.set_quote(SYMBOL, STOP, STOP + Decimal("0.00002"))
        await time_skipping_env.sleep(40)  # past the keeper's longest wait between checks
        left = await poll_until(
            lambda: (
                (p := position_row(sqlite_db, "p-part", "a")) is not None
                and 0 < p.open_quantity < line.filled
                and p
            )
        )
        await poll_until(
            lambda: (
                {
                    o.purpose: o.quantity - o.filled_quantity
                    for o in working(sqlite_db, "p-part").values()
                }
                == {"STOP": left.open_quantity, "TAKE_PROFIT": left.open_quantity}
            )
        )

    assert left.open_quantity < line.filled
    orders = orders_by_id(sqlite_db, "p-part")
    assert orders["p-part:a:S1"].status == "PARTIALLY_FILLED"
    assert orders["p-part:a:T1"].status == "CANCELLED"
    assert orders["p-part:a:T2"].quantity == left.open_quantity
    assert protection_violations(sqlite_db) == []


async def skip(env: WorkflowEnvironment, duration: timedelta) -> None:
    """``env.sleep`` with an RPC timeout to match: a skip of hours runs hundreds of the
    keeper's checks, which on a loaded machine outlast the test service's default timeout."""
    request = SleepRequest()
    request.duration.FromTimedelta(duration)
    await env.client.test_service.unlock_time_skipping_with_sleep(
        request, timeout=timedelta(minutes=5)
    )


async def test_a_position_open_for_hours_continues_its_keeper_as_new_and_is_still_kept(
    time_skipping_env: WorkflowEnvironment,
    sqlite_db: Database,
    settings: Settings,
    paper: PaperBroker,
    harness_factory,
) -> None:
    # Seven hours of checks every 30 s pass the keeper's history budget: it continues as new,
    # carrying the position and its orders; the stop that fills after is booked once, the
    # take-profit cancelled, and the audit follows the keeper's runs.
    ts_client = time_skipping_env.client
    load(sqlite_db, book(account("a")))
    async with harness_factory(ts_client, sqlite_db, settings, paper).running():
        line = (await run_signal(ts_client, sqlite_db, settings, "p-weeks", take_profit=TARGET))[
            "a"
        ]
        await poll_until(lambda: len(working(sqlite_db, "p-weeks")) == 2 or None)
        keeper = keeper_of(ts_client, "p-weeks")
        first_run = (await keeper.describe()).run_id
        await skip(time_skipping_env, timedelta(hours=7))
        later_run = (await keeper.describe()).run_id
        gap = STOP - Decimal("0.00050")
        paper.market.set_quote(SYMBOL, gap, gap + Decimal("0.00002"))
        # The next check books the stop (30 s of the server's clock away at most). Waited for
        # by describing the keeper: a result() long poll across its runs here came back with
        # no close event from the time-skipping server.
        for _ in range(10):
            if (await keeper.describe()).status is not WorkflowExecutionStatus.RUNNING:
                break
            await skip(time_skipping_env, timedelta(seconds=30))
        result = await keeper.result()
        histories = await history.fetch_with_children(ts_client, ids.signal_workflow_id("p-weeks"))

    assert later_run != first_run
    runs = [h for h in histories if h.workflow_id == keeper.id]
    assert len(runs) >= 2 and history.continued_as(runs[0]) is not None
    [position] = result.positions
    [close] = position.closes
    assert (close.cause, close.quantity, close.price) == (CloseCause.STOP_HIT, line.filled, gap)
    orders = orders_by_id(sqlite_db, "p-weeks")
    assert sorted(orders) == ["p-weeks:a:S1", "p-weeks:a:T1"]  # nothing re-sent by a new run
    assert (orders["p-weeks:a:S1"].status, orders["p-weeks:a:T1"].status) == (
        "FILLED",
        "CANCELLED",
    )
    trail = await audit.audit_histories(histories)
    assert trail.ok, "\n".join(audit.render(trail))
    assert trail.positions is not None and trail.positions.ok
    assert protection_violations(sqlite_db) == []


async def test_a_leg_filled_whole_tells_its_keeper_once_a_partial_one_twice(
    ts_client: Client, sqlite_db: Database, settings: Settings, paper: PaperBroker, harness_factory
) -> None:
    """An order filled whole needs no completion: its leg tells the keeper its final fill once,
    from its report line. A partial fill tells it at once (protected before the completion),
    then again with the completion's total. Both positions are protected for what filled."""
    partial = {"fill": "partial", "partial_ratio": "0.5", "partial_orders": 1}
    load(sqlite_db, book(account("whole"), account("part", paper=partial)))
    async with harness_factory(ts_client, sqlite_db, settings, paper).running():
        lines = await run_signal(ts_client, sqlite_db, settings, "p-once")
        filled = {a: line.filled for a, line in lines.items()}

        def stops() -> dict[str, Decimal]:
            return {o.account_id: o.quantity for o in working(sqlite_db, "p-once").values()}

        def recorded_open() -> dict[str, Decimal]:
            rows = {a: position_row(sqlite_db, "p-once", a) for a in filled}
            return {a: row.open_quantity for a, row in rows.items() if row is not None}

        # The partial's stop is resized, and its position recorded (a step after), once the
        # keeper hears of the completion.
        await poll_until(lambda: stops() == filled == recorded_open() or None)
        [recorded] = [
            h
            for h in await history.fetch_with_children(ts_client, ids.signal_workflow_id("p-once"))
            if h.workflow_id == ids.signal_workflow_id("p-once")
        ]

    told: dict[str, list[bool]] = {}
    for fill in (fill for fills in keeper_told(recorded) for fill in fills):
        told.setdefault(fill.account_id, []).append(fill.final)
    assert told == {"whole": [True], "part": [False, True]}
    assert {a: line.status for a, line in lines.items()} == {
        "whole": LegStatus.FILLED,
        "part": LegStatus.FILLED,
    }
    assert lines["part"].filled > lines["part"].requested / 2  # the completion filled too
    assert protection_violations(sqlite_db) == []

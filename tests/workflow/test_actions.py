"""Actions on positions, one test per path, on the time-skipping server with the real
activities, SQLite and the paper broker: MODIFY moves every account's stop (and refuses one
through the market, changing nothing); CLOSE of a share rounds per account's lot step and
closes a whole position rather than leave a stub below the minimum lot; a CLOSE of a signal
still waiting on its timers; FLATTEN of a symbol and of the book; the same action twice acts
once. Each ends with the protection invariant."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from orchestrator.adapters.brokers.paper import PaperBroker
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.config import Settings
from orchestrator.domain import ids
from orchestrator.domain.actions import ActionKind, ActionReport, ActionStatus, TradeAction
from orchestrator.domain.book import SymbolSpec
from orchestrator.domain.contracts.actions import ActionInput
from orchestrator.domain.contracts.positions import KeeperAction
from orchestrator.domain.errors import DuplicateSignal
from orchestrator.domain.positions import CloseCause
from orchestrator.domain.progress import SignalProgress
from orchestrator.domain.report import LegStatus
from orchestrator.services import audit, history, operators
from orchestrator.services.actions import submit_action
from orchestrator.services.submit import submit_signal
from tests.support import (
    EURUSD_ALPHA,
    account,
    book,
    load,
    poll_until,
    protection_gaps,
    protection_violations,
    protective_orders,
    signal,
)
from workflows.actions import TradeActionWorkflow
from workflows.positions import PositionsWorkflow
from workflows.registry import WORKFLOWS
from workflows.signal import SignalExecutionWorkflow

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
    broker.market.set_quote("GBPUSD", Decimal("1.27000"), Decimal("1.27003"))
    return broker


def action(action_id: str, kind: ActionKind, **fields: Any) -> TradeAction:
    return TradeAction.model_validate({"action_id": action_id, "action": kind, **fields})


def open_positions(db: Database, signal_id: str | None = None) -> list[repository.PositionView]:
    with db.transaction() as session:
        return repository.list_positions(session, signal_id=signal_id, open_only=True)


def working(db: Database, signal_id: str) -> dict[str, Any]:
    return {
        o.client_order_id: o
        for o in protective_orders(db, signal_id)
        if o.status in ("NEW", "PARTIALLY_FILLED")
    }


async def opened(
    client: Client, db: Database, settings: Settings, signal_id: str, accounts: int, **fields: Any
) -> None:
    """The signal run to its end, and every position it opened protected at the broker."""
    handle = await submit_signal(client, db, settings, signal(signal_id, **fields))
    report = await handle.result()
    assert all(line.status is LegStatus.FILLED for line in report.accounts)
    await poll_until(
        lambda: (len(open_positions(db, signal_id)) == accounts and not protection_gaps(db)) or None
    )


async def run_action(
    client: Client, db: Database, settings: Settings, act: TradeAction
) -> ActionReport:
    handle = await submit_action(client, db, settings, act)
    return await handle.result()


# --------------------------------------------------------------------------------------------


async def test_modify_moves_the_stop_and_take_profit_on_every_account_of_the_signal(
    ts_client: Client, sqlite_db: Database, settings: Settings, paper: PaperBroker, harness_factory
) -> None:
    load(sqlite_db, book(account("a"), account("b")))
    async with harness_factory(ts_client, sqlite_db, settings, paper).running():
        await opened(ts_client, sqlite_db, settings, "m-x", 2, take_profit=TARGET)
        new_stop, new_target = Decimal("1.08350"), Decimal("1.09300")
        report = await run_action(
            ts_client,
            sqlite_db,
            settings,
            action(
                "m-1", ActionKind.MODIFY, signal_id="m-x", stop=new_stop, take_profit=new_target
            ),
        )
        orders = working(sqlite_db, "m-x")
        held = open_positions(sqlite_db, "m-x")

    assert report.status is ActionStatus.COMPLETED
    assert [(a.account_id, a.refused) for a in report.accounts] == [("a", None), ("b", None)]
    assert all("stop 1.082 → 1.0835" in a.done for a in report.accounts)
    # One stop and one take-profit per account, each at its new price, for the open quantity.
    for position in held:
        mine = [o for o in orders.values() if o.account_id == position.account_id]
        assert sorted((o.purpose, o.stop_price or o.limit_price) for o in mine) == [
            ("STOP", new_stop),
            ("TAKE_PROFIT", new_target),
        ]
        assert all(o.quantity == position.open_quantity for o in mine)
        assert (position.stop, position.take_profit) == (new_stop, new_target)
    # Replaced (the paper broker cancel/replaces): the first generation is no longer working.
    assert not any(cid.endswith((":S1", ":T1")) for cid in orders)
    assert protection_violations(sqlite_db) == []


async def test_a_modify_whose_stop_is_through_the_market_is_refused_and_changes_nothing(
    ts_client: Client, sqlite_db: Database, settings: Settings, paper: PaperBroker, harness_factory
) -> None:
    load(sqlite_db, book(account("a")))
    async with harness_factory(ts_client, sqlite_db, settings, paper).running():
        await opened(ts_client, sqlite_db, settings, "r-x", 1)
        before = working(sqlite_db, "r-x")
        # The bid is 1.08500: a long's stop at 1.08600 would sell at once.
        report = await run_action(
            ts_client,
            sqlite_db,
            settings,
            action("r-1", ActionKind.MODIFY, signal_id="r-x", stop=Decimal("1.08600")),
        )
        after = working(sqlite_db, "r-x")
        [position] = open_positions(sqlite_db, "r-x")

    assert report.status is ActionStatus.REFUSED
    assert "the stop 1.08600 is through the market" in report.message
    assert "bid 1.085" in report.message and "nothing changed" in report.message
    assert report.accounts == []
    assert sorted(after) == sorted(before) == ["r-x:a:S1"]
    assert position.stop == STOP


async def test_close_of_half_rounds_down_per_lot_step_and_never_leaves_a_stub_below_the_minimum(
    ts_client: Client, sqlite_db: Database, settings: Settings, paper: PaperBroker, harness_factory
) -> None:
    # Account "coarse" trades a contract of 0.5-lot minimum in 0.01 steps: half of its position
    # would leave less than the minimum, so the whole of it closes.
    coarse = SymbolSpec.model_validate(
        {
            **EURUSD_ALPHA.model_dump(),
            "broker": "coarse",
            "min_lot": "0.5",
        }
    )
    load(
        sqlite_db,
        book(account("fine"), account("coarse", broker="coarse", equity="24000"), symbols=[coarse]),
    )
    async with harness_factory(ts_client, sqlite_db, settings, paper).running():
        await opened(ts_client, sqlite_db, settings, "c-x", 2, take_profit=TARGET)
        held = {p.account_id: p for p in open_positions(sqlite_db, "c-x")}
        report = await run_action(
            ts_client,
            sqlite_db,
            settings,
            action("c-1", ActionKind.CLOSE, signal_id="c-x", fraction=Decimal("0.5")),
        )
        left = {p.account_id: p for p in open_positions(sqlite_db, "c-x")}
        orders = working(sqlite_db, "c-x")
        trade = await audit.audit_histories(
            await history.fetch_with_children(ts_client, "signal-c-x")
        )
        own = await audit.audit_histories(
            await history.fetch_with_children(ts_client, "signal-c-1")
        )

    fine, coarse_held = held["fine"].open_quantity, held["coarse"].open_quantity
    assert coarse_held < 2 * Decimal("0.5")  # so half of it leaves a stub below 0.5
    half = (fine / 2).quantize(Decimal("0.01"), rounding="ROUND_DOWN")
    lines = {a.account_id: a for a in report.accounts}
    assert (lines["fine"].closed, lines["fine"].open_quantity) == (half, fine - half)
    assert lines["coarse"].closed == coarse_held
    assert lines["coarse"].open_quantity == 0
    assert set(left) == {"fine"} and left["fine"].open_quantity == fine - half
    # What is left keeps a stop and a take-profit for exactly what is left; nothing works on
    # the closed position.
    mine = [o for o in orders.values() if o.account_id == "fine"]
    assert sorted(o.purpose for o in mine) == ["STOP", "TAKE_PROFIT"]
    assert all(o.quantity - o.filled_quantity == fine - half for o in mine)
    assert not any(o.account_id == "coarse" for o in orders.values())
    # The trade's audit tells the action, and re-derives the reduced protective orders.
    assert trade.ok, audit.render(trade)
    text = "\n".join(audit.render(trade))
    assert "action c-1: CLOSE 50% (every account)" in text
    assert f"action c-1 done: coarse closed {coarse_held.normalize()} of" in text
    # And the action's own audit, under its own id.
    assert own.ok and own.signal_id == "c-1"
    assert "CLOSE 50% of c-x (every account)" in "\n".join(audit.render(own))
    assert protection_violations(sqlite_db) == []


async def test_close_of_a_signal_still_waiting_cancels_its_legs_and_closes_what_filled(
    time_skipping_env: WorkflowEnvironment,
    sqlite_db: Database,
    test_settings: Settings,
    paper: PaperBroker,
    harness_factory: Any,
) -> None:
    ts_client = time_skipping_env.client
    settings = test_settings.model_copy(
        update={"delay_min_s": Decimal(0), "delay_max_s": Decimal(600), "size_variance": Decimal(0)}
    )
    accounts = [f"w{n}" for n in range(5)]
    load(sqlite_db, book(*(account(a) for a in accounts)))
    async with harness_factory(ts_client, sqlite_db, settings, paper).running():
        handle = await submit_signal(ts_client, sqlite_db, settings, signal("w-x"))

        async def statuses() -> list[LegStatus]:
            progress: SignalProgress = await handle.query(SignalExecutionWorkflow.progress)
            return [leg.status for leg in progress.legs]

        # The server's clock moves on a few seconds at a time until a leg has filled, while
        # the others still wait on their timers (delays of up to 600 s).
        while LegStatus.FILLED not in await statuses():
            await time_skipping_env.sleep(5)
            await asyncio.sleep(0.2)  # a leg whose timer fired places its order
        assert LegStatus.WAITING in await statuses()
        report = await run_action(
            ts_client, sqlite_db, settings, action("w-close", ActionKind.CLOSE, signal_id="w-x")
        )
        signal_report = await handle.result()

    ended = {line.account_id: line.status for line in signal_report.accounts}
    filled = {a for a, s in ended.items() if s is LegStatus.FILLED}
    assert filled and LegStatus.CANCELLED in ended.values()
    assert {a.account_id for a in report.accounts if a.closed > 0} == filled
    assert all(a.open_quantity == 0 for a in report.accounts)
    assert open_positions(sqlite_db, "w-x") == []
    with sqlite_db.transaction() as session:
        closed = repository.list_positions(session, signal_id="w-x")
    assert {p.account_id for p in closed} == filled
    for position in closed:
        assert [c.cause for c in position.closes] == [CloseCause.CLOSED_BY_SIGNAL.value]
    assert working(sqlite_db, "w-x") == {}
    assert protection_violations(sqlite_db) == []


async def test_flatten_of_a_symbol_then_of_the_whole_book(
    ts_client: Client, sqlite_db: Database, settings: Settings, paper: PaperBroker, harness_factory
) -> None:
    gbp = SymbolSpec.model_validate({**EURUSD_ALPHA.model_dump(), "symbol": "GBPUSD"})
    load(sqlite_db, book(account("a"), account("b"), symbols=[gbp]))
    async with harness_factory(ts_client, sqlite_db, settings, paper).running():
        await opened(ts_client, sqlite_db, settings, "f-eur", 2)
        await opened(
            ts_client,
            sqlite_db,
            settings,
            "f-gbp",
            2,
            symbol="GBPUSD",
            entry=Decimal("1.27000"),
            stop=Decimal("1.26700"),
        )
        euro = await run_action(
            ts_client, sqlite_db, settings, action("f-1", ActionKind.FLATTEN, symbol="EURUSD")
        )
        after_euro = open_positions(sqlite_db)
        everything = await run_action(
            ts_client, sqlite_db, settings, action("f-2", ActionKind.FLATTEN)
        )
        after_all = open_positions(sqlite_db)

    assert [(a.signal_id, a.account_id) for a in euro.accounts] == [("f-eur", "a"), ("f-eur", "b")]
    assert {p.signal_id for p in after_euro} == {"f-gbp"}
    assert [(a.signal_id, a.account_id) for a in everything.accounts] == [
        ("f-gbp", "a"),
        ("f-gbp", "b"),
    ]
    assert everything.positions_closed == 2
    assert after_all == []
    assert working(sqlite_db, "f-eur") == working(sqlite_db, "f-gbp") == {}
    assert protection_violations(sqlite_db) == []


async def test_the_same_action_twice_acts_once(
    ts_client: Client, sqlite_db: Database, settings: Settings, paper: PaperBroker, harness_factory
) -> None:
    load(sqlite_db, book(account("a")))
    async with harness_factory(ts_client, sqlite_db, settings, paper).running():
        await opened(ts_client, sqlite_db, settings, "d-x", 1)
        once = action("d-1", ActionKind.CLOSE, signal_id="d-x", fraction=Decimal("0.5"))
        first = await run_action(ts_client, sqlite_db, settings, once)
        with pytest.raises(DuplicateSignal):
            await submit_action(ts_client, sqlite_db, settings, once)
        # The same action handed to the keeper again (a retried delivery): the same answer,
        # no new order.
        keeper: WorkflowHandle[PositionsWorkflow, Any] = ts_client.get_workflow_handle_for(
            PositionsWorkflow.run, ids.positions_workflow_id(ids.signal_workflow_id("d-x"))
        )
        again = await keeper.execute_update(
            PositionsWorkflow.act,
            KeeperAction(action_id="d-1", kind=ActionKind.CLOSE, fraction=Decimal("0.5")),
        )
        [position] = open_positions(sqlite_db, "d-x")
        with sqlite_db.transaction() as session:
            closing = [
                o
                for o in repository.list_orders(session, signal_id="d-x")
                if o.client_order_id.rsplit(":", 1)[-1].startswith("C")
            ]

    assert again == first.accounts
    assert len(closing) == 1
    assert position.open_quantity == first.accounts[0].open_quantity > 0
    assert protection_violations(sqlite_db) == []


async def test_reduce_only_denies_entries_and_lets_exits_through(
    ts_client: Client, sqlite_db: Database, settings: Settings, paper: PaperBroker, harness_factory
) -> None:
    load(sqlite_db, book(account("a"), account("b")))
    async with harness_factory(ts_client, sqlite_db, settings, paper).running():
        await opened(ts_client, sqlite_db, settings, "ro-x", 2)
        operators.reduce_only(sqlite_db, ["a"], operator="jane", reason="drawdown review")
        entry = await (
            await submit_signal(ts_client, sqlite_db, settings, signal("ro-next"))
        ).result()
        exit_ = await run_action(
            ts_client, sqlite_db, settings, action("ro-close", ActionKind.CLOSE, signal_id="ro-x")
        )

    lines = {line.account_id: line for line in entry.accounts}
    assert lines["a"].status is LegStatus.DENIED and lines["a"].denial == "REDUCE_ONLY"
    assert lines["b"].status is LegStatus.FILLED
    assert {a.account_id: a.open_quantity for a in exit_.accounts} == {"a": 0, "b": 0}
    assert all(a.closed > 0 for a in exit_.accounts)
    assert open_positions(sqlite_db, "ro-x") == []


async def test_an_action_started_from_temporal_itself_while_halted_is_refused_and_sends_nothing(
    ts_client: Client, sqlite_db: Database, settings: Settings, paper: PaperBroker, harness_factory
) -> None:
    # The docs' `temporal workflow start --type TradeActionWorkflow ...` (or the Web UI's Start
    # Workflow) never passes submit_action's halt check: the workflow must refuse it itself.
    load(sqlite_db, book(account("a")))
    async with harness_factory(ts_client, sqlite_db, settings, paper).running():
        await opened(ts_client, sqlite_db, settings, "h-x", 1)
        with (
            sqlite_db.transaction() as session
        ):  # the kill switch, as `starter.py halt` persists it
            repository.set_halt(
                session,
                halted=True,
                operator="risk",
                reason="exchange outage",
                now=datetime.now(UTC),
            )
            before = repository.list_orders(session, signal_id="h-x")
        for act in (
            action("h-close", ActionKind.CLOSE, signal_id="h-x"),
            action("h-modify", ActionKind.MODIFY, signal_id="h-x", stop=Decimal("1.08300")),
            action("h-flatten", ActionKind.FLATTEN),
        ):
            refused = await ts_client.execute_workflow(
                TradeActionWorkflow.run,
                ActionInput(action=act),
                id=ids.signal_workflow_id(act.action_id),
                task_queue=settings.task_queue,
            )
            assert refused.status is ActionStatus.REFUSED, refused
            assert "trading is halted (exchange outage)" in refused.message
            assert refused.accounts == []
        [position] = open_positions(sqlite_db, "h-x")
        with sqlite_db.transaction() as session:
            after = repository.list_orders(session, signal_id="h-x")

    assert [(o.client_order_id, o.status) for o in after] == [
        (o.client_order_id, o.status) for o in before
    ]
    assert position.stop == STOP and position.open_quantity > 0
    assert protection_violations(sqlite_db) == []


async def test_exit_delay_bounds_stagger_a_close_per_account_the_same_on_replay(
    ts_client: Client, sqlite_db: Database, settings: Settings, paper: PaperBroker, harness_factory
) -> None:
    staggered = settings.model_copy(
        update={"exit_delay_min_s": Decimal(5), "exit_delay_max_s": Decimal(20)}
    )
    load(sqlite_db, book(account("a"), account("b"), account("c")))
    async with harness_factory(ts_client, sqlite_db, staggered, paper).running():
        await opened(ts_client, sqlite_db, staggered, "s-x", 3)
        report = await run_action(
            ts_client, sqlite_db, staggered, action("s-close", ActionKind.CLOSE, signal_id="s-x")
        )
        keeper = ts_client.get_workflow_handle(
            ids.positions_workflow_id(ids.signal_workflow_id("s-x"))
        )
        recorded = await keeper.fetch_history()

    assert all(a.closed > 0 and a.open_quantity == 0 for a in report.accounts)
    waits = [
        e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
        for e in recorded.events
        if e.HasField("timer_started_event_attributes")
        and b"exit delay" in e.user_metadata.summary.data
    ]
    # The first wave waits at least the minimum; together the waves stay within the maximum.
    assert waits and waits[0].total_seconds() >= 5
    assert sum(w.total_seconds() for w in waits) <= 20
    replayed = await Replayer(
        workflows=WORKFLOWS, data_converter=pydantic_data_converter
    ).replay_workflow(recorded, raise_on_replay_failure=False)
    assert replayed.replay_failure is None

"""Exits, on the time-skipping server with the real activities, SQLite and the paper broker:
never denied for capacity (an account at its position limit, its daily loss budget used, no
free margin still closes everything); bounded by the orders-in-flight limit like entries; a
FLATTEN of listed accounts leaves the others' positions open; and the starter's ``modify`` and
``close`` with a JSON file (``--file``), a file for another action refused with exit 2 and
nothing started."""

from __future__ import annotations

import asyncio
import json
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

import starter
from orchestrator.adapters.brokers.base import BrokerOrder, OrderTicket
from orchestrator.adapters.brokers.paper import PaperBroker
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import AccountRow, AccountStateRow
from orchestrator.config import Settings, get_settings
from orchestrator.domain import ids
from orchestrator.domain.actions import ActionKind, ActionReport, ActionStatus
from orchestrator.domain.book import SymbolSpec
from orchestrator.domain.orders import TERMINAL
from orchestrator.domain.values import DenialReason
from orchestrator.services.submit import submit_signal
from tests.support import EURUSD_ALPHA, account, book, load, protection_violations, signal
from tests.workflow.test_actions import (
    ENTRY,
    SYMBOL,
    action,
    open_positions,
    opened,
    run_action,
    working,
)


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


def is_closing(client_order_id: str) -> bool:
    """A closing order's id ends in ``C`` and its number (``{signal}:{account}:C1``)."""
    return client_order_id.rsplit(":", 1)[-1].startswith("C")


def no_capacity_left(db: Database, account_ids: list[str]) -> None:
    """Each account at its limit of open positions, its daily loss budget used, no free
    margin: every capacity check an entry meets would deny it."""
    with db.transaction() as session:
        for account_id in account_ids:
            limits = session.get(AccountRow, account_id)
            state = session.get(AccountStateRow, account_id)
            assert limits is not None and state is not None
            state.open_positions = limits.max_open_positions
            state.realized_loss_today = limits.daily_loss_budget
            state.free_margin = Decimal(0)


# --------------------------------------------------------------------------------------------
# Never denied for capacity


@pytest.mark.parametrize("kind", [ActionKind.CLOSE, ActionKind.FLATTEN])
async def test_an_exit_closes_every_position_of_accounts_with_no_capacity_left(
    kind: ActionKind,
    ts_client: Client,
    *,
    sqlite_db: Database,
    settings: Settings,
    paper: PaperBroker,
    harness_factory: Any,
) -> None:
    load(sqlite_db, book(account("a"), account("b")))
    async with harness_factory(ts_client, sqlite_db, settings, paper).running():
        await opened(ts_client, sqlite_db, settings, "cap-x", 2)
        no_capacity_left(sqlite_db, ["a", "b"])
        # The state bites: a new entry is denied on both accounts.
        entry = await (
            await submit_signal(ts_client, sqlite_db, settings, signal("cap-next"))
        ).result()
        fields = {"signal_id": "cap-x"} if kind is ActionKind.CLOSE else {"accounts": ["a", "b"]}
        report = await run_action(
            ts_client, sqlite_db, settings, action("cap-exit", kind, **fields)
        )
        with sqlite_db.transaction() as session:
            states = {
                row.account_id: (row.open_positions, row.free_margin)
                for row in session.scalars(select(AccountStateRow))
            }

    assert {(line.account_id, line.denial) for line in entry.accounts} == {
        ("a", DenialReason.MAX_POSITIONS),
        ("b", DenialReason.MAX_POSITIONS),
    }
    assert report.status is ActionStatus.COMPLETED
    assert [(a.account_id, a.refused, a.open_quantity) for a in report.accounts] == [
        ("a", None, Decimal(0)),
        ("b", None, Decimal(0)),
    ]
    assert all(a.closed > 0 for a in report.accounts)
    assert report.positions_closed == 2
    assert open_positions(sqlite_db) == []
    assert working(sqlite_db, "cap-x") == {}
    # Closing gave a slot back on each account (and what the leg had tied up of margin).
    assert all(count == 9 and margin > 0 for count, margin in states.values()), states
    assert protection_violations(sqlite_db) == []


# --------------------------------------------------------------------------------------------
# Bounded by the orders-in-flight limit


class ClosingOrdersAtOnce(PaperBroker):
    """The paper broker, counting the closing orders working at it at once: from a submit
    it answered with a working order, until a status answer says the order ended."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._lock = threading.Lock()
        self._working: set[str] = set()
        self.most = 0
        self.closing_orders = 0

    def submit(self, ticket: OrderTicket) -> BrokerOrder:
        state = super().submit(ticket)
        self._seen(state, submitted=True)
        return state

    def status(self, client_order_id: str) -> BrokerOrder | None:
        state = super().status(client_order_id)
        if state is not None:
            self._seen(state)
        return state

    def _seen(self, state: BrokerOrder, *, submitted: bool = False) -> None:
        if not is_closing(state.client_order_id):
            return
        with self._lock:
            self.closing_orders += int(submitted)
            if state.status in TERMINAL:
                self._working.discard(state.client_order_id)
            elif submitted:
                self._working.add(state.client_order_id)
                self.most = max(self.most, len(self._working))


async def test_a_close_keeps_at_most_the_orders_in_flight_limit_of_closing_orders_working(
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    harness_factory: Any,
) -> None:
    # Fills take a while (a market order works until its latency has passed), so closing
    # orders sent together are working together at the broker.
    accounts = [f"q{n}" for n in range(5)]
    load(sqlite_db, book(*(account(a, paper={"latency_ms": 300}) for a in accounts)))
    capped = settings.model_copy(update={"max_orders_in_flight": 2})
    broker = ClosingOrdersAtOnce(sqlite_db)
    broker.market.set_quote(SYMBOL, ENTRY, ENTRY + Decimal("0.00002"))
    async with harness_factory(ts_client, sqlite_db, capped, broker).running():
        await opened(ts_client, sqlite_db, capped, "q-x", 5)
        report = await run_action(
            ts_client, sqlite_db, capped, action("q-close", ActionKind.CLOSE, signal_id="q-x")
        )

    assert [(a.account_id, a.open_quantity) for a in report.accounts] == [
        (a, Decimal(0)) for a in accounts
    ]
    assert all(a.closed > 0 for a in report.accounts)
    assert broker.closing_orders == 5
    # Two at once, never more: the bound is used, and held (five sent together would be five).
    assert broker.most == 2
    assert open_positions(sqlite_db) == []
    assert protection_violations(sqlite_db) == []


# --------------------------------------------------------------------------------------------
# FLATTEN of listed accounts


async def test_a_flatten_of_listed_accounts_closes_theirs_and_leaves_the_others_open(
    ts_client: Client, sqlite_db: Database, settings: Settings, paper: PaperBroker, harness_factory
) -> None:
    gbp = SymbolSpec.model_validate({**EURUSD_ALPHA.model_dump(), "symbol": "GBPUSD"})
    load(sqlite_db, book(account("a"), account("b"), account("c"), symbols=[gbp]))
    async with harness_factory(ts_client, sqlite_db, settings, paper).running():
        await opened(ts_client, sqlite_db, settings, "l-eur", 3)
        await opened(
            ts_client,
            sqlite_db,
            settings,
            "l-gbp",
            3,
            symbol="GBPUSD",
            entry=Decimal("1.27000"),
            stop=Decimal("1.26700"),
        )
        report = await run_action(
            ts_client, sqlite_db, settings, action("l-1", ActionKind.FLATTEN, accounts=["a", "c"])
        )
        left = open_positions(sqlite_db)
        stops = {**working(sqlite_db, "l-eur"), **working(sqlite_db, "l-gbp")}

    assert [(a.signal_id, a.account_id) for a in report.accounts] == [
        ("l-eur", "a"),
        ("l-eur", "c"),
        ("l-gbp", "a"),
        ("l-gbp", "c"),
    ]
    assert all(a.closed > 0 and a.open_quantity == 0 for a in report.accounts)
    assert report.positions_closed == 4
    # Account b's positions, of both signals, are open and still protected; the others'
    # protective orders are gone with their positions.
    assert [(p.signal_id, p.account_id) for p in left] == [("l-eur", "b"), ("l-gbp", "b")]
    assert all(p.open_quantity > 0 for p in left)
    assert sorted(stops) == ["l-eur:b:S1", "l-gbp:b:S1"]
    assert protection_violations(sqlite_db) == []


# --------------------------------------------------------------------------------------------
# The starter's modify and close with --file


async def starter_with_file(
    monkeypatch: pytest.MonkeyPatch,
    client: Client,
    settings: Settings,
    *argv: str,
) -> int:
    """``starter.py ARGV`` against this server and ledger, on a thread of its own (its own
    event loop: the worker on this one goes on serving what it starts); its exit code."""
    monkeypatch.setenv("TEO_TEMPORAL_ADDRESS", client.service_client.config.target_host)
    monkeypatch.setenv("TEO_TEMPORAL_NAMESPACE", client.namespace)
    monkeypatch.setenv("TEO_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("TEO_TASK_QUEUE", settings.task_queue)
    get_settings.cache_clear()
    try:
        return await asyncio.to_thread(starter.main, list(argv))
    finally:
        get_settings.cache_clear()


async def never_started(client: Client, action_id: str) -> bool:
    try:
        await client.get_workflow_handle(ids.signal_workflow_id(action_id)).describe()
    except RPCError as err:
        return err.status == RPCStatusCode.NOT_FOUND
    return False


async def test_the_starters_modify_and_close_from_a_json_file(
    ts_client: Client,
    *,
    sqlite_db: Database,
    settings: Settings,
    paper: PaperBroker,
    harness_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    modify = tmp_path / "modify.json"
    modify.write_text(
        json.dumps({"action_id": "j-m", "action": "MODIFY", "signal_id": "j-x", "stop": "1.08350"})
    )
    close = tmp_path / "close.json"
    close.write_text(
        json.dumps({"action_id": "j-c", "action": "CLOSE", "signal_id": "j-x", "fraction": "0.5"})
    )
    load(sqlite_db, book(account("a"), account("b")))
    async with harness_factory(ts_client, sqlite_db, settings, paper).running():
        await opened(ts_client, sqlite_db, settings, "j-x", 2)
        held = {p.account_id: p.open_quantity for p in open_positions(sqlite_db, "j-x")}
        capsys.readouterr()

        # A file whose action is not the command's: refused, nothing started.
        wrong = [
            await starter_with_file(
                monkeypatch, ts_client, settings, "modify", "--file", str(close), "--wait"
            ),
            await starter_with_file(
                monkeypatch, ts_client, settings, "close", "--file", str(modify), "--wait"
            ),
        ]
        refused = capsys.readouterr().err
        assert wrong == [2, 2]
        assert f"{close}: invalid input\n  action: is CLOSE, this command is MODIFY" in refused
        assert f"{modify}: invalid input\n  action: is MODIFY, this command is CLOSE" in refused
        assert [await never_started(ts_client, i) for i in ("j-c", "j-m")] == [True, True]
        untouched = {p.account_id: (p.stop, p.open_quantity) for p in open_positions(sqlite_db)}
        assert untouched == {a: (Decimal("1.08200"), q) for a, q in held.items()}

        modified = await starter_with_file(
            monkeypatch, ts_client, settings, "modify", "--file", str(modify), "--wait", "--json"
        )
        assert modified == 0
        modify_report = ActionReport.model_validate_json(capsys.readouterr().out)
        stops = {p.account_id: p.stop for p in open_positions(sqlite_db, "j-x")}
        closed = await starter_with_file(
            monkeypatch, ts_client, settings, "close", "--file", str(close), "--wait", "--json"
        )
        assert closed == 0
        close_report = ActionReport.model_validate_json(capsys.readouterr().out)
        left = {p.account_id: p for p in open_positions(sqlite_db, "j-x")}
        orders = working(sqlite_db, "j-x")

    assert (modify_report.action_id, modify_report.status) == ("j-m", ActionStatus.COMPLETED)
    assert stops == {"a": Decimal("1.08350"), "b": Decimal("1.08350")}

    assert (close_report.action_id, close_report.status) == ("j-c", ActionStatus.COMPLETED)
    for account_id, quantity in held.items():
        half = (quantity / 2).quantize(Decimal("0.01"), rounding="ROUND_DOWN")
        assert left[account_id].open_quantity == quantity - half
        # What is left keeps its (moved) stop, for exactly what is left.
        [stop] = [o for o in orders.values() if o.account_id == account_id]
        assert (stop.purpose, stop.stop_price) == ("STOP", Decimal("1.08350"))
        assert stop.quantity - stop.filled_quantity == quantity - half
    assert protection_violations(sqlite_db) == []

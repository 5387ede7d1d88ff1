"""The keeper's orders many at a time (:class:`~activities.keeper_orders.KeeperOrders`) on
PostgreSQL: protecting new positions, closing positions, checking and cancelling working orders
and recording closed positions take a number of statements their count does not change; each
order goes at the broker's pace (the one entries share), a retry sends nothing the broker holds
already, and a send that fails leaves what was sent before it booked."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.order_steps import Pace
from activities.positions import PositionActivities
from bench.memory_broker import MemoryBroker
from orchestrator.adapters.brokers.base import BrokerOrder, OrderTicket
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import (
    AccountStateRow,
    FillRow,
    OrderRow,
    PositionFillRow,
)
from orchestrator.config import Settings
from orchestrator.domain import ids, positions
from orchestrator.domain.contracts.positions import (
    CloseOrder,
    CloseRequest,
    PositionsRecord,
    ProtectionRequest,
    ProtectionTarget,
    WatchedOrder,
    WatchRequest,
)
from orchestrator.domain.errors import BrokerUnavailable
from orchestrator.domain.orders import OrderPurpose, OrderStatus
from orchestrator.domain.positions import (
    CloseCause,
    Contract,
    Position,
    PositionStatus,
    ProtectionKind,
    ProtectiveOrder,
)
from orchestrator.domain.values import OrderType, Side
from tests.support import account, book, count_statements, fresh_postgres, load

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def twin(postgres_admin: str) -> Iterator[Database]:
    with fresh_postgres(postgres_admin) as db:
        yield db


class CountingPace(Pace):
    """Unpaced, counting the orders that asked for their turn."""

    def __init__(self) -> None:
        super().__init__(0)
        self.waits = 0

    def wait(self) -> None:
        self.waits += 1


class Broker(MemoryBroker):
    """The in-memory broker, holding a long position of 1 on each account (its take-profits
    rest), counting sends; optionally failing the n-th send without an answer."""

    def __init__(self, accounts: list[str], fail_send: int | None = None) -> None:
        super().__init__()
        for account_id in accounts:
            super().submit(entry(account_id))
        self.sends = 0
        self._fail_send = fail_send

    def submit(self, ticket: OrderTicket) -> BrokerOrder:
        self.sends += 1
        if self.sends == self._fail_send:
            raise BrokerUnavailable("connection dropped while sending")
        return super().submit(ticket)


def entry(account_id: str) -> OrderTicket:
    return OrderTicket(
        client_order_id=f"entry:{account_id}",
        account_id=account_id,
        symbol="EURUSD",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        quantity=Decimal(1),
        limit_price=None,
        reference_price=Decimal("1.0850"),
    )


def accounts(n: int) -> list[str]:
    return [f"acc-{i:03d}" for i in range(n)]


def prepared(db: Database, n: int) -> list[str]:
    names = accounts(n)
    load(db, book(*(account(a) for a in names)))
    return names


def environment(attempt: int = 1) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = activity.Info(**{**env.info.__dict__, "attempt": attempt})
    return env


def protection(names: list[str]) -> ProtectionRequest:
    return ProtectionRequest(
        targets=[
            ProtectionTarget(
                signal_id="s1",
                account_id=a,
                broker="alpha",
                broker_symbol="EURUSD",
                position_side=Side.BUY,
                quantity=Decimal(1),
                stop=Decimal("1.0700"),
                take_profit=Decimal("1.1000"),
                generation=1,
                current_stop=None,
                current_take_profit=None,
            )
            for a in names
        ],
        execution=Settings().execution_settings(),
    )


def closing(names: list[str]) -> CloseRequest:
    return CloseRequest(
        orders=[
            CloseOrder(
                signal_id="s1",
                account_id=a,
                broker="alpha",
                broker_symbol="EURUSD",
                side=Side.SELL,
                quantity=Decimal(1),
                number=1,
                client_order_id=ids.closing_client_order_id("s1", a, 1),
                reference_price=Decimal("1.0800"),
                cause=CloseCause.CLOSED_BY_SIGNAL,
            )
            for a in names
        ],
        execution=Settings().execution_settings(),
    )


def orders(db: Database) -> dict[str, dict[str, Any]]:
    with db.transaction() as session:
        fills: dict[str, Decimal] = {}
        for fill in session.scalars(select(FillRow)):
            fills[fill.client_order_id] = fills.get(fill.client_order_id, Decimal(0)) + (
                fill.quantity
            )
        return {
            row.client_order_id: {
                "status": row.status,
                "type": row.order_type,
                "quantity": row.quantity,
                "filled": row.filled_quantity,
                "fills": fills.get(row.client_order_id, Decimal(0)),
                "broker_order_id": row.broker_order_id,
            }
            for row in session.scalars(select(OrderRow))
        }


def statements(db: Database, n: int) -> tuple[int, int]:
    names = prepared(db, n)
    keeper = PositionActivities(db, Broker(names), clock=lambda: NOW)
    env = environment()
    protecting = count_statements(db, lambda: env.run(keeper.protect, protection(names)))
    closes = count_statements(db, lambda: env.run(keeper.close_positions, closing(names)))
    return protecting, closes


def test_protecting_and_closing_take_as_many_statements_whatever_the_number_of_positions(
    postgres_db: Database, twin: Database
) -> None:
    """Stops and take-profits of 3 or of 30 new positions, then closing them: the same number
    of statements. Each order is written ahead and booked, all of a kind together."""
    assert statements(postgres_db, 3) == statements(twin, 30)
    ledger = orders(twin)
    stops = [o for o in ledger.values() if o["type"] == OrderType.STOP.value]
    take_profits = [o for o in ledger.values() if o["type"] == OrderType.LIMIT.value]
    closes = [o for o in ledger.values() if o["type"] == OrderType.MARKET.value]
    assert len(stops) == len(take_profits) == len(closes) == 30
    assert {o["status"] for o in stops + take_profits} == {OrderStatus.NEW.value}
    assert all(o["broker_order_id"] for o in ledger.values())
    assert {(o["status"], o["filled"], o["fills"]) for o in closes} == {
        (OrderStatus.FILLED.value, Decimal(1), Decimal(1))
    }


def working_protection(names: list[str]) -> ProtectionRequest:
    """Each position flat (a CLOSE took it): its working stop and take-profit to cancel."""
    placed = protection(names)
    return ProtectionRequest(
        targets=[
            t.model_copy(
                update={
                    "quantity": Decimal(0),
                    "generation": 2,
                    "current_stop": ProtectiveOrder(
                        kind=ProtectionKind.STOP,
                        client_order_id=ids.protective_client_order_id(
                            "s1", t.account_id, ProtectionKind.STOP.code, 1
                        ),
                        price=t.stop,
                        quantity=Decimal(1),
                        status=OrderStatus.NEW,
                    ),
                    "current_take_profit": ProtectiveOrder(
                        kind=ProtectionKind.TAKE_PROFIT,
                        client_order_id=ids.protective_client_order_id(
                            "s1", t.account_id, ProtectionKind.TAKE_PROFIT.code, 1
                        ),
                        price=t.take_profit,
                        quantity=Decimal(1),
                        status=OrderStatus.NEW,
                    ),
                }
            )
            for t in placed.targets
        ],
        execution=placed.execution,
    )


def watching(names: list[str]) -> WatchRequest:
    return WatchRequest(
        orders=[
            WatchedOrder(
                signal_id="s1",
                account_id=a,
                broker="alpha",
                client_order_id=ids.protective_client_order_id("s1", a, kind.code, 1),
                kind=kind,
                filled=Decimal(0),
            )
            for a in names
            for kind in ProtectionKind
        ],
        wait_s=0,
    )


def statements_of_working_orders(db: Database, n: int) -> tuple[int, int]:
    names = prepared(db, n)
    keeper = PositionActivities(db, Broker(names), clock=lambda: NOW)
    env = environment()
    env.run(keeper.protect, protection(names))
    checking = count_statements(db, lambda: env.run(keeper.check_orders, watching(names)))
    cancelling = count_statements(db, lambda: env.run(keeper.protect, working_protection(names)))
    return checking, cancelling


def test_checking_and_cancelling_working_orders_take_as_many_statements_whatever_their_number(
    postgres_db: Database, twin: Database
) -> None:
    """Checking 6 or 60 working protective orders, then cancelling them (their positions went
    flat): the broker's reports are booked together, in the same number of statements."""
    assert statements_of_working_orders(postgres_db, 3) == statements_of_working_orders(twin, 30)
    ledger = orders(twin)
    assert len(ledger) == 60
    assert {o["status"] for o in ledger.values()} == {OrderStatus.CANCELLED.value}


def stopped_out(names: list[str]) -> list[Position]:
    """A long position of 1 lot per account, opened at 1.0850 and stopped out at 1.0700."""
    contract = Contract(
        tick_size=Decimal("0.0001"),
        tick_value=Decimal(10),
        lot_step=Decimal("0.01"),
        min_lot=Decimal("0.01"),
    )
    closed = []
    for a in names:
        position = positions.opened(
            "s1",
            Side.BUY,
            Decimal("1.0700"),
            None,
            account_id=a,
            broker="alpha",
            broker_symbol="EURUSD",
            contract=contract,
            entry_quantity=Decimal(1),
            average_entry=Decimal("1.0850"),
        )
        position, _ = positions.reduced(
            position,
            execution_id=f"x:{a}",
            client_order_id=f"s1:{a}:S1",
            quantity=Decimal(1),
            price=Decimal("1.0700"),
            cause=CloseCause.STOP_HIT,
            at=NOW,
        )
        closed.append(position)
    return closed


def statements_of_recording_closes(db: Database, n: int) -> int:
    names = prepared(db, n)
    closed = stopped_out(names)
    opened = [
        p.model_copy(
            update={
                "open_quantity": Decimal(1),
                "closes": [],
                "status": PositionStatus.OPEN,
                "realized_pnl": Decimal(0),
            }
        )
        for p in closed
    ]
    keeper = PositionActivities(db, Broker([]), clock=lambda: NOW)
    env = environment()
    env.run(keeper.record_positions, PositionsRecord(keeper_workflow_id="k", positions=opened))
    record = PositionsRecord(keeper_workflow_id="k", positions=closed)
    counted = count_statements(db, lambda: env.run(keeper.record_positions, record))
    env.run(keeper.record_positions, record)  # again: books nothing twice
    return counted


def test_recording_closed_positions_takes_as_many_statements_whatever_their_number(
    postgres_db: Database, twin: Database
) -> None:
    """Recording 3 or 30 positions stopped out: their rows, closing fills and accounts (a loss
    of 1,500 each, the slot freed) in the same number of statements; a repeat changes nothing."""
    assert statements_of_recording_closes(postgres_db, 3) == statements_of_recording_closes(
        twin, 30
    )
    with twin.transaction() as session:
        states = list(session.scalars(select(AccountStateRow)))
        fills = list(session.scalars(select(PositionFillRow)))
    assert len(states) == len(fills) == 30
    assert {(s.balance, s.realized_loss_today) for s in states} == {
        (Decimal(50000 - 1500), Decimal(1500))
    }


def test_the_keepers_orders_go_at_the_brokers_pace(postgres_db: Database) -> None:
    names = prepared(postgres_db, 4)
    pace = CountingPace()
    keeper = PositionActivities(postgres_db, Broker(names), clock=lambda: NOW, pace=pace)
    environment().run(keeper.protect, protection(names))
    assert pace.waits == 8  # a stop and a take-profit each
    environment().run(keeper.close_positions, closing(names))
    assert pace.waits == 12


def test_a_send_that_fails_leaves_what_was_sent_booked_and_the_retry_sends_the_rest_once(
    postgres_db: Database,
) -> None:
    names = prepared(postgres_db, 4)
    broker = Broker(names, fail_send=3)
    keeper = PositionActivities(postgres_db, broker, clock=lambda: NOW)

    with pytest.raises(ApplicationError):
        environment().run(keeper.protect, protection(names))
    after_failure = orders(postgres_db)
    assert sorted(o["status"] for o in after_failure.values()) == [
        OrderStatus.NEW.value,
        OrderStatus.NEW.value,
        OrderStatus.PENDING_SUBMIT.value,  # the send that failed, and the one not tried yet
        OrderStatus.PENDING_SUBMIT.value,
    ]

    outcomes = environment(attempt=2).run(keeper.protect, protection(names))
    assert broker.sends == 3 + 6  # the failed one again, the other stop, four take-profits
    assert [o.stop is not None and o.take_profit is not None for o in outcomes] == [True] * 4
    assert {o["status"] for o in orders(postgres_db).values()} == {OrderStatus.NEW.value}


def test_many_reports_booked_together_book_what_one_by_one_books(
    postgres_db: Database, twin: Database
) -> None:
    """:func:`repository.apply_broker_reports` against :func:`repository.apply_broker_report`
    on the same orders and reports: one order reported four times (a fill, then the rest, then
    a late report), a rejection, a partial fill; then all of them again."""
    results = []
    for db, together in ((postgres_db, True), (twin, False)):
        names = prepared(db, 3)
        with db.transaction() as session:
            repository.record_position_orders(
                session,
                [
                    {**row, "client_order_id": f"c:{a}", "account_id": a}
                    for a, row in zip(names, [_row()] * 3, strict=True)
                ],
            )
        reports = [
            (f"c:{names[0]}", _report(OrderStatus.NEW, ())),
            (f"c:{names[0]}", _report(OrderStatus.PARTIALLY_FILLED, ("x1",))),
            (f"c:{names[1]}", _report(OrderStatus.REJECTED, (), "no liquidity")),
            (f"c:{names[2]}", _report(OrderStatus.PARTIALLY_FILLED, ("x2",))),
            (f"c:{names[0]}", _report(OrderStatus.FILLED, ("x1", "x3"))),
            (f"c:{names[0]}", _report(OrderStatus.NEW, ())),  # late: keeps FILLED
        ]
        booked = []
        for _ in range(2):  # and again: a repeated report changes nothing
            with db.transaction() as session:
                if together:
                    booked.append(repository.apply_broker_reports(session, reports, NOW))
                else:
                    one_by_one = {}
                    for cid, r in reports:
                        one_by_one[cid] = repository.apply_broker_report(session, cid, **r, now=NOW)
                    booked.append(one_by_one)
        results.append((booked, orders(db)))
    assert results[0] == results[1]


def _row() -> dict[str, object]:
    return repository.pending_order_values(
        client_order_id="",
        signal_id="s1",
        account_id="",
        business_sequence=1,
        purpose=OrderPurpose.CLOSE,
        broker="alpha",
        broker_symbol="EURUSD",
        side=Side.SELL,
        order_type=OrderType.MARKET,
        quantity=Decimal(2),
        limit_price=None,
        stop_price=None,
        now=NOW,
    )


def _report(status: OrderStatus, fills: tuple[str, ...], text: str | None = None) -> dict[str, Any]:
    return {
        "status": status,
        "broker_order_id": "B-1",
        "executions": [(f, Decimal(1), Decimal("1.08"), NOW) for f in fills],
        "reject_text": text,
    }

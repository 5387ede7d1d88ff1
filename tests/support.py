"""Test helpers: a worker with the real activities, small books, broker and ledger readers."""

from __future__ import annotations

import asyncio
import base64
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from alembic.script import ScriptDirectory
from google.protobuf.message import Message
from sqlalchemy import event as sql_event
from sqlalchemy import select, text
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory

from orchestrator.adapters.book_file import AccountRecord, AccountState, Book, DailyReturn
from orchestrator.adapters.brokers.base import (
    AccountReading,
    Broker,
    BrokerOrder,
    BrokerPosition,
    KnownOrder,
    OrderTicket,
    Quote,
)
from orchestrator.adapters.brokers.paper import PaperBehaviour
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import MIGRATIONS, Database
from orchestrator.adapters.db.schema import (
    OrderRow,
    PaperOrderRow,
    PositionRow,
    RiskReservationRow,
)
from orchestrator.config import Settings
from orchestrator.domain.book import AccountLimits, Mandate, SymbolSpec
from orchestrator.domain.contracts.positions import PositionFill, PositionFills
from orchestrator.domain.errors import BrokerUnavailable
from orchestrator.domain.orders import TERMINAL, OrderPurpose, OrderStatus
from orchestrator.domain.signal import Signal
from worker import build_activities, build_worker

EURUSD_ALPHA = SymbolSpec(
    broker="alpha",
    symbol="EURUSD",
    tick_size=Decimal("0.00001"),
    tick_value=Decimal(1),
    contract_size=Decimal(100000),
    min_lot=Decimal("0.01"),
    lot_step=Decimal("0.01"),
    max_lot=Decimal(50),
    margin_per_lot=Decimal(1085),
)


def account(
    account_id: str,
    *,
    equity: str = "50000",
    paper: dict[str, Any] | None = None,
    status: str = "ACTIVE",
    mandate: Mandate | None = None,
    broker: str = "alpha",
    reserve_only: bool = False,
    **state: Any,
) -> AccountRecord:
    return AccountRecord(
        id=account_id,
        broker=broker,
        reserve_only=reserve_only,
        currency="USD",
        status=status,
        limits=AccountLimits(
            risk_per_trade=Decimal("0.01"),
            daily_loss_budget=Decimal(5000),
            max_drawdown=Decimal("0.10"),
            max_open_positions=10,
            max_lots=Decimal(20),
        ),
        mandate=mandate or Mandate(),
        state=AccountState(
            balance=Decimal(equity),
            equity=Decimal(equity),
            peak_equity=Decimal(equity),
            free_margin=Decimal(state.pop("free_margin", equity)),
            **state,
        ),
        paper=PaperBehaviour.model_validate(paper or {}),
    )


def book(
    *accounts: AccountRecord,
    returns: list[DailyReturn] | None = None,
    symbols: list[SymbolSpec] | None = None,
) -> Book:
    return Book(
        symbols=[EURUSD_ALPHA, *(symbols or [])], accounts=list(accounts), returns=returns or []
    )


def uncorrelated_returns(account_ids: list[str], days: int = 30) -> list[DailyReturn]:
    """Deterministic, mutually uncorrelated daily returns (distinct periods per account)."""
    start = date(2026, 1, 1)
    out: list[DailyReturn] = []
    for k, account_id in enumerate(account_ids):
        for i in range(days):
            sign = 1 if (i // (k + 1)) % 2 == 0 else -1
            out.append(
                DailyReturn(
                    account_id=account_id,
                    day=start + timedelta(days=i),
                    ret=Decimal(sign) * Decimal("0.001") * (1 + (i * (k + 3)) % 7),
                )
            )
    return out


def count_statements(db: Database, run: Callable[[], object]) -> int:
    """The statements ``run`` sends to the database (an ``executemany`` is one)."""
    sent = 0

    def counted(*_: object) -> None:
        nonlocal sent
        sent += 1

    sql_event.listen(db.engine, "before_cursor_execute", counted)
    try:
        run()
    finally:
        sql_event.remove(db.engine, "before_cursor_execute", counted)
    return sent


def load(db: Database, value: Book) -> None:
    with db.transaction() as session:
        repository.save_book(session, value, datetime.now(UTC))


def signal(signal_id: str, **overrides: Any) -> Signal:
    values: dict[str, Any] = {
        "signal_id": signal_id,
        "symbol": "EURUSD",
        "side": "BUY",
        "entry": Decimal("1.08500"),
        "stop": Decimal("1.08200"),
    }
    values.update(overrides)
    return Signal.model_validate(values)


def keeper_told(recorded: WorkflowHistory) -> list[list[PositionFill]]:
    """The fills a workflow running legs signalled its keeper, one list per signal sent
    (``position_filled``: one fill; ``positions_filled``: the fills of one workflow task)."""
    told: list[list[PositionFill]] = []
    for event in recorded.events:
        if not event.HasField("signal_external_workflow_execution_initiated_event_attributes"):
            continue
        attributes = event.signal_external_workflow_execution_initiated_event_attributes
        data = attributes.input.payloads[0].data
        if attributes.signal_name == "position_filled":
            told.append([PositionFill.model_validate_json(data)])
        elif attributes.signal_name == "positions_filled":
            told.append(PositionFills.model_validate_json(data).fills)
    return told


def is_entry(client_order_id: str) -> bool:
    """An entry order's id ends in its business sequence (``{signal}:{account}:2``); a
    protective or closing order's in a letter and a number (``…:S1``, ``…:C1``)."""
    return client_order_id.rsplit(":", 1)[-1].isdigit()


def broker_orders(db: Database) -> dict[str, int]:
    """Entry orders the paper broker holds, per account."""
    counts: dict[str, int] = {}
    for row in paper_orders(db).values():
        counts[row.account_id] = counts.get(row.account_id, 0) + 1
    return counts


def ledger_orders(db: Database, *, purpose: str | None = OrderPurpose.ENTRY) -> list[OrderRow]:
    """The ledger's orders of one purpose (entries by default; ``None``: all)."""
    query = select(OrderRow).order_by(OrderRow.client_order_id)
    if purpose is not None:
        query = query.where(OrderRow.purpose == purpose)
    with db.transaction() as session:
        return list(session.scalars(query))


def protective_orders(db: Database, signal_id: str | None = None) -> list[OrderRow]:
    """The ledger's stop and take-profit orders (of one signal), by client order id."""
    query = (
        select(OrderRow)
        .where(OrderRow.purpose.in_(["STOP", "TAKE_PROFIT"]))
        .order_by(OrderRow.client_order_id)
    )
    if signal_id is not None:
        query = query.where(OrderRow.signal_id == signal_id)
    with db.transaction() as session:
        return list(session.scalars(query))


def protection_violations(db: Database) -> list[str]:
    """What breaks the protective orders' invariant, in the ledger and the paper broker's own
    book: a protective order working on a flat position, or more protective quantity of one
    kind working than the position's open quantity. Empty when it holds."""
    working = {s.value for s in OrderStatus if s not in TERMINAL}
    problems = []
    with db.transaction() as session:
        positions = list(session.scalars(select(PositionRow)))
        orders = list(
            session.scalars(select(OrderRow).where(OrderRow.purpose.in_(["STOP", "TAKE_PROFIT"])))
        )
        paper = {row.client_order_id: row for row in session.scalars(select(PaperOrderRow))}
    for position in positions:
        for purpose in ("STOP", "TAKE_PROFIT"):
            mine = [
                o
                for o in orders
                if (o.signal_id, o.account_id, o.purpose)
                == (position.signal_id, position.account_id, purpose)
            ]
            ledger = sum(
                (o.quantity - o.filled_quantity for o in mine if o.status in working), Decimal(0)
            )
            at_broker = sum(
                (
                    p.quantity - p.filled_quantity
                    for o in mine
                    if (p := paper.get(o.client_order_id)) is not None and p.status in working
                ),
                Decimal(0),
            )
            for where, quantity in (("ledger", ledger), ("broker", at_broker)):
                if quantity > position.open_quantity:
                    problems.append(
                        f"{position.signal_id}/{position.account_id}: {quantity} {purpose} "
                        f"working ({where}) on an open quantity of {position.open_quantity}"
                    )
    return problems


def protection_beyond_fills(db: Database, *, ledger: bool = True) -> list[str]:
    """The protective-order invariant stated against the fills themselves, which every order
    activity books before any keeper hears of them: per (signal, account), the open quantity
    is what the entries filled less what protective and closing orders filled; no protective
    order of a kind works beyond it (in the ledger, and at the paper broker), none on a flat
    position. At the broker it holds at any moment a keeper is not in the middle of
    one-cancels-other (a stop that filled, its take-profit not cancelled yet); in the ledger it
    also waits for a resize the keeper is writing (the new order is written ahead, the old one
    booked as replaced just after), so ``ledger=False`` checks the broker's book alone."""
    working = {s.value for s in OrderStatus if s not in TERMINAL}
    with db.transaction() as session:
        orders = list(session.scalars(select(OrderRow)))
        paper = {row.client_order_id: row for row in session.scalars(select(PaperOrderRow))}
    open_: dict[tuple[str, str], Decimal] = {}
    for order in orders:
        key = (order.signal_id, order.account_id)
        sign = 1 if order.purpose == OrderPurpose.ENTRY else -1
        open_[key] = open_.get(key, Decimal(0)) + sign * order.filled_quantity
    problems = []
    for (signal_id, account_id), quantity in sorted(open_.items()):
        for purpose in ("STOP", "TAKE_PROFIT"):
            mine = [
                o
                for o in orders
                if (o.signal_id, o.account_id, o.purpose) == (signal_id, account_id, purpose)
            ]
            in_ledger = sum(
                (o.quantity - o.filled_quantity for o in mine if o.status in working), Decimal(0)
            )
            at_broker = sum(
                (
                    p.quantity - p.filled_quantity
                    for o in mine
                    if (p := paper.get(o.client_order_id)) is not None and p.status in working
                ),
                Decimal(0),
            )
            checked = [("ledger", in_ledger)] if ledger else []
            for where, cover in [*checked, ("broker", at_broker)]:
                if cover > max(quantity, Decimal(0)):
                    problems.append(
                        f"{signal_id}/{account_id}: {cover} {purpose} working ({where}) on "
                        f"{quantity} open by the fills"
                    )
    return problems


def protection_gaps(db: Database) -> list[str]:
    """Open positions (not UNPROTECTED, not closed) without exactly one working stop at the
    paper broker for their whole open quantity. Empty when every one has its stop."""
    working = {s.value for s in OrderStatus if s not in TERMINAL}
    gaps = []
    with db.transaction() as session:
        positions = list(session.scalars(select(PositionRow).where(PositionRow.status == "OPEN")))
        stops = list(session.scalars(select(OrderRow).where(OrderRow.purpose == "STOP")))
        paper = {row.client_order_id: row for row in session.scalars(select(PaperOrderRow))}
    for position in positions:
        at_broker = [
            p
            for o in stops
            if (o.signal_id, o.account_id) == (position.signal_id, position.account_id)
            and (p := paper.get(o.client_order_id)) is not None
            and p.status in working
        ]
        if len(at_broker) != 1 or (
            at_broker[0].quantity - at_broker[0].filled_quantity != position.open_quantity
        ):
            gaps.append(
                f"{position.signal_id}/{position.account_id}: {len(at_broker)} working stop(s) "
                f"for an open quantity of {position.open_quantity}"
            )
    return gaps


def reservations(db: Database) -> list[RiskReservationRow]:
    with db.transaction() as session:
        return list(session.scalars(select(RiskReservationRow)))


async def poll_until(
    probe: Callable[[], Any], *, timeout_s: float = 30, interval_s: float = 0.1
) -> Any:
    """Wait until ``probe()`` returns something truthy (awaiting it if it is a coroutine)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise TimeoutError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(interval_s)


class FaultyBroker:
    """A broker in front of the paper broker that fails the way real ones do.

    ``busy``: the next N submits fail before anything is sent (transient).
    ``ambiguous``: the next N submits reach the broker, then the answer is lost (a timeout
    after sending); the caller cannot know whether the order exists.
    ``late_every``: every Nth status answer is the order's acknowledgement again (its first
    report), late and out of order — a state it has left, fewer executions — as at-least-once
    report delivery allows.
    ``slow_first_status_s``: the first status request of each order takes this long to answer
    (a broker that stalls; longer than the heartbeat timeout, the attempt is abandoned).
    """

    def __init__(
        self,
        inner: Broker,
        *,
        busy: int = 0,
        ambiguous: int = 0,
        late_every: int = 0,
        slow_first_status_s: float = 0,
    ) -> None:
        self._inner = inner
        self._slow_first_status_s = slow_first_status_s
        self._slowed: set[str] = set()
        self._busy = busy
        self._ambiguous = ambiguous
        self._late_every = late_every
        self._first: dict[str, BrokerOrder] = {}
        self._lock = threading.Lock()
        self.submit_calls = 0
        """Submits of entry orders (protective and closing orders are counted apart)."""
        self.other_submit_calls = 0
        self.status_calls = 0
        self.late_reports = 0
        self.stalls = 0

    def submit(self, ticket: OrderTicket) -> BrokerOrder:
        with self._lock:
            if is_entry(ticket.client_order_id):
                self.submit_calls += 1
            else:
                self.other_submit_calls += 1
            if self._busy > 0:
                self._busy -= 1
                raise BrokerUnavailable("broker busy, try again")
            lose_answer = self._ambiguous > 0
            self._ambiguous -= 1 if lose_answer else 0
        order = self._inner.submit(ticket)
        with self._lock:
            self._first.setdefault(ticket.client_order_id, order)
        if lose_answer:
            raise BrokerUnavailable("timed out waiting for the acknowledgement")
        return order

    def status(self, client_order_id: str) -> BrokerOrder | None:
        with self._lock:
            stall = self._slow_first_status_s > 0 and client_order_id not in self._slowed
            self._slowed.add(client_order_id)
            self.stalls += int(stall)
        if stall:
            threading.Event().wait(self._slow_first_status_s)  # a broker that does not answer
        order = self._inner.status(client_order_id)
        with self._lock:
            self.status_calls += 1
            if order is None:
                return None
            first = self._first.setdefault(client_order_id, order)
            if self._late_every and self.status_calls % self._late_every == 0 and first != order:
                self.late_reports += 1
                return first
        return order

    def cancel(self, client_order_id: str) -> BrokerOrder | None:
        return self._inner.cancel(client_order_id)

    def open_orders(self, account_id: str) -> list[BrokerOrder]:
        return self._inner.open_orders(account_id)

    def working_orders(
        self, account_id: str, known: Sequence[KnownOrder]
    ) -> list[BrokerOrder] | None:
        return self._inner.working_orders(account_id, known)

    def replace(self, client_order_id: str, ticket: OrderTicket) -> BrokerOrder:
        return self._inner.replace(client_order_id, ticket)

    def quote(self, account_id: str, symbol: str) -> Quote | None:
        return self._inner.quote(account_id, symbol)

    def positions(self, account_id: str) -> list[BrokerPosition] | None:
        return self._inner.positions(account_id)

    def account_state(self, account_id: str) -> AccountReading | None:
        return self._inner.account_state(account_id)


def paper_orders(db: Database, *, entries_only: bool = True) -> dict[str, PaperOrderRow]:
    """The paper broker's own book, by client order id (its entry orders, by default)."""
    with db.transaction() as session:
        return {
            row.client_order_id: row
            for row in session.scalars(select(PaperOrderRow))
            if not entries_only or is_entry(row.client_order_id)
        }


@dataclass
class WorkerHarness:
    client: Client
    db: Database
    settings: Settings
    executor: ThreadPoolExecutor
    broker: Broker | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        activities = build_activities(self.db, self.settings, self.broker)
        async with build_worker(self.client, self.settings, activities, self.executor):
            yield


# --------------------------------------------------------------------------------------------
# Credentials must never reach Temporal

PLANTED_PG_PASSWORD = "planted-pg-password-5d1e"
"""Put into every test PostgreSQL URL (trust auth ignores it) so the credential scan can look
for it in every history the suite writes."""
PLANTED_FIX_PASSWORD = "planted-fix-logon-password-8c2b"
"""The FIX logon password of the integration tier's FIX worker; scanned for like the others."""
TEST_CODEC_KEYS = "scan-k1:" + base64.b64encode(b"planted-codec-key-for-tests-0001").decode()
"""The codec key ring of the integration tests that encrypt; itself a secret to scan for."""


def with_password(url: str, password: str) -> str:
    """``scheme://user@host/db`` → ``scheme://user:password@host/db`` (unless it has one)."""
    scheme, rest = url.split("://", 1)
    credentials, at, host = rest.rpartition("@")
    if not at or ":" in credentials:
        return url
    return f"{scheme}://{credentials}:{password}@{host}"


def _payloads(message: Message) -> Iterator[Payload]:
    """Every Payload inside a protobuf message, at any depth."""
    if isinstance(message, Payload):
        yield message
        return
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if isinstance(value, Message):
            items = [value]
        elif hasattr(value, "values"):  # a map field
            items = [v for v in value.values() if isinstance(v, Message)]
        else:  # a repeated field
            items = [v for v in value if isinstance(v, Message)]
        for item in items:
            yield from _payloads(item)


async def readable_history(client: Client, workflow_id: str, run_id: str, codec: Any) -> bytes:
    """A stored history as a reader with the test keys sees it: the raw events, plus every
    payload decrypted."""
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    parts = [event.SerializeToString() for event in history.events]
    for event in history.events:
        for payload in _payloads(event):
            [opened] = await codec.decode([payload])
            parts.append(opened.SerializeToString())
    return b"\n".join(parts)


async def credential_leaks(client: Client, secrets: list[str], codec: Any) -> list[str]:
    """Every workflow the server holds, scanned for each secret: ``workflow id: secret``."""
    leaks: list[str] = []
    async for execution in client.list_workflows(""):
        blob = await readable_history(client, execution.id, execution.run_id, codec)
        leaks += [f"{execution.id}: {s[:6]}…" for s in secrets if s.encode() in blob]
    return leaks


def schema_revisions() -> tuple[str, str]:
    """The code's newest migration and the one before it: ``(head, previous)``."""
    scripts = ScriptDirectory(str(MIGRATIONS))
    head = scripts.get_current_head()
    assert head is not None
    script = scripts.get_revision(head)
    assert script is not None and isinstance(script.down_revision, str)
    return head, script.down_revision


def schema_version(db: Database) -> list[str]:
    """The rows of the database's Alembic version table; none when it has no such table."""
    with db.engine.connect() as connection:
        if not db.engine.dialect.has_table(connection, "alembic_version"):
            return []
        return list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())


@contextmanager
def fresh_postgres(admin: str) -> Iterator[Database]:
    """A fresh, migrated database on the real server (``admin``: its admin URL), dropped
    afterwards."""
    name = f"teo_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    host_part = admin.split("://", 1)[1].rsplit("/", 1)[0]
    db = Database(with_password(f"postgresql+psycopg://{host_part}/{name}", PLANTED_PG_PASSWORD))
    try:
        db.migrate()
        yield db
    finally:
        db.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

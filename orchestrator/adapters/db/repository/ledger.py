"""The order ledger: each order written before the broker sees it, brought to the broker's
reports (fills deduplicated, the lifecycle kept), and read back with its fills."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import Connection, Update, bindparam, insert, select, update
from sqlalchemy.orm import Session

from orchestrator.adapters.db.repository.tables import FILLS, ORDERS, on_postgres, prefixed
from orchestrator.adapters.db.schema import FillRow, OrderRow
from orchestrator.domain.contracts.payloads import PlaceOrderRequest
from orchestrator.domain.errors import InvalidOrderTransition
from orchestrator.domain.orders import (
    OrderOutcome,
    OrderPurpose,
    OrderStatus,
    advance,
    average_price,
)
from orchestrator.domain.values import OrderType, Side

_ORDER_EXISTS = select(ORDERS.c.client_order_id).where(
    ORDERS.c.client_order_id == bindparam("client_order_id")
)
INSERT_ORDER = insert(ORDERS)
ORDER_AND_FILLS = (
    ORDERS.c.status,
    ORDERS.c.quantity,
    ORDERS.c.broker_order_id,
    ORDERS.c.reject_text,
    FILLS.c.execution_id,
    FILLS.c.quantity.label("fill_quantity"),
    FILLS.c.price,
)
"""What booking a report reads of an order: a row per fill."""
_ORDER_READ = (
    select(*ORDER_AND_FILLS)
    .select_from(ORDERS.outerjoin(FILLS, FILLS.c.client_order_id == ORDERS.c.client_order_id))
    .where(ORDERS.c.client_order_id == bindparam("client_order_id"))
    .with_for_update(of=ORDERS)
)
"""An order, locked, with its fills."""
INSERT_FILL = insert(FILLS)
_ORDERS_READ = (
    select(ORDERS.c.client_order_id.label("key"), *ORDER_AND_FILLS)
    .select_from(ORDERS.outerjoin(FILLS, FILLS.c.client_order_id == ORDERS.c.client_order_id))
    .where(ORDERS.c.client_order_id.in_(bindparam("client_order_ids", expanding=True)))
    .order_by(ORDERS.c.client_order_id)
    .with_for_update(of=ORDERS)
)
"""Many orders, locked in client order id order, with their fills."""


_ORDER_STATE = (
    "status",
    "filled_quantity",
    "average_price",
    "broker_order_id",
    "reject_text",
    "updated_at",
)
"""The columns a broker report changes."""


def order_update(prefix: str = "") -> Update:
    """An order's new state, by client order id (``key``); bound names carry ``prefix``."""
    return (
        update(ORDERS)
        .where(ORDERS.c.client_order_id == bindparam(f"{prefix}key"))
        .values({name: bindparam(f"{prefix}{name}") for name in _ORDER_STATE})
    )


_UPDATE_ORDER = order_update()
_PG_BOOK_ONE_FILL = _UPDATE_ORDER.add_cte(
    insert(FILLS).values({c.name: bindparam(f"f_{c.name}") for c in FILLS.c}).cte("fill_written")
)
"""An order's new state and its one new fill."""


def record_order_intent(session: Session, request: PlaceOrderRequest, now: datetime) -> None:
    """Write-ahead: the order exists in our ledger before the broker is asked. Idempotent.
    (A leg's first order is written by :func:`reserve_risk` with its reservation.)"""
    connection = session.connection()
    key = {"client_order_id": request.client_order_id}
    if connection.execute(_ORDER_EXISTS, key).first():
        return
    connection.execute(INSERT_ORDER, order_values(request, now))


def order_values(request: PlaceOrderRequest, now: datetime) -> dict[str, object]:
    """The ledger row of an entry order not yet sent."""
    return pending_order_values(
        client_order_id=request.client_order_id,
        signal_id=request.signal_id,
        account_id=request.account_id,
        business_sequence=request.business_sequence,
        purpose=OrderPurpose.ENTRY,
        broker=request.broker,
        broker_symbol=request.broker_symbol,
        side=request.side,
        order_type=request.order_type,
        quantity=request.quantity,
        limit_price=request.limit_price,
        stop_price=None,
        now=now,
    )


def pending_order_values(
    *,
    client_order_id: str,
    signal_id: str,
    account_id: str,
    business_sequence: int,
    purpose: OrderPurpose,
    broker: str,
    broker_symbol: str,
    side: Side,
    order_type: OrderType,
    quantity: Decimal,
    limit_price: Decimal | None,
    stop_price: Decimal | None,
    now: datetime,
) -> dict[str, object]:
    """The ledger row of any order written ahead, not yet sent (``INSERT_ORDER``'s values)."""
    return {
        "client_order_id": client_order_id,
        "signal_id": signal_id,
        "account_id": account_id,
        "business_sequence": business_sequence,
        "broker": broker,
        "broker_symbol": broker_symbol,
        "side": side.value,
        "order_type": order_type.value,
        "quantity": quantity,
        "limit_price": limit_price,
        "purpose": purpose.value,
        "stop_price": stop_price,
        "status": OrderStatus.PENDING_SUBMIT.value,
        "filled_quantity": Decimal(0),
        "average_price": None,
        "broker_order_id": None,
        "reject_text": None,
        "created_at": now,
        "updated_at": now,
    }


def apply_broker_report(
    session: Session,
    client_order_id: str,
    *,
    status: OrderStatus,
    broker_order_id: str | None,
    executions: list[tuple[str, Decimal, Decimal, datetime]],
    reject_text: str | None,
    now: datetime,
) -> OrderOutcome:
    """Bring our ledger to the broker's state. Executions are deduplicated on their id, so a
    repeated or replayed report changes nothing; a late report of a state the order has left
    keeps the status (its executions still count); an inexplicable transition raises.

    One read (the order, locked, with its fills), the new fills, the order's new state."""
    connection = session.connection()
    rows = connection.execute(_ORDER_READ, {"client_order_id": client_order_id}).all()
    if not rows:
        raise LookupError(f"order {client_order_id} is not in the ledger")
    booked = book_report(
        client_order_id,
        rows,
        status=status,
        broker_order_id=broker_order_id,
        executions=executions,
        reject_text=reject_text,
        now=now,
    )
    write_order(connection, booked)
    return booked.outcome


def apply_broker_reports(
    session: Session, reports: Sequence[tuple[str, dict[str, Any]]], now: datetime
) -> dict[str, OrderOutcome]:
    """:func:`apply_broker_report` for many reports, in their order: the same outcomes (the
    last report's, for an order reported more than once) and the same writes, in three
    statements whatever their number — one read of every order with its fills (locked, in id
    order), then the new fills and the orders' new states, each one ``executemany``. A report
    is (client order id, ``status``, ``broker_order_id``, ``executions`` and ``reject_text``
    as :func:`apply_broker_report` takes them). Raises as :func:`apply_broker_report` does,
    the caller's transaction to roll back."""
    if not reports:
        return {}
    connection = session.connection()
    read: dict[str, list[Any]] = defaultdict(list)
    ids = sorted({client_order_id for client_order_id, _ in reports})
    for row in connection.execute(_ORDERS_READ, {"client_order_ids": ids}):
        read[row.key].append(row)
    outcomes: dict[str, OrderOutcome] = {}
    fills: list[dict[str, object]] = []
    states: dict[str, dict[str, object]] = {}
    for client_order_id, report in reports:
        rows = read.get(client_order_id)
        if not rows:
            raise LookupError(f"order {client_order_id} is not in the ledger")
        booked = book_report(client_order_id, rows, **report, now=now)
        outcomes[client_order_id] = booked.outcome
        fills.extend(booked.added)
        states[client_order_id] = booked.order_state
        read[client_order_id] = _as_read(rows, booked)
    if fills:
        connection.execute(INSERT_FILL, fills)
    connection.execute(_UPDATE_ORDER, list(states.values()))
    return outcomes


class _Read(NamedTuple):
    """A row as :data:`ORDER_AND_FILLS` reads it, for an order booked earlier in the batch."""

    status: str
    quantity: Decimal
    broker_order_id: str | None
    reject_text: str | None
    execution_id: str | None
    fill_quantity: Decimal | None
    price: Decimal | None


def _as_read(rows: Sequence[Any], booked: Booked) -> list[_Read]:
    """The rows a read would give once ``booked`` is written: the order's new state, a row
    per fill."""
    state = booked.order_state
    fills = [(r.execution_id, r.fill_quantity, r.price) for r in rows if r.execution_id]
    fills += [(f["execution_id"], f["quantity"], f["price"]) for f in booked.added]
    return [
        _Read(
            status=str(state["status"]),
            quantity=rows[0].quantity,
            broker_order_id=booked.outcome.broker_order_id,
            reject_text=booked.outcome.reject_text,
            execution_id=execution_id,
            fill_quantity=quantity,
            price=price,
        )
        for execution_id, quantity, price in fills or [(None, None, None)]
    ]


def write_order(connection: Connection, booked: Booked) -> None:
    """An order's new fills and new state."""
    if len(booked.added) == 1 and on_postgres(connection):  # the usual: one new execution
        connection.execute(_PG_BOOK_ONE_FILL, booked.order_state | prefixed("f_", booked.added[0]))
    else:
        if booked.added:
            connection.execute(INSERT_FILL, booked.added)
        connection.execute(_UPDATE_ORDER, booked.order_state)


@dataclass(frozen=True)
class Booked:
    """An order's state once a broker report is applied to what the ledger holds."""

    outcome: OrderOutcome
    order_state: dict[str, object]
    """The order row's new values (``key``: its client order id)."""
    added: list[dict[str, object]]
    """Fill rows not in the ledger yet."""

    @property
    def filled_quantity(self) -> Decimal:
        return self.outcome.filled_quantity

    @property
    def partial(self) -> bool:
        return 0 < self.outcome.filled_quantity < self.outcome.quantity


def book_report(
    client_order_id: str,
    rows: Sequence[Any],
    *,
    status: OrderStatus,
    broker_order_id: str | None,
    executions: list[tuple[str, Decimal, Decimal, datetime]],
    reject_text: str | None,
    now: datetime,
) -> Booked:
    """Apply a report to the order as read (a row per fill); raises on an inexplicable
    transition or fills beyond the order's quantity."""
    order = rows[0]
    new_status = advance(OrderStatus(order.status), status).value
    fills = {r.execution_id: (r.fill_quantity, r.price) for r in rows if r.execution_id is not None}
    added: list[dict[str, object]] = []
    for execution_id, quantity, price, at in executions:
        if execution_id in fills:
            continue
        fills[execution_id] = (quantity, price)
        added.append(
            {
                "execution_id": execution_id,
                "client_order_id": client_order_id,
                "quantity": quantity,
                "price": price,
                "filled_at": at,
            }
        )
    filled = sum((q for q, _ in fills.values()), Decimal(0))
    if filled > order.quantity:  # no late or repeated report explains this: a human must look
        raise InvalidOrderTransition(
            new_status,
            f"{status.value} with fills of {filled}, over the order's {order.quantity}",
        )
    average = average_price(fills.values())
    kept_broker_id = broker_order_id or order.broker_order_id
    kept_reject_text = order.reject_text if reject_text is None else reject_text
    return Booked(
        outcome=OrderOutcome(
            client_order_id=client_order_id,
            broker_order_id=kept_broker_id,
            status=new_status,
            quantity=order.quantity,
            filled_quantity=filled,
            average_price=average,
            reject_text=kept_reject_text,
        ),
        order_state={
            "key": client_order_id,
            "status": new_status,
            "filled_quantity": filled,
            "average_price": average,
            "broker_order_id": kept_broker_id,
            "reject_text": kept_reject_text,
            "updated_at": now,
        },
        added=added,
    )


@dataclass(frozen=True)
class LedgerFill:
    """One execution of an order, as the ledger booked it."""

    execution_id: str
    quantity: Decimal
    price: Decimal
    filled_at: datetime


@dataclass(frozen=True)
class LedgerOrder:
    """One order as the ledger holds it, with its fills (oldest first)."""

    client_order_id: str
    signal_id: str
    account_id: str
    business_sequence: int
    """1 for a leg's first order, 2 and up for the orders completing it; a protective order's
    generation; a closing order's number."""
    purpose: OrderPurpose
    broker: str
    symbol: str
    """As sent to the broker (after the account's symbol map)."""
    side: str
    order_type: str
    quantity: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    filled: Decimal
    average_price: Decimal | None
    status: OrderStatus
    broker_order_id: str | None
    reject_text: str | None
    """The broker's rejection, verbatim."""
    created_at: datetime
    updated_at: datetime
    fills: list[LedgerFill]


def list_orders(
    session: Session, *, signal_id: str | None = None, account_id: str | None = None
) -> list[LedgerOrder]:
    """The ledger's orders (of one signal, one account, or both), oldest first, each with its
    fills. Read only."""
    wanted = []
    if signal_id is not None:
        wanted.append(OrderRow.signal_id == signal_id)
    if account_id is not None:
        wanted.append(OrderRow.account_id == account_id)
    fills: dict[str, list[LedgerFill]] = defaultdict(list)
    for fill in session.scalars(
        select(FillRow)
        .join(OrderRow, OrderRow.client_order_id == FillRow.client_order_id)
        .where(*wanted)
        .order_by(FillRow.filled_at, FillRow.execution_id)
    ):
        fills[fill.client_order_id].append(
            LedgerFill(
                execution_id=fill.execution_id,
                quantity=fill.quantity,
                price=fill.price,
                filled_at=fill.filled_at,
            )
        )
    return [
        LedgerOrder(
            client_order_id=row.client_order_id,
            signal_id=row.signal_id,
            account_id=row.account_id,
            business_sequence=row.business_sequence,
            purpose=OrderPurpose(row.purpose),
            broker=row.broker,
            symbol=row.broker_symbol,
            side=row.side,
            order_type=row.order_type,
            quantity=row.quantity,
            limit_price=row.limit_price,
            stop_price=row.stop_price,
            filled=row.filled_quantity,
            average_price=row.average_price,
            status=OrderStatus(row.status),
            broker_order_id=row.broker_order_id,
            reject_text=row.reject_text,
            created_at=row.created_at,
            updated_at=row.updated_at,
            fills=fills.get(row.client_order_id, []),
        )
        for row in session.scalars(
            select(OrderRow).where(*wanted).order_by(OrderRow.created_at, OrderRow.client_order_id)
        )
    ]

"""Settlement: a leg's reservation booked against what its orders filled (the filled share
of risk and margin kept, the rest given back), alone or with the report that ends the order."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import ARRAY, String, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from orchestrator.adapters.db.repository.ledger import (
    INSERT_FILL,
    ORDER_AND_FILLS,
    Booked,
    apply_broker_report,
    book_report,
    order_update,
    write_order,
)
from orchestrator.adapters.db.repository.reservation import (
    SETTLED,
    UPDATE_STATE,
    check_state_written,
    check_states_written,
    state_values,
)
from orchestrator.adapters.db.repository.tables import (
    FILLS,
    ORDERS,
    RESERVATIONS,
    STATE,
    on_postgres,
    prefixed,
)
from orchestrator.domain.orders import OrderOutcome, OrderPurpose, OrderStatus

_SETTLEMENT_INPUT = (
    RESERVATIONS.c.risk_amount,
    RESERVATIONS.c.margin,
    STATE.c.open_positions,
    STATE.c.risk_committed_today,
    STATE.c.free_margin,
    STATE.c.version,
)
"""What settling a leg reads of its reservation and its account's state (see _settled_state)."""
_SETTLE_READ = (
    select(
        RESERVATIONS.c.id,
        RESERVATIONS.c.status,
        RESERVATIONS.c.quantity,
        *_SETTLEMENT_INPUT,
        FILLS.c.quantity.label("filled"),
    )
    .select_from(
        RESERVATIONS.join(STATE, STATE.c.account_id == RESERVATIONS.c.account_id).outerjoin(
            ORDERS.join(FILLS, FILLS.c.client_order_id == ORDERS.c.client_order_id),
            (ORDERS.c.signal_id == RESERVATIONS.c.signal_id)
            & (ORDERS.c.account_id == RESERVATIONS.c.account_id)
            & (ORDERS.c.purpose == OrderPurpose.ENTRY.value),
        )
    )
    .where(
        RESERVATIONS.c.signal_id == bindparam("signal_id"),
        RESERVATIONS.c.account_id == bindparam("account_id"),
    )
    .with_for_update(of=[RESERVATIONS, STATE])
)
"""A leg's reservation and its account's state, both locked, a row per fill of the leg's
orders (every order of the account in the signal: first and completions)."""
_SETTLE_RESERVATION = (
    update(RESERVATIONS)
    .where(RESERVATIONS.c.id == bindparam("key"))
    .values(status=bindparam("status"), settled_at=bindparam("settled_at"))
)
_PG_SETTLE = UPDATE_STATE.add_cte(
    update(RESERVATIONS)
    .where(RESERVATIONS.c.id == bindparam("r_key"))
    .values(status=bindparam("r_status"), settled_at=bindparam("r_settled_at"))
    .cte("reservation_settled")
)
"""The account's state given back, and the reservation settled."""


_O2 = ORDERS.alias("leg_orders")
_F2 = FILLS.alias("leg_fills")
_BOOK_COLUMNS = (
    *ORDER_AND_FILLS,
    RESERVATIONS.c.id.label("r_id"),
    RESERVATIONS.c.status.label("r_status"),
    RESERVATIONS.c.quantity.label("r_quantity"),
    *_SETTLEMENT_INPUT,
    select(func.coalesce(func.sum(_F2.c.quantity), 0))
    .select_from(_O2.join(_F2, _F2.c.client_order_id == _O2.c.client_order_id))
    .where(
        _O2.c.signal_id == RESERVATIONS.c.signal_id,
        _O2.c.account_id == RESERVATIONS.c.account_id,
        _O2.c.purpose == OrderPurpose.ENTRY.value,
        _O2.c.client_order_id != ORDERS.c.client_order_id,
    )
    .scalar_subquery()
    .label("other_filled"),
)
_PG_BOOK_READ = (
    select(*_BOOK_COLUMNS)
    .select_from(
        ORDERS.join(
            RESERVATIONS,
            (RESERVATIONS.c.signal_id == bindparam("signal_id"))
            & (RESERVATIONS.c.account_id == bindparam("account_id")),
        )
        .join(STATE, STATE.c.account_id == RESERVATIONS.c.account_id)
        .outerjoin(FILLS, FILLS.c.client_order_id == ORDERS.c.client_order_id)
    )
    .where(ORDERS.c.client_order_id == bindparam("client_order_id"))
    .with_for_update(of=[ORDERS, RESERVATIONS, STATE])
)
"""PostgreSQL: an order with its fills and its leg's reservation and account state, all three
locked, and what the leg's other orders filled (summed exactly: ``numeric``). A row per fill
of the order; none without a reservation."""
_WANTED = (
    func.unnest(
        bindparam("client_order_ids", type_=ARRAY(String)),
        bindparam("signal_ids", type_=ARRAY(String)),
        bindparam("account_ids", type_=ARRAY(String)),
    )
    .table_valued("client_order_id", "signal_id", "account_id")
    .render_derived(name="wanted")
)
_PG_SLICE_BOOK_READ = (
    select(_WANTED.c.client_order_id.label("key"), *_BOOK_COLUMNS)
    .select_from(
        _WANTED.join(ORDERS, ORDERS.c.client_order_id == _WANTED.c.client_order_id)
        .join(
            RESERVATIONS,
            (RESERVATIONS.c.signal_id == _WANTED.c.signal_id)
            & (RESERVATIONS.c.account_id == _WANTED.c.account_id),
        )
        .join(STATE, STATE.c.account_id == RESERVATIONS.c.account_id)
        .outerjoin(FILLS, FILLS.c.client_order_id == ORDERS.c.client_order_id)
    )
    .order_by(STATE.c.account_id.collate("C"))
    .with_for_update(of=[ORDERS, RESERVATIONS, STATE])
)
"""PostgreSQL: :data:`_PG_BOOK_READ` for a slice's orders (``client_order_ids``, ``signal_ids``
and ``account_ids``, pairwise), the rows locked in account order; ``key``: the order's id."""
_UPDATE_ORDER = order_update()
_ORDER_SET = order_update("o_")
_PG_BOOK_AND_SETTLE = _PG_SETTLE.add_cte(_ORDER_SET.cte("order_written"))
"""An order's last state, and its leg settled."""
_PG_BOOK_ONE_FILL_AND_SETTLE = _PG_BOOK_AND_SETTLE.add_cte(
    insert(FILLS).values({c.name: bindparam(f"f_{c.name}") for c in FILLS.c}).cte("fill_written")
)
"""An order's last state and its one new fill, and its leg settled."""


def settle_reservation(session: Session, signal_id: str, account_id: str, now: datetime) -> None:
    """Book the leg's outcome against its reservation: keep the filled share of risk and
    margin (all orders of the leg counted), give back the rest. Settling twice changes
    nothing."""
    connection = session.connection()
    rows = connection.execute(
        _SETTLE_READ, {"signal_id": signal_id, "account_id": account_id}
    ).all()
    if not rows or rows[0].status == SETTLED:
        return
    row = rows[0]
    # Summed here, not in SQL: SQLite would add the text-stored decimals as floats.
    filled = sum((r.filled for r in rows if r.filled is not None), Decimal(0))
    state = _settled_state(account_id, row, row.quantity, filled)
    settled = {"key": row.id, "status": SETTLED, "settled_at": now}
    if on_postgres(connection):
        written = connection.execute(_PG_SETTLE, state | prefixed("r_", settled))
        check_state_written(written, account_id)
        return
    check_state_written(connection.execute(UPDATE_STATE, state), account_id)
    connection.execute(_SETTLE_RESERVATION, settled)


def _settled_state(
    account_id: str, row: Any, reserved: Decimal, filled: Decimal
) -> dict[str, object]:
    """The account's state once a leg that reserved ``reserved`` (risk and margin of ``row``)
    has filled ``filled``: the filled share kept, the rest given back, the position released
    if nothing filled."""
    unfilled = max(reserved - filled, Decimal(0)) / reserved
    return state_values(
        account_id,
        row.version,
        risk_committed_today=row.risk_committed_today - row.risk_amount * unfilled,
        free_margin=row.free_margin + row.margin * unfilled,
        open_positions=max(0, row.open_positions - 1) if filled <= 0 else row.open_positions,
    )


def _settlement(
    account_id: str, leg: Any, booked: Booked, now: datetime
) -> dict[str, object] | None:
    """What booking ``booked`` (read with ``leg``, a row of :data:`_PG_BOOK_READ`) writes
    beyond the order: its leg settled and its account's state given back, the order's state
    with them (``o_``) — or ``None``: the order's state only (it filled partly, and a completion
    settles the leg; or the leg is settled already)."""
    if booked.partial or leg.r_status == SETTLED:
        return None
    return (
        _settled_state(account_id, leg, leg.r_quantity, leg.other_filled + booked.filled_quantity)
        | prefixed("r_", {"key": leg.r_id, "status": SETTLED, "settled_at": now})
        | prefixed("o_", booked.order_state)
    )


def book_and_settle(
    session: Session,
    client_order_id: str,
    *,
    signal_id: str,
    account_id: str,
    status: OrderStatus,
    broker_order_id: str | None,
    executions: list[tuple[str, Decimal, Decimal, datetime]],
    reject_text: str | None,
    now: datetime,
) -> OrderOutcome:
    """:func:`apply_broker_report` for a report that ends the leg's order, then
    :func:`settle_reservation` of the leg unless the order filled only partly (a completion
    follows and settles the leg itself). The same outcome and the same writes; on PostgreSQL
    in one read and one write instead of two of each."""
    report: dict[str, Any] = {
        "status": status,
        "broker_order_id": broker_order_id,
        "executions": executions,
        "reject_text": reject_text,
        "now": now,
    }
    connection = session.connection()
    if on_postgres(connection):
        rows = connection.execute(
            _PG_BOOK_READ,
            {"client_order_id": client_order_id, "signal_id": signal_id, "account_id": account_id},
        ).all()
        if rows:
            booked = book_report(client_order_id, rows, **report)
            params = _settlement(account_id, rows[0], booked, now)
            if params is None:
                write_order(connection, booked)
                return booked.outcome
            statement = _PG_BOOK_AND_SETTLE
            if len(booked.added) == 1:
                params |= prefixed("f_", booked.added[0])
                statement = _PG_BOOK_ONE_FILL_AND_SETTLE
            elif booked.added:
                connection.execute(INSERT_FILL, booked.added)
            check_state_written(connection.execute(statement, params), account_id)
            return booked.outcome
    outcome = apply_broker_report(session, client_order_id, **report)
    if not 0 < outcome.filled_quantity < outcome.quantity:
        settle_reservation(session, signal_id, account_id, now)
    return outcome


class LegReport(NamedTuple):
    """A broker's report that ends a leg's order, for :func:`book_slice`."""

    client_order_id: str
    signal_id: str
    account_id: str
    report: dict[str, Any]
    """``status``, ``broker_order_id``, ``executions`` and ``reject_text``, as
    :func:`book_and_settle` takes them."""


def book_slice(
    session: Session, reports: Sequence[LegReport], now: datetime
) -> dict[str, OrderOutcome] | None:
    """:func:`book_and_settle` for every report of a slice, by client order id: the same
    outcomes and the same writes, on PostgreSQL in a constant number of round trips — one read
    of every order with its fills, reservation and account state (locked in account order),
    the decisions of :func:`book_report` and settlement per order, then the writes of all as
    pipelined ``executemany``: new fills, orders only, orders settling their leg (with their
    one new fill, or without). An order without a reservation is booked on its own.

    ``None``: the slice is not for batching (SQLite, or an account twice); the caller books
    order by order. Raises as :func:`book_report` does, the slice's transaction to roll back."""
    connection = session.connection()
    accounts = [leg.account_id for leg in reports]
    if not on_postgres(connection) or len(set(accounts)) != len(accounts):
        return None
    read = connection.execute(
        _PG_SLICE_BOOK_READ,
        {
            "client_order_ids": [leg.client_order_id for leg in reports],
            "signal_ids": [leg.signal_id for leg in reports],
            "account_ids": accounts,
        },
    )
    found: dict[str, list[Any]] = defaultdict(list)
    for row in read:
        found[row.key].append(row)
    outcomes: dict[str, OrderOutcome] = {}
    fills: list[dict[str, object]] = []
    orders: list[dict[str, object]] = []
    settled: list[dict[str, object]] = []
    settled_with_fill: list[dict[str, object]] = []
    for leg in reports:
        rows = found.get(leg.client_order_id)
        if not rows:  # no reservation (or no order): as alone
            outcomes[leg.client_order_id] = book_and_settle(
                session,
                leg.client_order_id,
                signal_id=leg.signal_id,
                account_id=leg.account_id,
                **leg.report,
                now=now,
            )
            continue
        booked = book_report(leg.client_order_id, rows, **leg.report, now=now)
        outcomes[leg.client_order_id] = booked.outcome
        params = _settlement(leg.account_id, rows[0], booked, now)
        if params is None:
            fills.extend(booked.added)
            orders.append(booked.order_state)
            continue
        if len(booked.added) == 1:
            settled_with_fill.append(params | prefixed("f_", booked.added[0]))
        else:
            fills.extend(booked.added)
            settled.append(params)
    if fills:
        connection.execute(INSERT_FILL, fills)
    if orders:
        connection.execute(_UPDATE_ORDER, orders)
    for statement, values in (
        (_PG_BOOK_AND_SETTLE, settled),
        (_PG_BOOK_ONE_FILL_AND_SETTLE, settled_with_fill),
    ):
        if values:
            check_states_written(connection.execute(statement, values), len(values))
    return outcomes

"""Positions in the ledger: what each keeper recorded, their closing fills, and what closing does
to an account (today's loss, its open positions, the risk and margin its leg committed).

Written only by the position keeper's activities (one writer per position); each closing fill
changes the account once, however often the keeper records the same position."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select, true, update
from sqlalchemy.orm import Session

from orchestrator.adapters.db.repository.ledger import INSERT_ORDER
from orchestrator.adapters.db.repository.reservation import check_states_written
from orchestrator.adapters.db.repository.tables import ORDERS, STATE
from orchestrator.adapters.db.schema import (
    FillRow,
    OrderRow,
    PositionFillRow,
    PositionRow,
    RiskReservationRow,
    SymbolSpecRow,
)
from orchestrator.domain.orders import OrderPurpose, OrderStatus, average_price
from orchestrator.domain.positions import CloseCause, ClosingFill, Position, PositionStatus
from orchestrator.domain.values import Side

STOP_HIT = CloseCause.STOP_HIT.value
_CLOSING_CHANGES = (
    "balance",
    "equity",
    "peak_equity",
    "realized_loss_today",
    "risk_committed_today",
    "free_margin",
    "open_positions",
)
"""What closing changes of an account's state."""
_STATES_READ = (
    select(STATE.c.account_id, STATE.c.version, *(STATE.c[name] for name in _CLOSING_CHANGES))
    .where(STATE.c.account_id.in_(bindparam("account_ids", expanding=True)))
    .order_by(STATE.c.account_id)
    .with_for_update()
)
_CLOSES_WRITTEN = (
    update(STATE)
    .where(STATE.c.account_id == bindparam("key"), STATE.c.version == bindparam("read_version"))
    .values(
        version=bindparam("version"),
        **{name: bindparam(name) for name in _CLOSING_CHANGES},
    )
)
"""Accounts' states once closing fills are booked, version-checked as the ORM's writes are."""
_ORDERS_WRITTEN = select(ORDERS.c.client_order_id).where(
    ORDERS.c.client_order_id.in_(bindparam("client_order_ids", expanding=True))
)


def record_position_orders(session: Session, orders: Sequence[dict[str, object]]) -> None:
    """Write-ahead for many protective or closing orders (rows of
    :func:`~orchestrator.adapters.db.repository.ledger.pending_order_values`), idempotent: one
    read of those already written, one insert of the others. Core statements, not the ORM's
    unit of work: a keeper writes one per stop and take-profit of every position it protects."""
    if not orders:
        return
    connection = session.connection()
    written = set(
        connection.execute(
            _ORDERS_WRITTEN, {"client_order_ids": [o["client_order_id"] for o in orders]}
        ).scalars()
    )
    fresh = [o for o in orders if o["client_order_id"] not in written]
    if fresh:
        connection.execute(INSERT_ORDER, fresh)


def end_unsent_orders(
    session: Session, client_order_ids: Sequence[str], text: str, now: datetime
) -> None:
    """Protective orders written ahead but never sent: cancelled in the ledger, with why (one
    statement; an id not in the ledger, or sent, is left as it is)."""
    if not client_order_ids:
        return
    session.connection().execute(
        update(ORDERS)
        .where(
            ORDERS.c.client_order_id.in_(client_order_ids),
            ORDERS.c.status == OrderStatus.PENDING_SUBMIT.value,
        )
        .values(status=OrderStatus.CANCELLED.value, reject_text=text, updated_at=now)
    )


def record_positions(
    session: Session, keeper_workflow_id: str, positions: list[Position], now: datetime
) -> None:
    """Bring the ledger to the keeper's positions: each position's row, each closing fill once,
    and for each closing fill booked now, its effect on the account. The rows, the fills
    already booked, and the account states (locked, in account order) and reservations of the
    positions that closed some are read in one statement each, and the writes flushed once at
    the end (a batch keeper records hundreds at once)."""
    signal_ids = {p.signal_id for p in positions}
    account_ids = {p.account_id for p in positions}
    rows = {
        (row.signal_id, row.account_id): row
        for row in session.scalars(
            select(PositionRow).where(
                PositionRow.signal_id.in_(signal_ids), PositionRow.account_id.in_(account_ids)
            )
        )
    }
    executions = [fill.execution_id for p in positions for fill in p.closes]
    booked_before = (
        set(
            session.scalars(
                select(PositionFillRow.execution_id).where(
                    PositionFillRow.execution_id.in_(executions)
                )
            )
        )
        if executions
        else set()
    )
    closing = [
        p
        for p in positions
        if any(f.execution_id not in booked_before for f in p.closes)
        or _closes_now(p, rows.get((p.signal_id, p.account_id)))
    ]
    states, reservations = _closing_accounts(session, closing)
    for position in positions:
        row = rows.get((position.signal_id, position.account_id))
        closes_now = _closes_now(position, row)
        if row is None:
            row = PositionRow(
                signal_id=position.signal_id,
                account_id=position.account_id,
                opened_at=now,
            )
            session.add(row)
        row.keeper_workflow_id = keeper_workflow_id
        row.broker = position.broker
        row.broker_symbol = position.broker_symbol
        row.side = position.side.value
        row.entry_quantity = position.entry_quantity
        row.average_entry = position.average_entry
        row.open_quantity = position.open_quantity
        row.stop = position.stop
        row.take_profit = position.take_profit
        row.status = position.status.value
        row.realized_pnl = position.realized_pnl
        row.stop_client_order_id = (
            position.stop_order.client_order_id if position.stop_order else None
        )
        row.take_profit_client_order_id = (
            position.take_profit_order.client_order_id if position.take_profit_order else None
        )
        row.note = position.note
        row.updated_at = now
        if closes_now:
            row.closed_at = now
        booked = [fill for fill in position.closes if fill.execution_id not in booked_before]
        for fill in booked:
            _book_fill(session, position, fill)
        booked_before.update(fill.execution_id for fill in booked)
        state = states.get(position.account_id)
        if (booked or closes_now) and state is not None:
            reservation = reservations.get((position.signal_id, position.account_id))
            _account_closes(state, reservation, booked, closes_now)
    session.flush()
    if states:
        written = session.connection().execute(_CLOSES_WRITTEN, list(states.values()))
        check_states_written(written, len(states))


def _closes_now(position: Position, row: PositionRow | None) -> bool:
    """Whether recording ``position`` closes it (its row, if any, is not closed yet)."""
    was_closed = row is not None and row.status == PositionStatus.CLOSED.value
    return position.status is PositionStatus.CLOSED and not was_closed


def _closing_accounts(
    session: Session, positions: list[Position]
) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], RiskReservationRow]]:
    """The account states (locked, in account order; :data:`_CLOSES_WRITTEN`'s values, to
    change) and the reservations of these positions, each read in one statement."""
    if not positions:
        return {}, {}
    accounts = sorted({p.account_id for p in positions})
    states = {
        row.account_id: {
            "key": row.account_id,
            "read_version": row.version,
            "version": row.version + 1,
            **{name: getattr(row, name) for name in _CLOSING_CHANGES},
        }
        for row in session.connection().execute(_STATES_READ, {"account_ids": accounts})
    }
    pairs = {(p.signal_id, p.account_id) for p in positions}
    reservations = {
        (r.signal_id, r.account_id): r
        for r in session.scalars(
            select(RiskReservationRow).where(
                RiskReservationRow.signal_id.in_({s for s, _ in pairs}),
                RiskReservationRow.account_id.in_(accounts),
            )
        )
        if (r.signal_id, r.account_id) in pairs
    }
    return states, reservations


def _book_fill(session: Session, position: Position, fill: ClosingFill) -> None:
    """Book one closing fill (not booked before)."""
    session.add(
        PositionFillRow(
            execution_id=fill.execution_id,
            signal_id=position.signal_id,
            account_id=position.account_id,
            client_order_id=fill.client_order_id,
            quantity=fill.quantity,
            price=fill.price,
            cause=fill.cause.value,
            pnl=fill.pnl,
            filled_at=fill.at,
        )
    )


def _account_closes(
    state: dict[str, Any],
    reservation: RiskReservationRow | None,
    fills: list[ClosingFill],
    closed: bool,
) -> None:
    """What closing does to the account: a loss counts against today's budget at once, the
    realized P&L moves balance and equity, the closed share of the leg's committed risk and
    margin is given back, and a position closed whole frees its slot."""
    for fill in fills:
        state["realized_loss_today"] += max(Decimal(0), -fill.pnl)
        state["balance"] += fill.pnl
        state["equity"] += fill.pnl
        state["peak_equity"] = max(state["peak_equity"], state["equity"])
        if reservation is not None and reservation.quantity > 0:
            share = fill.quantity / reservation.quantity
            state["risk_committed_today"] = max(
                Decimal(0), state["risk_committed_today"] - reservation.risk_amount * share
            )
            state["free_margin"] += reservation.margin * share
    if closed:
        state["open_positions"] = max(0, state["open_positions"] - 1)


@dataclass(frozen=True)
class PositionView:
    """A position as the ledger holds it, for the starter and reports."""

    signal_id: str
    account_id: str
    broker: str
    broker_symbol: str
    side: str
    entry_quantity: Decimal
    average_entry: Decimal
    open_quantity: Decimal
    stop: Decimal
    take_profit: Decimal | None
    status: str
    realized_pnl: Decimal
    stop_client_order_id: str | None
    take_profit_client_order_id: str | None
    note: str | None
    keeper_workflow_id: str
    opened_at: datetime
    closed_at: datetime | None
    closes: list[PositionFillRow]
    slippage: dict[str, Decimal] = field(default_factory=dict)
    """Per closing fill of a stop (by execution id): how far past its stop price it filled,
    against the position (a gap); absent when the stop order is not in the ledger."""


def list_positions(
    session: Session,
    *,
    signal_id: str | None = None,
    account_id: str | None = None,
    open_only: bool = False,
    symbol: str | None = None,
) -> list[PositionView]:
    """Positions in (signal, account) order, each with its closing fills in time order."""
    query = select(PositionRow).order_by(PositionRow.signal_id, PositionRow.account_id)
    if signal_id is not None:
        query = query.where(PositionRow.signal_id == signal_id)
    if account_id is not None:
        query = query.where(PositionRow.account_id == account_id)
    if symbol is not None:
        query = query.where(PositionRow.broker_symbol == symbol)
    if open_only:
        query = query.where(PositionRow.status != PositionStatus.CLOSED.value)
    rows = list(session.scalars(query))
    fills: dict[tuple[str, str], list[PositionFillRow]] = {}
    stops: dict[str, Decimal] = {}
    if rows:
        signals = {r.signal_id for r in rows}
        for fill in session.scalars(
            select(PositionFillRow)
            .where(PositionFillRow.signal_id.in_(signals))
            .order_by(PositionFillRow.filled_at, PositionFillRow.execution_id)
        ):
            fills.setdefault((fill.signal_id, fill.account_id), []).append(fill)
        stop_orders = {
            f.client_order_id for found in fills.values() for f in found if f.cause == STOP_HIT
        }
        if stop_orders:
            stops = {
                cid: price
                for cid, price in session.execute(
                    select(OrderRow.client_order_id, OrderRow.stop_price).where(
                        OrderRow.client_order_id.in_(stop_orders)
                    )
                )
                if price is not None
            }
    return [
        PositionView(
            signal_id=r.signal_id,
            account_id=r.account_id,
            broker=r.broker,
            broker_symbol=r.broker_symbol,
            side=r.side,
            entry_quantity=r.entry_quantity,
            average_entry=r.average_entry,
            open_quantity=r.open_quantity,
            stop=r.stop,
            take_profit=r.take_profit,
            status=r.status,
            realized_pnl=r.realized_pnl,
            stop_client_order_id=r.stop_client_order_id,
            take_profit_client_order_id=r.take_profit_client_order_id,
            note=r.note,
            keeper_workflow_id=r.keeper_workflow_id,
            opened_at=r.opened_at,
            closed_at=r.closed_at,
            closes=fills.get((r.signal_id, r.account_id), []),
            slippage=_slippage(r.side, fills.get((r.signal_id, r.account_id), []), stops),
        )
        for r in rows
    ]


def _slippage(
    side: str, closes: list[PositionFillRow], stops: dict[str, Decimal]
) -> dict[str, Decimal]:
    """How far past its stop price each stop fill went against the position: a long's stop
    (a sell) below it, a short's (a buy) above it."""
    sign = 1 if side == Side.BUY.value else -1
    return {
        f.execution_id: sign * (stops[f.client_order_id] - f.price)
        for f in closes
        if f.cause == STOP_HIT and f.client_order_id in stops
    }


@dataclass(frozen=True)
class EntryFills:
    """What one account's entry orders in a signal filled, in all, with its contract."""

    account_id: str
    broker: str
    broker_symbol: str
    quantity: Decimal
    average_price: Decimal
    tick_size: Decimal
    tick_value: Decimal
    lot_step: Decimal
    min_lot: Decimal


def entry_fills(
    session: Session, signal_id: str, account_ids: list[str] | None = None
) -> list[EntryFills]:
    """Per account, everything the signal's entry orders (first, completions, reroutes') filled
    as the ledger has it, in account order: what positions the signal opened. Summed here, in
    Decimal, on either database."""
    rows = session.execute(
        select(
            OrderRow.account_id,
            OrderRow.broker,
            OrderRow.broker_symbol,
            FillRow.quantity,
            FillRow.price,
            SymbolSpecRow,
        )
        .join(FillRow, FillRow.client_order_id == OrderRow.client_order_id)
        .join(
            SymbolSpecRow,
            (SymbolSpecRow.broker == OrderRow.broker)
            & (SymbolSpecRow.symbol == OrderRow.broker_symbol),
        )
        .where(
            OrderRow.signal_id == signal_id,
            OrderRow.purpose == OrderPurpose.ENTRY.value,
            true() if account_ids is None else OrderRow.account_id.in_(account_ids),
        )
        .order_by(OrderRow.account_id)
    ).all()
    fills: dict[str, list[tuple[Decimal, Decimal]]] = {}
    first: dict[str, Any] = {}
    for row in rows:
        fills.setdefault(row.account_id, []).append((row.quantity, row.price))
        first.setdefault(row.account_id, row)
    result = []
    for account_id, account_fills in fills.items():
        row, spec = first[account_id], first[account_id].SymbolSpecRow
        price = average_price(account_fills)
        if price is None:
            continue
        result.append(
            EntryFills(
                account_id=account_id,
                broker=row.broker,
                broker_symbol=row.broker_symbol,
                quantity=sum((q for q, _ in account_fills), Decimal(0)),
                average_price=price,
                tick_size=spec.tick_size,
                tick_value=spec.tick_value,
                lot_step=spec.lot_step,
                min_lot=spec.min_lot,
            )
        )
    return result

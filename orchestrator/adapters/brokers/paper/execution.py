"""The embedded paper broker: a broker of its own, with its book in the database.

Behaviour per account comes from the account book (``paper:``): fill fully, fill part and expire
the rest, or reject with a given text; fills arrive in slices over a latency. Time advances on
the wall clock (or the clock given), and executions are materialised when the order is read, so
following an order polls like it would with a real broker.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orchestrator.adapters.brokers.base import (
    AccountReading,
    BrokerOrder,
    BrokerPosition,
    Execution,
    OrderTicket,
    Quote,
    ReplaceNotSupported,
)
from orchestrator.adapters.brokers.paper.config import PaperBehaviour, PaperFill
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import (
    AccountRow,
    PaperExecutionRow,
    PaperOrderRow,
    SymbolSpecRow,
)
from orchestrator.domain.orders import CANCELLABLE, TERMINAL, OrderStatus
from orchestrator.domain.planning import floor_to_step
from orchestrator.domain.values import OrderType


class PaperBroker:
    """A :class:`~orchestrator.adapters.brokers.base.Broker` whose book is in our database."""

    def __init__(self, db: Database, clock: Callable[[], datetime] | None = None) -> None:
        self._db = db
        self._clock = clock or (lambda: datetime.now(UTC))

    def submit(self, ticket: OrderTicket) -> BrokerOrder:
        now = self._clock()
        with self._db.transaction() as session:
            existing = session.get(PaperOrderRow, ticket.client_order_id, with_for_update=True)
            if existing is not None:
                return self._advance(session, existing, now)
            account = session.get(AccountRow, ticket.account_id)
            behaviour = PaperBehaviour.model_validate(account.paper if account else {})
            spec = session.scalar(
                select(SymbolSpecRow).where(
                    SymbolSpecRow.broker == (account.broker if account else ""),
                    SymbolSpecRow.symbol == ticket.symbol,
                )
            )
            row = PaperOrderRow(
                client_order_id=ticket.client_order_id,
                broker_order_id=_broker_order_id(ticket.client_order_id),
                account_id=ticket.account_id,
                symbol=ticket.symbol,
                side=ticket.side.value,
                order_type=ticket.order_type.value,
                quantity=ticket.quantity,
                limit_price=ticket.limit_price,
                reference_price=ticket.reference_price,
                status=OrderStatus.NEW.value,
                filled_quantity=Decimal(0),
                average_price=None,
                reject_text=None,
                schedule=[],
                final_status=OrderStatus.FILLED.value,
                submitted_at=now,
            )
            if spec is None:
                row.status = OrderStatus.REJECTED.value
                row.reject_text = f"Unknown symbol {ticket.symbol}"
            elif behaviour.fill is PaperFill.REJECT:
                row.status = OrderStatus.REJECTED.value
                row.reject_text = behaviour.reject_text
            else:
                earlier = _orders_of(session, ticket.account_id)
                price = _fill_price(ticket, spec.tick_size, behaviour.slippage_ticks)
                quantity = ticket.quantity
                partial = behaviour.fill is PaperFill.PARTIAL and (
                    behaviour.partial_orders is None or earlier < behaviour.partial_orders
                )
                if behaviour.stall_after is not None and earlier >= behaviour.stall_after:
                    quantity = Decimal(0)
                    row.final_status = OrderStatus.NEW.value
                    row.schedule = [_STALLED]
                elif partial:
                    quantity = floor_to_step(quantity * behaviour.partial_ratio, spec.lot_step)
                    row.final_status = OrderStatus.EXPIRED.value
                if quantity > 0 or not row.schedule:
                    row.schedule = _slices(quantity, spec.lot_step, behaviour, price)
            session.add(row)
            session.flush()
            return self._advance(session, row, now)

    def status(self, client_order_id: str) -> BrokerOrder | None:
        now = self._clock()
        with self._db.transaction() as session:
            row = session.get(PaperOrderRow, client_order_id, with_for_update=True)
            return None if row is None else self._advance(session, row, now)

    def cancel(self, client_order_id: str) -> BrokerOrder | None:
        now = self._clock()
        with self._db.transaction() as session:
            row = session.get(PaperOrderRow, client_order_id, with_for_update=True)
            if row is None:
                return None
            self._advance(session, row, now)
            if OrderStatus(row.status) in CANCELLABLE:
                row.status = OrderStatus.CANCELLED.value
                row.schedule = []
            return self._view(session, row)

    def open_orders(self, account_id: str) -> list[BrokerOrder]:
        now = self._clock()
        with self._db.transaction() as session:
            rows = session.scalars(
                select(PaperOrderRow).where(
                    PaperOrderRow.account_id == account_id,
                    PaperOrderRow.status.not_in([s.value for s in TERMINAL]),
                )
            ).all()
            views = [self._advance(session, row, now) for row in rows]
        return [v for v in views if v.status not in TERMINAL]

    def replace(self, client_order_id: str, ticket: OrderTicket) -> BrokerOrder:
        raise ReplaceNotSupported(f"{type(self).__name__} cannot cancel/replace yet")

    def quote(self, account_id: str, symbol: str) -> Quote | None:
        return None

    def positions(self, account_id: str) -> list[BrokerPosition] | None:
        return None

    def account_state(self, account_id: str) -> AccountReading | None:
        return None

    def _advance(self, session: Session, row: PaperOrderRow, now: datetime) -> BrokerOrder:
        """Materialise every execution whose time has come."""
        if OrderStatus(row.status) not in TERMINAL:
            elapsed_ms = (now - row.submitted_at) / timedelta(milliseconds=1)
            due = [s for s in row.schedule if int(s["due_ms"]) <= elapsed_ms]
            remaining = [s for s in row.schedule if int(s["due_ms"]) > elapsed_ms]
            done = len(
                session.scalars(
                    select(PaperExecutionRow.execution_id).where(
                        PaperExecutionRow.client_order_id == row.client_order_id
                    )
                ).all()
            )
            for offset, item in enumerate(due, start=done + 1):
                quantity, price = Decimal(item["quantity"]), Decimal(item["price"])
                session.add(
                    PaperExecutionRow(
                        execution_id=f"{row.broker_order_id}-E{offset}",
                        client_order_id=row.client_order_id,
                        quantity=quantity,
                        price=price,
                        executed_at=row.submitted_at + timedelta(milliseconds=int(item["due_ms"])),
                    )
                )
                total = row.filled_quantity + quantity
                row.average_price = (
                    row.filled_quantity * (row.average_price or Decimal(0)) + quantity * price
                ) / total
                row.filled_quantity = total
            row.schedule = remaining
            if not remaining:
                row.status = row.final_status
            elif row.filled_quantity > 0:
                row.status = OrderStatus.PARTIALLY_FILLED.value
            session.flush()
        return self._view(session, row)

    @staticmethod
    def _view(session: Session, row: PaperOrderRow) -> BrokerOrder:
        executions = tuple(
            Execution(
                execution_id=e.execution_id,
                quantity=e.quantity,
                price=e.price,
                executed_at=e.executed_at,
            )
            for e in session.scalars(
                select(PaperExecutionRow)
                .where(PaperExecutionRow.client_order_id == row.client_order_id)
                .order_by(PaperExecutionRow.executed_at, PaperExecutionRow.execution_id)
            )
        )
        return BrokerOrder(
            client_order_id=row.client_order_id,
            broker_order_id=row.broker_order_id,
            status=OrderStatus(row.status),
            quantity=row.quantity,
            executions=executions,
            reject_text=row.reject_text,
        )


def _fill_price(ticket: OrderTicket, tick_size: Decimal, slippage_ticks: int) -> Decimal:
    if ticket.order_type is OrderType.LIMIT and ticket.limit_price is not None:
        return ticket.limit_price
    return ticket.reference_price + ticket.side.sign * slippage_ticks * tick_size


def _slices(
    quantity: Decimal, lot_step: Decimal, behaviour: PaperBehaviour, price: Decimal
) -> list[dict[str, str]]:
    if quantity <= 0:
        return []
    count = behaviour.slices
    piece = floor_to_step(quantity / count, lot_step)
    if piece <= 0:
        count, piece = 1, quantity
    parts = [piece] * (count - 1) + [quantity - piece * (count - 1)]
    return [
        {
            "due_ms": str(behaviour.latency_ms * (i + 1) // count),
            "quantity": format(part, "f"),
            "price": format(price, "f"),
        }
        for i, part in enumerate(parts)
    ]


_STALLED = {"due_ms": str(10**12), "quantity": "0", "price": "0"}
"""A schedule entry that never comes due: the order works until it is cancelled."""


def _orders_of(session: Session, account_id: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(PaperOrderRow)
            .where(PaperOrderRow.account_id == account_id)
        )
        or 0
    )


def _broker_order_id(client_order_id: str) -> str:
    return "P" + hashlib.sha256(client_order_id.encode()).hexdigest()[:16].upper()

"""The embedded paper broker: a broker of its own, with its book in the database.

Orders that execute on arrival (MARKET, and a LIMIT the market already reaches) follow the
account's behaviour from the book (``paper:``): fill fully, fill part and expire the rest, or
reject with a given text; fills arrive in slices over a latency. Resting orders (a STOP, a LIMIT
away from the market) work until a quote of the paper market (``market.py``) reaches their price,
and then fill whole (``matching.py``). Time advances on the wall clock (or the clock given), and
executions are materialised when the order is read, so following an order polls like it would
with a real broker. Positions and money come from the book's own fills (``account.py``);
docs/paper-broker.md has the rules.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orchestrator.adapters.brokers.base import (
    AccountReading,
    AccountView,
    BrokerOrder,
    BrokerPosition,
    Execution,
    KnownOrder,
    OrderTicket,
    Quote,
    ReplaceRejected,
)
from orchestrator.adapters.brokers.paper.account import (
    books_of,
    net_quantity,
    open_account,
    open_accounts,
    positions_of,
    reading_of,
)
from orchestrator.adapters.brokers.paper.config import PaperBehaviour, PaperFill
from orchestrator.adapters.brokers.paper.market import PaperMarket, latest_quote, quotes_from
from orchestrator.adapters.brokers.paper.matching import fill_price, rests
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import (
    AccountRow,
    PaperExecutionRow,
    PaperOrderRow,
    SymbolSpecRow,
)
from orchestrator.domain.orders import CANCELLABLE, TERMINAL, OrderStatus
from orchestrator.domain.planning import floor_to_step
from orchestrator.domain.values import OrderType, Side


class PaperBroker:
    """A :class:`~orchestrator.adapters.brokers.base.Broker` whose book is in our database."""

    def __init__(self, db: Database, clock: Callable[[], datetime] | None = None) -> None:
        self._db = db
        self._clock = clock or (lambda: datetime.now(UTC))
        self.market = PaperMarket(db, clock=self._clock)
        """Its market: the quotes that trigger resting orders (on the same clock)."""

    def submit(self, ticket: OrderTicket) -> BrokerOrder:
        now = self._clock()
        with self._db.transaction() as session:
            existing = session.get(PaperOrderRow, ticket.client_order_id, with_for_update=True)
            if existing is not None:
                return self._advance(session, existing, now)
            return self._advance(session, self._open(session, ticket, now), now)

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
            views = self._catch_up(session, account_id, now)
        return [v for v in views if v.status not in TERMINAL]

    @property
    def concurrent_reads(self) -> int:
        """How many accounts the sync should ask at once: one on SQLite, whose single writer
        makes concurrent transactions wait on each other (its busy handler sleeps)."""
        return 1 if self._db.engine.dialect.name == "sqlite" else 8

    def working_orders(
        self, account_id: str, known: Sequence[KnownOrder] = ()
    ) -> list[BrokerOrder] | None:
        """Its book lists every order of the account: ``known`` is not needed."""
        return self.open_orders(account_id)

    def account_views(self, account_ids: Sequence[str]) -> dict[str, AccountView]:
        """Money, positions and working orders of many accounts, read in one transaction and a
        few statements (the account sync asks a page of accounts at once)."""
        now = self._clock()
        with self._db.transaction() as session:
            open_accounts(session, account_ids, now)  # before any order is locked
            orders: dict[str, list[BrokerOrder]] = {}
            for row in session.scalars(
                select(PaperOrderRow)
                .where(
                    PaperOrderRow.account_id.in_(account_ids),
                    PaperOrderRow.status.not_in([s.value for s in TERMINAL]),
                )
                .order_by(PaperOrderRow.client_order_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            ).all():
                view = self._advance(session, row, now)
                if view.status not in TERMINAL:
                    orders.setdefault(row.account_id, []).append(view)
            return {
                account_id: AccountView(reading, positions, orders.get(account_id, []))
                for account_id, (reading, positions) in books_of(session, account_ids, now).items()
            }

    def replace(self, client_order_id: str, ticket: OrderTicket) -> BrokerOrder:
        """Cancel the working order ``client_order_id`` and open the ticket's in its place, in
        one transaction. The ticket's quantity is FIX's OrderQty, the order's total: the new
        order works what is left of it once the old order's fills are counted, at the ticket's
        prices, and is treated as any arriving order (a STOP rests, and so on); fills the old
        order had stay on it. A retry finds the new order and returns it.
        :class:`ReplaceRejected` when the old order is unknown or no longer working (it carries
        the old order, fills included), when it already filled the ticket's total, or when the
        ticket changes its account, symbol or side."""
        if ticket.client_order_id == client_order_id:
            raise ReplaceRejected(
                client_order_id, "the replacement needs a client order id of its own", None
            )
        now = self._clock()
        with self._db.transaction() as session:
            new = session.get(PaperOrderRow, ticket.client_order_id, with_for_update=True)
            if new is not None:
                return self._advance(session, new, now)
            # Lock as every catch-up does (the account's working orders of the symbol, by id),
            # the old order among them when it still works: no lock is taken out of that order.
            open_account(session, ticket.account_id, now)
            self._catch_up(session, ticket.account_id, now, symbol=ticket.symbol)
            old = session.get(PaperOrderRow, client_order_id, with_for_update=True)
            if old is None:
                raise ReplaceRejected(client_order_id, "no such order", None)
            view = self._advance(session, old, now)  # a fill due first is the old one's
            refusal = _replace_refusal(view, old, ticket)
            if refusal is None:
                old.status = OrderStatus.CANCELLED.value
                old.schedule = []
                session.flush()
                # FIX's OrderQty: the total, what the old order filled included.
                works = ticket.quantity - sum((e.quantity for e in view.executions), Decimal(0))
                rest = dataclasses.replace(ticket, quantity=works)
                return self._advance(session, self._open(session, rest, now), now)
        raise refusal  # after the commit: the old order's fills found on the way are kept

    def quote(self, account_id: str, symbol: str) -> Quote | None:
        """The paper market's quote now; the same for every account."""
        return self.market.quote_at(symbol)

    def positions(self, account_id: str) -> list[BrokerPosition] | None:
        """Net positions from the book's fills (``None``: the account is not in the book)."""
        now = self._clock()
        with self._db.transaction() as session:
            if session.get(AccountRow, account_id) is None:
                return None
            self._catch_up(session, account_id, now)
            return positions_of(session, account_id)

    def account_state(self, account_id: str) -> AccountReading | None:
        """Balance, equity and free margin from the book's fills and the market's quotes now
        (``None``: the account is not in the book)."""
        now = self._clock()
        with self._db.transaction() as session:
            if session.get(AccountRow, account_id) is None:
                return None
            open_account(session, account_id, now)  # before any order is locked
            self._catch_up(session, account_id, now)
            return reading_of(session, account_id, now)

    def _open(self, session: Session, ticket: OrderTicket, now: datetime) -> PaperOrderRow:
        """A new order, as the paper broker takes it on arrival."""
        account = session.get(AccountRow, ticket.account_id)
        behaviour = PaperBehaviour.model_validate(account.paper if account else {})
        spec = session.scalar(
            select(SymbolSpecRow).where(
                SymbolSpecRow.broker == (account.broker if account else ""),
                SymbolSpecRow.symbol == ticket.symbol,
            )
        )
        open_account(session, ticket.account_id, now)
        row = PaperOrderRow(
            client_order_id=ticket.client_order_id,
            broker_order_id=_broker_order_id(ticket.client_order_id),
            account_id=ticket.account_id,
            symbol=ticket.symbol,
            side=ticket.side.value,
            order_type=ticket.order_type.value,
            quantity=ticket.quantity,
            limit_price=ticket.limit_price,
            stop_price=ticket.stop_price,
            reference_price=ticket.reference_price,
            status=OrderStatus.NEW.value,
            filled_quantity=Decimal(0),
            average_price=None,
            reject_text=None,
            schedule=[],
            final_status=OrderStatus.FILLED.value,
            submitted_at=now,
            resting=False,
        )
        quote = latest_quote(session, ticket.symbol, now)
        reduces = (
            spec is not None
            and (
                ticket.order_type is OrderType.LIMIT
                or (ticket.order_type is OrderType.MARKET and quote is not None)
            )
            and self._reduces(session, ticket, now)
        )
        if spec is None:
            row.status = OrderStatus.REJECTED.value
            row.reject_text = f"Unknown symbol {ticket.symbol}"
        elif ticket.order_type is OrderType.STOP and not (ticket.stop_price or 0) > 0:
            row.status = OrderStatus.REJECTED.value
            row.reject_text = "STOP order without a positive stop price"
        elif ticket.order_type is OrderType.STOP and behaviour.stop_refusal is not None:
            row.status = OrderStatus.REJECTED.value
            row.reject_text = behaviour.stop_refusal
        elif rests(ticket.order_type, ticket.side, ticket.limit_price, quote, reduces=reduces):
            row.resting = True
            row.final_status = OrderStatus.NEW.value
        elif behaviour.fill is PaperFill.REJECT:
            row.status = OrderStatus.REJECTED.value
            row.reject_text = behaviour.reject_text
        else:
            earlier = _orders_of(session, ticket.account_id)
            price = _fill_price(ticket, spec.tick_size, behaviour.slippage_ticks)
            if reduces and quote is not None:  # an exit at the market: the quote's side
                price = quote.bid if ticket.side is Side.SELL else quote.ask
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
        return row

    def _reduces(self, session: Session, ticket: OrderTicket, now: datetime) -> bool:
        """Whether the order reduces the account's position in its symbol (what the market
        has already triggered counted first)."""
        self._catch_up(session, ticket.account_id, now, symbol=ticket.symbol)
        held = net_quantity(session, ticket.account_id, ticket.symbol)
        return held != 0 and (held > 0) != (ticket.side is Side.BUY)

    def _catch_up(
        self, session: Session, account_id: str, now: datetime, *, symbol: str | None = None
    ) -> list[BrokerOrder]:
        """Bring the account's working orders (of ``symbol``, or all) up to ``now``, locked in
        one order (by id) so that two callers cannot deadlock."""
        query = (
            select(PaperOrderRow)
            .where(
                PaperOrderRow.account_id == account_id,
                PaperOrderRow.status.not_in([s.value for s in TERMINAL]),
            )
            .order_by(PaperOrderRow.client_order_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if symbol is not None:
            query = query.where(PaperOrderRow.symbol == symbol)
        return [self._advance(session, row, now) for row in session.scalars(query).all()]

    def _advance(self, session: Session, row: PaperOrderRow, now: datetime) -> BrokerOrder:
        """Materialise every execution whose time has come."""
        if OrderStatus(row.status) not in TERMINAL:
            if row.resting:
                _match(session, row, now)
            else:
                _run_schedule(session, row, now)
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
            symbol=row.symbol,
            side=Side(row.side),
            order_type=OrderType(row.order_type),
        )


def _run_schedule(session: Session, row: PaperOrderRow, now: datetime) -> None:
    """An order executing on arrival: book each slice of its schedule that has come due."""
    elapsed_ms = (now - row.submitted_at) / timedelta(milliseconds=1)
    due = [s for s in row.schedule if int(s["due_ms"]) <= elapsed_ms]
    remaining = [s for s in row.schedule if int(s["due_ms"]) > elapsed_ms]
    for item in due:
        at = row.submitted_at + timedelta(milliseconds=int(item["due_ms"]))
        _record(session, row, Decimal(item["quantity"]), Decimal(item["price"]), at)
    row.schedule = remaining
    if not remaining:
        row.status = row.final_status
    elif row.filled_quantity > 0:
        row.status = OrderStatus.PARTIALLY_FILLED.value


def _match(session: Session, row: PaperOrderRow, now: datetime) -> None:
    """A resting order: walk the market's quotes in time order, from the one in force when it
    arrived (later: from the last quote the last evaluation saw, that quote again included, as
    a quote may be set anew at the same time); the first that reaches its price fills what is
    left of it, whole, at the price the rule gives.

    Not from the time of the last evaluation: a quote is stamped before it is committed, so an
    evaluation that began after its stamp may not have seen it, and starting the next one at
    that time would skip it for good (a stop left working with the market through it)."""
    order_type, side = OrderType(row.order_type), Side(row.side)
    price = row.stop_price if order_type is OrderType.STOP else row.limit_price
    if price is None:
        return
    since = row.evaluated_at
    if since is None:
        arrival = latest_quote(session, row.symbol, row.submitted_at)
        since = arrival.at if arrival is not None else row.submitted_at
    for quote in quotes_from(session, row.symbol, since, now):
        since = quote.at
        fill = fill_price(order_type, side, price, quote)
        if fill is not None:
            at = max(quote.at, row.submitted_at)
            left = row.quantity - row.filled_quantity
            part = _resting_part(session, row, left)
            _record(session, row, part, fill, at)
            if part < left:  # a thin market: the rest waits for a later quote through it
                row.status = OrderStatus.PARTIALLY_FILLED.value
                row.evaluated_at = quote.at + timedelta(microseconds=1)
                return
            row.status = OrderStatus.FILLED.value
            break
    row.evaluated_at = since


def _resting_part(session: Session, row: PaperOrderRow, left: Decimal) -> Decimal:
    """What of ``left`` a resting order fills at one quote (the account's
    ``resting_fill_ratio`` of the order, floored to the lot step, at least one step)."""
    account = session.get(AccountRow, row.account_id)
    behaviour = PaperBehaviour.model_validate(account.paper if account else {})
    if behaviour.resting_fill_ratio >= 1:
        return left
    spec = session.scalar(
        select(SymbolSpecRow).where(
            SymbolSpecRow.broker == (account.broker if account else ""),
            SymbolSpecRow.symbol == row.symbol,
        )
    )
    step = spec.lot_step if spec is not None else left
    part = floor_to_step(row.quantity * behaviour.resting_fill_ratio, step)
    return min(left, max(step, part))


def _record(
    session: Session, row: PaperOrderRow, quantity: Decimal, price: Decimal, at: datetime
) -> None:
    """One execution of ``row``: its id is the broker order id and its sequence number."""
    done = session.scalar(
        select(func.count())
        .select_from(PaperExecutionRow)
        .where(PaperExecutionRow.client_order_id == row.client_order_id)
    )
    session.add(
        PaperExecutionRow(
            execution_id=f"{row.broker_order_id}-E{(done or 0) + 1}",
            client_order_id=row.client_order_id,
            quantity=quantity,
            price=price,
            executed_at=at,
        )
    )
    total = row.filled_quantity + quantity
    row.average_price = (
        row.filled_quantity * (row.average_price or Decimal(0)) + quantity * price
    ) / total
    row.filled_quantity = total


def _replace_refusal(
    view: BrokerOrder, old: PaperOrderRow, ticket: OrderTicket
) -> ReplaceRejected | None:
    """Why the order cannot be replaced by the ticket, if it cannot."""
    filled = sum((e.quantity for e in view.executions), Decimal(0))
    if view.status not in TERMINAL and ticket.quantity <= filled:
        return ReplaceRejected(
            view.client_order_id, f"the order already filled {filled} of {ticket.quantity}", view
        )
    if view.status in TERMINAL:
        return ReplaceRejected(view.client_order_id, f"too late: the order is {view.status}", view)
    if (old.account_id, old.symbol, old.side) != (
        ticket.account_id,
        ticket.symbol,
        ticket.side.value,
    ):
        return ReplaceRejected(
            view.client_order_id, "a replacement keeps the order's account, symbol and side", view
        )
    return None


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
    """The account's orders so far that executed on arrival (what ``partial_orders`` and
    ``stall_after`` count; resting orders do not)."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(PaperOrderRow)
            .where(PaperOrderRow.account_id == account_id, PaperOrderRow.resting.is_(False))
        )
        or 0
    )


def _broker_order_id(client_order_id: str) -> str:
    return "P" + hashlib.sha256(client_order_id.encode()).hexdigest()[:16].upper()

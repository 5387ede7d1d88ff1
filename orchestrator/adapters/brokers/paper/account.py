"""The paper broker's accounts: positions and money derived from its own fills and its market.

A position is the net of an account's fills in one symbol (buys +, sells −), at the average
price of its open part: adding to it averages the price, reducing it realizes P&L against that
average, and a fill through zero opens the rest at the fill's price. Money follows
(docs/paper-broker.md):

- balance = starting balance + realized P&L of closed quantity;
- equity = balance + unrealized P&L of the open quantity, marked at the current quote (the bid
  for a long, the ask for a short; at its own average price when the symbol has no quote);
- free margin = equity − margin per lot × open lots.

P&L of a price move is ``(exit − entry) × direction / tick size × tick value × lots``, the rule
of :func:`orchestrator.domain.positions.realized_pnl`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from orchestrator.adapters.brokers.base import AccountReading, BrokerPosition, Quote
from orchestrator.adapters.brokers.paper.market import latest_quote
from orchestrator.adapters.db.schema import (
    AccountRow,
    AccountStateRow,
    PaperAccountRow,
    PaperExecutionRow,
    PaperOrderRow,
    SymbolSpecRow,
)
from orchestrator.domain.errors import OrchestratorError
from orchestrator.domain.positions import Contract, realized_pnl
from orchestrator.domain.values import Side


@dataclass(frozen=True, slots=True)
class Fill:
    side: Side
    quantity: Decimal
    """Lots."""
    price: Decimal


@dataclass(slots=True)
class Holding:
    """One symbol's net position from a sequence of fills."""

    quantity: Decimal = Decimal(0)
    """Signed lots: positive long, negative short."""
    average_price: Decimal | None = None
    """Of the open part; ``None`` when flat."""
    realized: Decimal = Decimal(0)
    """P&L of the closed quantity, in the account's currency."""

    @property
    def side(self) -> Side:
        return Side.BUY if self.quantity > 0 else Side.SELL

    @property
    def lots(self) -> Decimal:
        return abs(self.quantity)


def replay(fills: Iterable[Fill], contract: Contract | None = None) -> Holding:
    """The holding after ``fills`` in order. Without a ``contract`` no P&L is computed."""
    held = Holding()
    for fill in fills:
        signed = fill.side.sign * fill.quantity
        if held.quantity == 0 or (held.quantity > 0) == (signed > 0):
            average = held.average_price or Decimal(0)
            held.average_price = (held.lots * average + fill.quantity * fill.price) / (
                held.lots + fill.quantity
            )
            held.quantity += signed
            continue
        closed = min(fill.quantity, held.lots)
        if contract is not None and held.average_price is not None:
            held.realized += realized_pnl(
                held.side, held.average_price, fill.price, closed, contract
            )
        held.quantity += signed
        if held.quantity == 0:
            held.average_price = None
        elif fill.quantity > closed:  # through zero: the rest opens at the fill's price
            held.average_price = fill.price
    return held


def open_account(session: Session, account_id: str, now: datetime) -> Decimal | None:
    """The paper account's starting balance; ``None`` for an account the book does not hold.

    The first time the paper broker deals with an account it opens it, with the balance of
    the account's state row at that moment; it keeps that balance from then on, whatever our
    ledger later records, as a broker keeps its own books."""
    opened = session.get(PaperAccountRow, account_id)
    if opened is not None:
        return opened.starting_balance
    state = session.get(AccountStateRow, account_id)
    if state is None:
        return None
    insert_for = (
        postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    )
    session.execute(
        insert_for(PaperAccountRow)
        .values(account_id=account_id, starting_balance=state.balance, opened_at=now)
        .on_conflict_do_nothing(index_elements=["account_id"])
    )
    # A concurrent first contact may have opened it first: read what is there.
    opened = session.get(PaperAccountRow, account_id, populate_existing=True)
    return opened.starting_balance if opened is not None else state.balance


def open_accounts(session: Session, account_ids: Sequence[str], now: datetime) -> None:
    """:func:`open_account` for many accounts, in three statements: those not opened yet are
    opened with their state's balance now."""
    opened = set(
        session.scalars(
            select(PaperAccountRow.account_id).where(PaperAccountRow.account_id.in_(account_ids))
        )
    )
    new = [
        {"account_id": account_id, "starting_balance": balance, "opened_at": now}
        for account_id, balance in session.execute(
            select(AccountStateRow.account_id, AccountStateRow.balance).where(
                AccountStateRow.account_id.in_(account_ids)
            )
        ).tuples()
        if account_id not in opened
    ]
    if new:
        insert_for = (
            postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        )
        session.execute(
            insert_for(PaperAccountRow)
            .values(new)
            .on_conflict_do_nothing(index_elements=["account_id"])
        )


def fills_of(session: Session, account_id: str, symbol: str | None = None) -> dict[str, list[Fill]]:
    """The account's executions per symbol, in the order they happened."""
    query = (
        select(
            PaperOrderRow.symbol,
            PaperOrderRow.side,
            PaperExecutionRow.quantity,
            PaperExecutionRow.price,
        )
        .join(PaperOrderRow, PaperOrderRow.client_order_id == PaperExecutionRow.client_order_id)
        .where(PaperOrderRow.account_id == account_id)
        .order_by(PaperExecutionRow.executed_at, PaperExecutionRow.execution_id)
    )
    if symbol is not None:
        query = query.where(PaperOrderRow.symbol == symbol)
    fills: dict[str, list[Fill]] = {}
    for name, side, quantity, price in session.execute(query).tuples():
        fills.setdefault(name, []).append(Fill(Side(side), quantity, price))
    return fills


def net_quantity(session: Session, account_id: str, symbol: str) -> Decimal:
    """The account's signed net lots in ``symbol`` (positive long)."""
    return replay(fills_of(session, account_id, symbol).get(symbol, [])).quantity


def positions_of(session: Session, account_id: str) -> list[BrokerPosition]:
    """The account's open positions, by symbol."""
    return _positions(fills_of(session, account_id))


def reading_of(session: Session, account_id: str, now: datetime) -> AccountReading | None:
    """The account's balance, equity and free margin now; ``None`` for an account the book
    does not hold."""
    account = session.get(AccountRow, account_id)
    starting = open_account(session, account_id, now)
    if account is None or starting is None:
        return None
    return _money(account, starting, fills_of(session, account_id), _Market(session, now), now)


def books_of(
    session: Session, account_ids: Sequence[str], now: datetime
) -> dict[str, tuple[AccountReading, list[BrokerPosition]]]:
    """:func:`reading_of` and :func:`positions_of` of many accounts, in a few statements (the
    account sync reads a page of accounts at once); accounts the book does not hold are left
    out."""
    accounts = {
        r.account_id: r
        for r in session.scalars(select(AccountRow).where(AccountRow.account_id.in_(account_ids)))
    }
    starting = {
        r.account_id: r.starting_balance
        for r in session.scalars(
            select(PaperAccountRow).where(PaperAccountRow.account_id.in_(account_ids))
        )
    }
    fills: dict[str, dict[str, list[Fill]]] = {}
    for account_id, name, side, quantity, price in session.execute(
        select(
            PaperOrderRow.account_id,
            PaperOrderRow.symbol,
            PaperOrderRow.side,
            PaperExecutionRow.quantity,
            PaperExecutionRow.price,
        )
        .join(PaperOrderRow, PaperOrderRow.client_order_id == PaperExecutionRow.client_order_id)
        .where(PaperOrderRow.account_id.in_(account_ids))
        .order_by(PaperExecutionRow.executed_at, PaperExecutionRow.execution_id)
    ).tuples():
        fills.setdefault(account_id, {}).setdefault(name, []).append(
            Fill(Side(side), quantity, price)
        )
    market = _Market(session, now)
    books = {}
    for account_id in sorted(accounts):
        balance = starting.get(account_id)
        if balance is None:
            balance = open_account(session, account_id, now)
        if balance is None:
            continue
        held = fills.get(account_id, {})
        books[account_id] = (
            _money(accounts[account_id], balance, held, market, now),
            _positions(held),
        )
    return books


class _Market:
    """Symbol specs and quotes as one reading of many accounts needs them, each read once."""

    def __init__(self, session: Session, now: datetime) -> None:
        self._session = session
        self._now = now
        self._specs: dict[tuple[str, str], SymbolSpecRow | None] = {}
        self._quotes: dict[str, Quote | None] = {}

    def spec(self, broker: str, symbol: str) -> SymbolSpecRow | None:
        key = (broker, symbol)
        if key not in self._specs:
            self._specs[key] = self._session.scalar(
                select(SymbolSpecRow).where(
                    SymbolSpecRow.broker == broker, SymbolSpecRow.symbol == symbol
                )
            )
        return self._specs[key]

    def quote(self, symbol: str) -> Quote | None:
        if symbol not in self._quotes:
            self._quotes[symbol] = latest_quote(self._session, symbol, self._now)
        return self._quotes[symbol]


def _positions(fills: dict[str, list[Fill]]) -> list[BrokerPosition]:
    positions = []
    for symbol, of_symbol in sorted(fills.items()):
        held = replay(of_symbol)
        if held.quantity != 0:
            positions.append(
                BrokerPosition(
                    symbol=symbol,
                    side=held.side,
                    quantity=held.lots,
                    average_price=held.average_price,
                )
            )
    return positions


def _money(
    account: AccountRow,
    starting: Decimal,
    fills: dict[str, list[Fill]],
    market: _Market,
    now: datetime,
) -> AccountReading:
    balance = starting
    unrealized = margin = Decimal(0)
    for symbol, of_symbol in sorted(fills.items()):
        spec = market.spec(account.broker, symbol)
        if spec is None:
            raise OrchestratorError(
                f"paper account {account.account_id} has fills in {symbol}, for which broker "
                f"{account.broker} has no symbol spec: P&L cannot be valued"
            )
        contract = Contract(
            tick_size=spec.tick_size,
            tick_value=spec.tick_value,
            lot_step=spec.lot_step,
            min_lot=spec.min_lot,
        )
        held = replay(of_symbol, contract)
        balance += held.realized
        if held.quantity == 0 or held.average_price is None:
            continue
        quote = market.quote(symbol)
        mark = held.average_price
        if quote is not None:
            mark = quote.bid if held.side is Side.BUY else quote.ask
        unrealized += realized_pnl(held.side, held.average_price, mark, held.lots, contract)
        margin += spec.margin_per_lot * held.lots
    equity = balance + unrealized
    return AccountReading(
        balance=balance, equity=equity, free_margin=equity - margin, reported=True, at=now
    )

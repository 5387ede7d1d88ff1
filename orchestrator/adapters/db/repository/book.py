"""The account book in the ledger: saving a book file (new accounts, reloads that keep or
replace live state), exporting it, and reading accounts and symbols."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orchestrator.adapters.book_file import AccountRecord, AccountState, Book, PaperBehaviour
from orchestrator.adapters.db.repository.controls import record_operator_action
from orchestrator.adapters.db.repository.reservation import RESERVED
from orchestrator.adapters.db.schema import (
    AccountRow,
    AccountStateRow,
    DailyReturnRow,
    RiskReservationRow,
    SymbolSpecRow,
)
from orchestrator.domain.book import (
    AccountLimits,
    AccountStatus,
    Mandate,
    SymbolSpec,
)
from orchestrator.domain.errors import OpenReservations, ValidationFailed

REPLACE_STATE = "replace_state"
"""The ``operator_actions`` action of a book load that replaced accounts' live state."""


@dataclass(frozen=True)
class StateReplacement:
    """An operator's decision that a book file's state is the truth for its accounts."""

    operator: str
    reason: str
    source: str
    """The book file it came from."""


@dataclass(frozen=True)
class BookLoad:
    """What loading a book did, account by account (ids in the book's order)."""

    new: list[str]
    """Accounts the ledger did not hold: they take the file's state."""
    kept: list[str]
    """Accounts whose live state was kept; only their limits, mandate, symbol map, paper
    behaviour and status (see :func:`save_book`) came from the file."""
    replaced: list[str]
    """Accounts whose live state the file replaced (a :class:`StateReplacement`)."""
    still_paused: list[str]
    """Accounts an operator paused that stay paused whatever status the file gives."""


def save_book(
    session: Session,
    book: Book,
    now: datetime,
    *,
    replace_state: StateReplacement | None = None,
) -> BookLoad:
    """Write ``book``: every symbol spec, account and daily return, in the caller's one
    transaction (all or nothing).

    An account new to the ledger is written with the file's state. An account the ledger
    already holds keeps its live state (its ``account_state`` row: balance, equity, peak
    equity, free margin, open positions, today's realized loss and committed risk, ``as_of``),
    which reservations, fills and settlements have moved since; the file changes its limits,
    mandate, symbol map, broker, currency, name, reserve and reroute flags and paper behaviour.

    Its status comes from the file too, except that an operator's pause (``pause``, which
    records a reason) stays until ``resume``: a file saying ``ACTIVE`` or ``PAUSED`` keeps it,
    a file saying ``DISABLED`` disables the account.

    With ``replace_state`` the existing accounts take the file's state as well: today's
    committed risk starts again from 0, and the decision (who, why, which accounts, which
    file) is written to ``operator_actions`` in the same transaction. Refused with
    :class:`OpenReservations`, writing nothing, while a leg of such an account still holds a
    reservation (settling it later would give back risk the new state never counted).
    """
    if replace_state is not None:
        problems = [
            (field, "must not be empty")
            for field, value in (
                ("operator", replace_state.operator),
                ("reason", replace_state.reason),
            )
            if not value.strip()
        ]
        if problems:
            raise ValidationFailed("replace state", problems)
    ids = [record.id for record in book.accounts]
    accounts = {row.account_id: row for row in _rows_of(session, AccountRow, ids)}
    states = {
        row.account_id: row
        for row in _rows_of(session, AccountStateRow, ids, lock=replace_state is not None)
    }
    if replace_state is not None:
        _refuse_open_reservations(session, set(states))
    for spec in book.symbols:
        session.merge(SymbolSpecRow(**spec.model_dump()))
    still_paused: list[str] = []
    for record in book.accounts:
        account = accounts.get(record.id)
        if account is None:
            account = AccountRow(account_id=record.id)
            session.add(account)
        if _operator_paused(account) and record.status is not AccountStatus.DISABLED:
            still_paused.append(record.id)
        else:
            account.status = record.status.value
            account.status_reason = None
        _write_account(account, record, now)
    session.flush()  # the accounts first: their state rows and returns refer to them
    new: list[str] = []
    kept: list[str] = []
    replaced: list[str] = []
    for record in book.accounts:
        state = states.get(record.id)
        if state is None:
            new.append(record.id)
            session.add(AccountStateRow(account_id=record.id, **_file_state(record, now)))
        elif replace_state is not None:
            replaced.append(record.id)
            for key, value in _file_state(record, now).items():
                setattr(state, key, value)
        else:
            kept.append(record.id)
    for ret in book.returns:
        session.merge(DailyReturnRow(account_id=ret.account_id, day=ret.day, ret=ret.ret))
    if replace_state is not None:
        record_operator_action(
            session,
            action=REPLACE_STATE,
            target=None,
            operator=replace_state.operator,
            reason=replace_state.reason,
            reached=[],
            outcome={"file": replace_state.source, "accounts": replaced, "new_accounts": new},
            now=now,
        )
    session.flush()
    return BookLoad(new=new, kept=kept, replaced=replaced, still_paused=still_paused)


_IDS_PER_QUERY = 1000
"""Ids bound in one ``IN (…)`` (SQLite caps the parameters of a statement)."""


def _rows_of(
    session: Session,
    row: type[AccountRow] | type[AccountStateRow],
    account_ids: list[str],
    *,
    lock: bool = False,
) -> list[Any]:
    """The rows of these accounts (``lock``: ``FOR UPDATE`` on PostgreSQL)."""
    found: list[Any] = []
    for start in range(0, len(account_ids), _IDS_PER_QUERY):
        query = select(row).where(row.account_id.in_(account_ids[start : start + _IDS_PER_QUERY]))
        found += session.scalars(query.with_for_update() if lock else query)
    return found


def _operator_paused(row: AccountRow) -> bool:
    """Paused by an operator (who leaves a reason), not by a book file (which leaves none)."""
    return row.status == AccountStatus.PAUSED.value and row.status_reason is not None


def _write_account(row: AccountRow, record: AccountRecord, now: datetime) -> None:
    """Everything of an account a book file decides, but its status."""
    limits = record.limits
    mandate = record.mandate
    row.name = record.name or record.id
    row.broker = record.broker
    row.currency = record.currency
    row.risk_per_trade = limits.risk_per_trade
    row.daily_loss_budget = limits.daily_loss_budget
    row.max_drawdown = limits.max_drawdown
    row.max_open_positions = limits.max_open_positions
    row.max_lots = limits.max_lots
    row.on_breach = limits.on_breach.value
    row.allowed_symbols = mandate.allowed_symbols
    row.trading_hours = (
        mandate.trading_hours.model_dump(mode="json") if mandate.trading_hours else None
    )
    row.exclude_from_multi_account = mandate.exclude_from_multi_account
    row.symbol_map = dict(record.symbol_map)
    row.reserve_only = record.reserve_only
    row.reroute_on_pause = record.reroute_on_pause
    row.paper = record.paper.model_dump(mode="json")
    row.updated_at = now


def _file_state(record: AccountRecord, now: datetime) -> dict[str, Any]:
    """An account's state as its book file gives it (no risk committed yet today)."""
    state = record.state
    return {
        "balance": state.balance,
        "equity": state.equity,
        "peak_equity": state.peak_equity,
        "free_margin": state.free_margin,
        "open_positions": state.open_positions,
        "realized_loss_today": state.realized_loss_today,
        "risk_committed_today": Decimal(0),
        "as_of": state.as_of or now,
        "source": "book",
    }


def _refuse_open_reservations(session: Session, account_ids: set[str]) -> None:
    """:class:`OpenReservations` if a leg of these accounts holds a reservation."""
    open_legs = session.execute(
        select(RiskReservationRow.account_id, RiskReservationRow.signal_id)
        .where(RiskReservationRow.status == RESERVED)
        .order_by(RiskReservationRow.account_id, RiskReservationRow.signal_id)
    ).all()
    held = [(account, signal) for account, signal in open_legs if account in account_ids]
    if held:
        raise OpenReservations(held)


def export_book(session: Session) -> Book:
    """The stored book in its file format (returns omitted)."""
    specs = [spec_of(row) for row in session.scalars(select(SymbolSpecRow))]
    accounts: list[AccountRecord] = []
    rows = session.execute(
        select(AccountRow, AccountStateRow)
        .join(AccountStateRow, AccountStateRow.account_id == AccountRow.account_id)
        .order_by(AccountRow.account_id)
    )
    for account, state in rows.tuples():
        accounts.append(
            AccountRecord(
                id=account.account_id,
                name=account.name,
                broker=account.broker,
                currency=account.currency,
                status=AccountStatus(account.status),
                limits=limits_of(account),
                mandate=mandate_of(account),
                symbol_map=account.symbol_map,
                state=AccountState(
                    balance=state.balance,
                    equity=state.equity,
                    peak_equity=state.peak_equity,
                    free_margin=state.free_margin,
                    open_positions=state.open_positions,
                    realized_loss_today=state.realized_loss_today,
                    as_of=state.as_of,
                ),
                reserve_only=account.reserve_only,
                reroute_on_pause=account.reroute_on_pause,
                paper=PaperBehaviour.model_validate(account.paper),
            )
        )
    return Book(symbols=specs, accounts=accounts, returns=[])


def account_rows(session: Session) -> list[tuple[AccountRow, AccountStateRow]]:
    rows = session.execute(
        select(AccountRow, AccountStateRow)
        .join(AccountStateRow, AccountStateRow.account_id == AccountRow.account_id)
        .order_by(AccountRow.account_id)
    )
    return list(rows.tuples())


def symbol_known(session: Session, symbol: str) -> bool:
    """Whether any broker lists ``symbol`` or any account maps it to one of its contracts."""
    if session.scalar(select(func.count()).where(SymbolSpecRow.symbol == symbol)):
        return True
    return any(symbol in (row.symbol_map or {}) for row in session.scalars(select(AccountRow)))


def spec_of(row: SymbolSpecRow) -> SymbolSpec:
    return SymbolSpec.model_validate(row)


def limits_of(row: AccountRow) -> AccountLimits:
    return AccountLimits.model_validate(row)


def mandate_of(row: AccountRow) -> Mandate:
    return Mandate.model_validate(
        {
            "allowed_symbols": row.allowed_symbols,
            "trading_hours": row.trading_hours,
            "exclude_from_multi_account": row.exclude_from_multi_account,
        }
    )

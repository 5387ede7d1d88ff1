"""Reads and writes of the orchestrator's own records. Every function takes the session of a
unit of work (``Database.transaction()``) and never commits on its own."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Connection,
    CursorResult,
    Table,
    Update,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from orchestrator.adapters.book_file import AccountRecord, AccountState, Book, PaperBehaviour
from orchestrator.adapters.db.schema import (
    AccountRow,
    AccountStateRow,
    Base,
    DailyReturnRow,
    FillRow,
    OperatorActionRow,
    OrderRow,
    PlanningInputRow,
    RiskReservationRow,
    SignalRow,
    SymbolSpecRow,
    SystemControlRow,
)
from orchestrator.domain.book import (
    AccountLimits,
    AccountSnapshot,
    AccountStatus,
    BookSnapshot,
    Mandate,
    SymbolSpec,
    spec_key,
)
from orchestrator.domain.contracts.operators import ActionReceipt
from orchestrator.domain.contracts.payloads import (
    PlaceOrderRequest,
    ReserveRiskRequest,
    ReserveRiskResult,
    SnapshotRequest,
)
from orchestrator.domain.errors import (
    DuplicateSignal,
    InvalidOrderTransition,
    OpenReservations,
    ValidationFailed,
)
from orchestrator.domain.orders import OrderOutcome, OrderStatus, advance
from orchestrator.domain.signal import Signal
from orchestrator.domain.values import DenialReason

RESERVED = "RESERVED"
SETTLED = "SETTLED"


# --------------------------------------------------------------------------------------------
# Account book


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
    specs = [_spec(row) for row in session.scalars(select(SymbolSpecRow))]
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
                limits=_limits(account),
                mandate=_mandate(account),
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


def _spec(row: SymbolSpecRow) -> SymbolSpec:
    return SymbolSpec.model_validate(row)


def _limits(row: AccountRow) -> AccountLimits:
    return AccountLimits.model_validate(row)


def _mandate(row: AccountRow) -> Mandate:
    return Mandate.model_validate(
        {
            "allowed_symbols": row.allowed_symbols,
            "trading_hours": row.trading_hours,
            "exclude_from_multi_account": row.exclude_from_multi_account,
        }
    )


# --------------------------------------------------------------------------------------------
# Snapshot and returns


def load_snapshot(session: Session, request: SnapshotRequest, now: datetime) -> BookSnapshot:
    query = (
        select(AccountRow, AccountStateRow)
        .join(AccountStateRow, AccountStateRow.account_id == AccountRow.account_id)
        .order_by(AccountRow.account_id)
    )
    if request.account_ids is not None:
        query = query.where(AccountRow.account_id.in_(request.account_ids))
    accounts: list[AccountSnapshot] = []
    wanted: set[tuple[str, str]] = set()
    for account, state in session.execute(query).tuples():
        broker_symbol = (account.symbol_map or {}).get(request.symbol, request.symbol)
        if broker_symbol is not None:
            wanted.add((account.broker, broker_symbol))
        accounts.append(
            AccountSnapshot(
                account_id=account.account_id,
                broker=account.broker,
                currency=account.currency,
                status=AccountStatus(account.status),
                limits=_limits(account),
                mandate=_mandate(account),
                broker_symbol=broker_symbol,
                balance=state.balance,
                equity=state.equity,
                peak_equity=state.peak_equity,
                free_margin=state.free_margin,
                open_positions=state.open_positions,
                realized_loss_today=state.realized_loss_today,
                risk_committed_today=state.risk_committed_today,
                as_of=state.as_of,
                reserve_only=account.reserve_only,
                reroute_on_pause=account.reroute_on_pause,
            )
        )
    specs: dict[str, SymbolSpec] = {}
    if wanted:
        symbols = {symbol for _, symbol in wanted}
        for row in session.scalars(select(SymbolSpecRow).where(SymbolSpecRow.symbol.in_(symbols))):
            if (row.broker, row.symbol) in wanted:
                specs[spec_key(row.broker, row.symbol)] = _spec(row)
    return BookSnapshot(
        symbol=request.symbol,
        taken_at=now,
        accounts=accounts,
        specs=specs,
        halted=is_halted(session),
    )


def load_returns(
    session: Session, account_ids: list[str], lookback_days: int
) -> tuple[list[date], dict[str, dict[date, Decimal]]]:
    """The most recent ``lookback_days`` days with any return, and each account's returns.

    Reads plain values, never ORM entities (5,000 accounts × 250 days is 1.25M rows); on
    PostgreSQL one row per account, its days and returns aggregated into two arrays.
    """
    days = list(
        session.scalars(
            select(DailyReturnRow.day)
            .where(DailyReturnRow.account_id.in_(account_ids))
            .distinct()
            .order_by(DailyReturnRow.day.desc())
            .limit(lookback_days)
        )
    )
    days.sort()
    returns: dict[str, dict[date, Decimal]] = defaultdict(dict)
    if not days:
        return days, returns
    wanted = (DailyReturnRow.account_id.in_(account_ids), DailyReturnRow.day >= days[0])
    if session.get_bind().dialect.name == "postgresql":
        per_account = session.execute(
            select(
                DailyReturnRow.account_id,
                func.array_agg(DailyReturnRow.day),
                func.array_agg(DailyReturnRow.ret),  # each element still goes through Money
            )
            .where(*wanted)
            .group_by(DailyReturnRow.account_id)
        )
        for account_id, account_days, values in per_account:
            returns[account_id] = dict(zip(account_days, values, strict=True))
    else:
        rows = session.execute(
            select(DailyReturnRow.account_id, DailyReturnRow.day, DailyReturnRow.ret).where(*wanted)
        )
        for account_id, day, value in rows:
            returns[account_id][day] = value
    return days, returns


# --------------------------------------------------------------------------------------------
# Controls


def is_halted(session: Session) -> bool:
    row = session.get(SystemControlRow, 1)
    return bool(row and row.halted)


def halt_reason(session: Session) -> str | None:
    row = session.get(SystemControlRow, 1)
    return row.reason if row and row.halted else None


def set_halt(session: Session, *, halted: bool, operator: str, reason: str, now: datetime) -> None:
    row = session.get(SystemControlRow, 1, with_for_update=True)
    if row is None:
        row = SystemControlRow(id=1, halted=halted, updated_at=now)
        session.add(row)
    row.halted = halted
    row.reason = reason
    row.operator = operator
    row.updated_at = now
    session.flush()


def set_account_status(
    session: Session, account_id: str, status: AccountStatus, reason: str | None, now: datetime
) -> None:
    """Pause or resume an account; :class:`LookupError` if it is not in the book."""
    row = session.get(AccountRow, account_id, with_for_update=True)
    if row is None:
        raise LookupError(account_id)
    row.status = status.value
    row.status_reason = reason
    row.updated_at = now


def record_operator_action(
    session: Session,
    *,
    action: str,
    target: str | None,
    operator: str,
    reason: str,
    reached: list[str],
    outcome: dict[str, object],
    now: datetime,
) -> None:
    session.add(
        OperatorActionRow(
            action=action,
            target=target,
            operator=operator,
            reason=reason,
            at=now,
            reached=reached,
            outcome=outcome,
        )
    )


def record_action_receipt(
    session: Session, receipt: ActionReceipt, identity: str | None, now: datetime
) -> bool:
    """Record one workflow's receipt of an operator action; a receipt already recorded (the
    activity retried) is left as it is. Whether this call wrote it."""
    values = {
        "action": receipt.action,
        "target": receipt.target,
        "operator": receipt.operator,
        "reason": receipt.reason,
        "at": now,
        "reached": [receipt.workflow_id],
        "outcome": dict(receipt.outcome),
        "workflow_id": receipt.workflow_id,
        "via": receipt.via.value,
        "identity": identity,
        "receipt": f"{receipt.workflow_id}/{receipt.run_id}/{receipt.key}",
    }
    dialect = session.get_bind().dialect.name
    insert_for = postgresql_insert if dialect == "postgresql" else sqlite_insert
    written = session.execute(
        insert_for(OperatorActionRow)
        .values(values)
        .on_conflict_do_nothing(index_elements=["receipt"])
    )
    return bool(getattr(written, "rowcount", 0))


def order_gate(
    session: Session, signal_id: str, account_id: str
) -> tuple[DenialReason, str] | None:
    """The last check before a new order leaves for the broker: the leg's reservation is
    still open, the kill switch is off, the account is not paused. ``None`` means it may go.

    The open reservation closes a race: once ``cancel_order`` has settled a leg, an order
    activity whose thread had not yet reached the broker can no longer send anything."""
    reservation = session.scalar(
        select(RiskReservationRow)
        .where(
            RiskReservationRow.signal_id == signal_id,
            RiskReservationRow.account_id == account_id,
        )
        .with_for_update()
    )
    if reservation is None or reservation.status != RESERVED:
        return DenialReason.LEG_CLOSED, "the leg has no open risk reservation"
    if is_halted(session):
        return DenialReason.HALTED, f"trading halted: {halt_reason(session)}"
    account = session.get(AccountRow, account_id)
    if account is None:
        return DenialReason.ACCOUNT_DISABLED, "account no longer in the book"
    if account.status == AccountStatus.PAUSED.value:
        return DenialReason.PAUSED, f"account paused: {account.status_reason or 'no reason'}"
    if account.status != AccountStatus.ACTIVE.value:
        return DenialReason.ACCOUNT_DISABLED, f"account is {account.status}"
    return None


# --------------------------------------------------------------------------------------------
# Signals


def record_signal(session: Session, signal: Signal, workflow_id: str, now: datetime) -> None:
    """Insert the signal; :class:`DuplicateSignal` if its id was ever submitted before."""
    session.add(
        SignalRow(
            signal_id=signal.signal_id,
            symbol=signal.symbol,
            side=signal.side.value,
            payload=signal.model_dump(mode="json"),
            workflow_id=workflow_id,
            submitted_at=now,
        )
    )
    try:
        session.flush()
    except IntegrityError as exc:
        raise DuplicateSignal(signal.signal_id) from exc


# --------------------------------------------------------------------------------------------
# Risk reservation


ALREADY_RESERVED = "already reserved"

# The per-leg path (reserve, write the order, book the broker's report, settle) runs once or
# more for every account of every signal, so it is written against the tables themselves, in as
# few statements as the rules allow: one read of everything a decision needs, locking what it
# will change, then the writes. The rest of this module uses the ORM.


def _table(row: type[Base]) -> Table:
    table = row.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{row.__name__} is not mapped to a table")
    return table


_ACCOUNTS = _table(AccountRow)
_STATE = _table(AccountStateRow)
_CONTROLS = _table(SystemControlRow)
_RESERVATIONS = _table(RiskReservationRow)
_ORDERS = _table(OrderRow)
_FILLS = _table(FillRow)
HALT_ROW = 1
"""The id of the kill switch's one row."""

# Built once: statements are compiled and cached by SQLAlchemy, and building them anew for
# every leg cost more than running them.
_LEG_READ = (
    select(
        _ACCOUNTS.c.status,
        _ACCOUNTS.c.max_open_positions,
        _ACCOUNTS.c.daily_loss_budget,
        _ACCOUNTS.c.max_drawdown,
        _STATE.c.open_positions,
        _STATE.c.realized_loss_today,
        _STATE.c.risk_committed_today,
        _STATE.c.free_margin,
        _STATE.c.peak_equity,
        _STATE.c.equity,
        _STATE.c.version,
        _CONTROLS.c.halted,
        _CONTROLS.c.reason,
        _RESERVATIONS.c.id.label("reservation_id"),
        _RESERVATIONS.c.origin_account_id,
    )
    .select_from(
        _ACCOUNTS.join(_STATE, _STATE.c.account_id == _ACCOUNTS.c.account_id)
        .outerjoin(_CONTROLS, _CONTROLS.c.id == HALT_ROW)
        .outerjoin(
            _RESERVATIONS,
            (_RESERVATIONS.c.account_id == _ACCOUNTS.c.account_id)
            & (_RESERVATIONS.c.signal_id == bindparam("signal_id")),
        )
    )
    .where(_ACCOUNTS.c.account_id == bindparam("account_id"))
    .with_for_update(of=_STATE)
)
"""Everything a reservation decides on, the account's state row locked."""
_RESERVATION_ORIGIN = select(_RESERVATIONS.c.origin_account_id).where(
    _RESERVATIONS.c.signal_id == bindparam("signal_id"),
    _RESERVATIONS.c.account_id == bindparam("account_id"),
)
_INSERT_RESERVATION = insert(_RESERVATIONS)
_UPDATE_STATE = (
    update(_STATE)
    .where(_STATE.c.account_id == bindparam("key"), _STATE.c.version == bindparam("read_version"))
    .values(
        version=bindparam("version"),
        open_positions=bindparam("open_positions"),
        risk_committed_today=bindparam("risk_committed_today"),
        free_margin=bindparam("free_margin"),
    )
)
_SETTLEMENT_INPUT = (
    _RESERVATIONS.c.risk_amount,
    _RESERVATIONS.c.margin,
    _STATE.c.open_positions,
    _STATE.c.risk_committed_today,
    _STATE.c.free_margin,
    _STATE.c.version,
)
"""What settling a leg reads of its reservation and its account's state (see _settled_state)."""
_SETTLE_READ = (
    select(
        _RESERVATIONS.c.id,
        _RESERVATIONS.c.status,
        _RESERVATIONS.c.quantity,
        *_SETTLEMENT_INPUT,
        _FILLS.c.quantity.label("filled"),
    )
    .select_from(
        _RESERVATIONS.join(_STATE, _STATE.c.account_id == _RESERVATIONS.c.account_id).outerjoin(
            _ORDERS.join(_FILLS, _FILLS.c.client_order_id == _ORDERS.c.client_order_id),
            (_ORDERS.c.signal_id == _RESERVATIONS.c.signal_id)
            & (_ORDERS.c.account_id == _RESERVATIONS.c.account_id),
        )
    )
    .where(
        _RESERVATIONS.c.signal_id == bindparam("signal_id"),
        _RESERVATIONS.c.account_id == bindparam("account_id"),
    )
    .with_for_update(of=[_RESERVATIONS, _STATE])
)
"""A leg's reservation and its account's state, both locked, a row per fill of the leg's
orders (every order of the account in the signal: first and completions)."""
_SETTLE_RESERVATION = (
    update(_RESERVATIONS)
    .where(_RESERVATIONS.c.id == bindparam("key"))
    .values(status=bindparam("status"), settled_at=bindparam("settled_at"))
)
_ORDER_EXISTS = select(_ORDERS.c.client_order_id).where(
    _ORDERS.c.client_order_id == bindparam("client_order_id")
)
_INSERT_ORDER = insert(_ORDERS)
_ORDER_AND_FILLS = (
    _ORDERS.c.status,
    _ORDERS.c.quantity,
    _ORDERS.c.broker_order_id,
    _ORDERS.c.reject_text,
    _FILLS.c.execution_id,
    _FILLS.c.quantity.label("fill_quantity"),
    _FILLS.c.price,
)
"""What booking a report reads of an order: a row per fill."""
_ORDER_READ = (
    select(*_ORDER_AND_FILLS)
    .select_from(_ORDERS.outerjoin(_FILLS, _FILLS.c.client_order_id == _ORDERS.c.client_order_id))
    .where(_ORDERS.c.client_order_id == bindparam("client_order_id"))
    .with_for_update(of=_ORDERS)
)
"""An order, locked, with its fills."""
_INSERT_FILL = insert(_FILLS)


_ORDER_STATE = (
    "status",
    "filled_quantity",
    "average_price",
    "broker_order_id",
    "reject_text",
    "updated_at",
)
"""The columns a broker report changes."""


def _order_update(prefix: str = "") -> Update:
    """An order's new state, by client order id (``key``); bound names carry ``prefix``."""
    return (
        update(_ORDERS)
        .where(_ORDERS.c.client_order_id == bindparam(f"{prefix}key"))
        .values({name: bindparam(f"{prefix}{name}") for name in _ORDER_STATE})
    )


_UPDATE_ORDER = _order_update()

# On PostgreSQL the writes of one step go as one statement (the others as data-modifying CTEs,
# which PostgreSQL runs exactly once, to completion, whether read or not): one round trip
# instead of two or three. The main statement is the versioned state (or order) update, so its
# row count still says whether the locked row was written.
_RESERVATION_WRITTEN = insert(_RESERVATIONS).values(
    {c.name: bindparam(f"r_{c.name}") for c in _RESERVATIONS.c if c.name != "id"}
)
_ORDER_WRITTEN = insert(_ORDERS).values({c.name: bindparam(f"o_{c.name}") for c in _ORDERS.c})
_PG_RESERVE = _UPDATE_STATE.add_cte(_RESERVATION_WRITTEN.cte("reservation_written"))
"""Reserve: the account's state, then the reservation."""
_PG_RESERVE_AND_RECORD = _PG_RESERVE.add_cte(_ORDER_WRITTEN.cte("order_written"))
"""Reserve and write the order to the ledger."""
_PG_BOOK_ONE_FILL = _UPDATE_ORDER.add_cte(
    insert(_FILLS).values({c.name: bindparam(f"f_{c.name}") for c in _FILLS.c}).cte("fill_written")
)
"""An order's new state and its one new fill."""
_PG_SETTLE = _UPDATE_STATE.add_cte(
    update(_RESERVATIONS)
    .where(_RESERVATIONS.c.id == bindparam("r_key"))
    .values(status=bindparam("r_status"), settled_at=bindparam("r_settled_at"))
    .cte("reservation_settled")
)
"""The account's state given back, and the reservation settled."""


_O2 = _ORDERS.alias("leg_orders")
_F2 = _FILLS.alias("leg_fills")
_PG_BOOK_READ = (
    select(
        *_ORDER_AND_FILLS,
        _RESERVATIONS.c.id.label("r_id"),
        _RESERVATIONS.c.status.label("r_status"),
        _RESERVATIONS.c.quantity.label("r_quantity"),
        *_SETTLEMENT_INPUT,
        select(func.coalesce(func.sum(_F2.c.quantity), 0))
        .select_from(_O2.join(_F2, _F2.c.client_order_id == _O2.c.client_order_id))
        .where(
            _O2.c.signal_id == _RESERVATIONS.c.signal_id,
            _O2.c.account_id == _RESERVATIONS.c.account_id,
            _O2.c.client_order_id != _ORDERS.c.client_order_id,
        )
        .scalar_subquery()
        .label("other_filled"),
    )
    .select_from(
        _ORDERS.join(
            _RESERVATIONS,
            (_RESERVATIONS.c.signal_id == bindparam("signal_id"))
            & (_RESERVATIONS.c.account_id == bindparam("account_id")),
        )
        .join(_STATE, _STATE.c.account_id == _RESERVATIONS.c.account_id)
        .outerjoin(_FILLS, _FILLS.c.client_order_id == _ORDERS.c.client_order_id)
    )
    .where(_ORDERS.c.client_order_id == bindparam("client_order_id"))
    .with_for_update(of=[_ORDERS, _RESERVATIONS, _STATE])
)
"""PostgreSQL: an order with its fills and its leg's reservation and account state, all three
locked, and what the leg's other orders filled (summed exactly: ``numeric``). A row per fill
of the order; none without a reservation."""
_ORDER_SET = _order_update("o_")
_PG_BOOK_AND_SETTLE = _PG_SETTLE.add_cte(_ORDER_SET.cte("order_written"))
"""An order's last state, and its leg settled."""
_PG_BOOK_ONE_FILL_AND_SETTLE = _PG_BOOK_AND_SETTLE.add_cte(
    insert(_FILLS).values({c.name: bindparam(f"f_{c.name}") for c in _FILLS.c}).cte("fill_written")
)
"""An order's last state and its one new fill, and its leg settled."""


def _on_postgres(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql"


def _prefixed(prefix: str, values: Mapping[str, object]) -> dict[str, object]:
    return {f"{prefix}{k}": v for k, v in values.items()}


def reserve_risk(
    session: Session,
    request: ReserveRiskRequest,
    now: datetime,
    *,
    order: PlaceOrderRequest | None = None,
) -> ReserveRiskResult:
    """Atomically re-check the account and the kill switch, then reserve the leg's risk.

    Idempotent per (signal, account): a retry after a crash finds its own reservation and
    succeeds again without reserving twice. The account's state row is locked (``SELECT … FOR
    UPDATE`` on PostgreSQL; SQLite's write lock is taken by ``BEGIN IMMEDIATE``) and versioned,
    so two signals racing for the last of an account's capacity cannot both win.

    One read (account, state, kill switch, any reservation of the leg), then the writes. With
    ``order``, a reservation taken now also writes that order to the ledger (write-ahead, as
    :func:`record_order_intent`), in the same round trip on PostgreSQL; an existing one
    writes nothing (``ALREADY_RESERVED``: the caller checks the gate and records the order).
    """
    connection = session.connection()
    row = connection.execute(
        _LEG_READ, {"signal_id": request.signal_id, "account_id": request.account_id}
    ).one_or_none()
    if row is None:
        # No account (or no state for it): a reservation of this leg would still answer for
        # itself (its account cannot have been deleted under it).
        existing = connection.execute(
            _RESERVATION_ORIGIN,
            {"signal_id": request.signal_id, "account_id": request.account_id},
        ).one_or_none()
        if existing is None:
            return _denied(DenialReason.ACCOUNT_DISABLED, "account no longer in the book")
        return _already_reserved(existing.origin_account_id, request)
    if row.reservation_id is not None:
        return _already_reserved(row.origin_account_id, request)
    if row.halted:
        return _denied(DenialReason.HALTED, f"trading halted: {row.reason}")
    if row.status == AccountStatus.PAUSED.value:
        return _denied(DenialReason.PAUSED, "account was paused before its order was placed")
    if row.status != AccountStatus.ACTIVE.value:
        return _denied(DenialReason.ACCOUNT_DISABLED, f"account is {row.status}")
    if row.open_positions >= row.max_open_positions:
        return _denied(
            DenialReason.MAX_POSITIONS,
            f"{row.open_positions} open positions, limit {row.max_open_positions}",
        )
    remaining = row.daily_loss_budget - row.realized_loss_today - row.risk_committed_today
    if request.risk_amount > remaining:
        return _denied(
            DenialReason.RISK_BUDGET_EXHAUSTED,
            f"leg risks {request.risk_amount}, {max(remaining, Decimal(0))} left of today's budget",
        )
    if request.margin > row.free_margin:
        return _denied(
            DenialReason.INSUFFICIENT_MARGIN,
            f"leg needs {request.margin} margin, {row.free_margin} free",
        )
    if row.peak_equity > 0 and (row.peak_equity - row.equity) / row.peak_equity >= (
        row.max_drawdown
    ):
        return _denied(DenialReason.DRAWDOWN_LIMIT, "drawdown limit reached since planning")

    state = _state_values(
        request.account_id,
        row.version,
        open_positions=row.open_positions + 1,
        risk_committed_today=row.risk_committed_today + request.risk_amount,
        free_margin=row.free_margin - request.margin,
    )
    reservation = {
        "signal_id": request.signal_id,
        "account_id": request.account_id,
        "origin_account_id": request.origin_account_id,
        "client_order_id": request.client_order_id,
        "quantity": request.quantity,
        "risk_amount": request.risk_amount,
        "margin": request.margin,
        "status": RESERVED,
        "created_at": now,
        "settled_at": None,
    }
    if _on_postgres(connection):
        params = state | _prefixed("r_", reservation)
        if order is None:
            _check_state_written(connection.execute(_PG_RESERVE, params), request.account_id)
        else:
            params |= _prefixed("o_", _order_values(order, now))
            written = connection.execute(_PG_RESERVE_AND_RECORD, params)
            _check_state_written(written, request.account_id)
        return ReserveRiskResult(reserved=True)
    _check_state_written(connection.execute(_UPDATE_STATE, state), request.account_id)
    connection.execute(_INSERT_RESERVATION, reservation)
    if order is not None:
        connection.execute(_INSERT_ORDER, _order_values(order, now))
    return ReserveRiskResult(reserved=True)


def _denied(reason: DenialReason, detail: str) -> ReserveRiskResult:
    return ReserveRiskResult(reserved=False, denial=reason, detail=detail)


def _already_reserved(
    origin_account_id: str | None, request: ReserveRiskRequest
) -> ReserveRiskResult:
    if origin_account_id != request.origin_account_id:
        return _denied(
            DenialReason.ACCOUNT_ALREADY_USED, "account already took part in this signal"
        )
    return ReserveRiskResult(reserved=True, detail=ALREADY_RESERVED)


def _state_values(
    account_id: str,
    version: int,
    *,
    open_positions: int,
    risk_committed_today: Decimal,
    free_margin: Decimal,
) -> dict[str, object]:
    """A locked account state row's new values, its version bumped (as the ORM's versioned
    writes do): see :func:`_check_state_written`."""
    return {
        "key": account_id,
        "read_version": version,
        "version": version + 1,
        "open_positions": open_positions,
        "risk_committed_today": risk_committed_today,
        "free_margin": free_margin,
    }


def _check_state_written(written: CursorResult[Any], account_id: str) -> None:
    """A row changed since it was read raises instead of losing that change."""
    if written.rowcount != 1:
        raise StaleDataError(f"account state of {account_id} changed under its lock")


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
    if _on_postgres(connection):
        written = connection.execute(_PG_SETTLE, state | _prefixed("r_", settled))
        _check_state_written(written, account_id)
        return
    _check_state_written(connection.execute(_UPDATE_STATE, state), account_id)
    connection.execute(_SETTLE_RESERVATION, settled)


def _settled_state(
    account_id: str, row: Any, reserved: Decimal, filled: Decimal
) -> dict[str, object]:
    """The account's state once a leg that reserved ``reserved`` (risk and margin of ``row``)
    has filled ``filled``: the filled share kept, the rest given back, the position released
    if nothing filled."""
    unfilled = max(reserved - filled, Decimal(0)) / reserved
    return _state_values(
        account_id,
        row.version,
        risk_committed_today=row.risk_committed_today - row.risk_amount * unfilled,
        free_margin=row.free_margin + row.margin * unfilled,
        open_positions=max(0, row.open_positions - 1) if filled <= 0 else row.open_positions,
    )


# --------------------------------------------------------------------------------------------
# Order ledger


def record_order_intent(session: Session, request: PlaceOrderRequest, now: datetime) -> None:
    """Write-ahead: the order exists in our ledger before the broker is asked. Idempotent.
    (A leg's first order is written by :func:`reserve_risk` with its reservation.)"""
    connection = session.connection()
    key = {"client_order_id": request.client_order_id}
    if connection.execute(_ORDER_EXISTS, key).first():
        return
    connection.execute(_INSERT_ORDER, _order_values(request, now))


def _order_values(request: PlaceOrderRequest, now: datetime) -> dict[str, object]:
    """The ledger row of an order not yet sent."""
    return {
        "client_order_id": request.client_order_id,
        "signal_id": request.signal_id,
        "account_id": request.account_id,
        "business_sequence": request.business_sequence,
        "broker": request.broker,
        "broker_symbol": request.broker_symbol,
        "side": request.side.value,
        "order_type": request.order_type.value,
        "quantity": request.quantity,
        "limit_price": request.limit_price,
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
    booked = _booked(
        client_order_id,
        rows,
        status=status,
        broker_order_id=broker_order_id,
        executions=executions,
        reject_text=reject_text,
        now=now,
    )
    _write_order(connection, booked)
    return booked.outcome


def _write_order(connection: Connection, booked: _Booked) -> None:
    """An order's new fills and new state."""
    if len(booked.added) == 1 and _on_postgres(connection):  # the usual: one new execution
        connection.execute(_PG_BOOK_ONE_FILL, booked.order_state | _prefixed("f_", booked.added[0]))
    else:
        if booked.added:
            connection.execute(_INSERT_FILL, booked.added)
        connection.execute(_UPDATE_ORDER, booked.order_state)


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
    if _on_postgres(connection):
        rows = connection.execute(
            _PG_BOOK_READ,
            {"client_order_id": client_order_id, "signal_id": signal_id, "account_id": account_id},
        ).all()
        if rows:
            booked = _booked(client_order_id, rows, **report)
            leg = rows[0]
            if booked.partial or leg.r_status == SETTLED:  # the order's state only
                _write_order(connection, booked)
                return booked.outcome
            params = (
                _settled_state(
                    account_id, leg, leg.r_quantity, leg.other_filled + booked.filled_quantity
                )
                | _prefixed("r_", {"key": leg.r_id, "status": SETTLED, "settled_at": now})
                | _prefixed("o_", booked.order_state)
            )
            statement = _PG_BOOK_AND_SETTLE
            if len(booked.added) == 1:
                params |= _prefixed("f_", booked.added[0])
                statement = _PG_BOOK_ONE_FILL_AND_SETTLE
            elif booked.added:
                connection.execute(_INSERT_FILL, booked.added)
            _check_state_written(connection.execute(statement, params), account_id)
            return booked.outcome
    outcome = apply_broker_report(session, client_order_id, **report)
    if not 0 < outcome.filled_quantity < outcome.quantity:
        settle_reservation(session, signal_id, account_id, now)
    return outcome


@dataclass(frozen=True)
class _Booked:
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


def _booked(
    client_order_id: str,
    rows: Sequence[Any],
    *,
    status: OrderStatus,
    broker_order_id: str | None,
    executions: list[tuple[str, Decimal, Decimal, datetime]],
    reject_text: str | None,
    now: datetime,
) -> _Booked:
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
    average_price = (
        (sum((q * p for q, p in fills.values()), Decimal(0)) / filled) if filled > 0 else None
    )
    kept_broker_id = broker_order_id or order.broker_order_id
    kept_reject_text = order.reject_text if reject_text is None else reject_text
    return _Booked(
        outcome=OrderOutcome(
            client_order_id=client_order_id,
            broker_order_id=kept_broker_id,
            status=new_status,
            quantity=order.quantity,
            filled_quantity=filled,
            average_price=average_price,
            reject_text=kept_reject_text,
        ),
        order_state={
            "key": client_order_id,
            "status": new_status,
            "filled_quantity": filled,
            "average_price": average_price,
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
    """1 for a leg's first order, 2 and up for the orders completing it."""
    broker: str
    symbol: str
    """As sent to the broker (after the account's symbol map)."""
    side: str
    order_type: str
    quantity: Decimal
    limit_price: Decimal | None
    filled: Decimal
    average_price: Decimal | None
    status: str
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
            broker=row.broker,
            symbol=row.broker_symbol,
            side=row.side,
            order_type=row.order_type,
            quantity=row.quantity,
            limit_price=row.limit_price,
            filled=row.filled_quantity,
            average_price=row.average_price,
            status=row.status,
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


# --------------------------------------------------------------------------------------------
# Planning inputs of large signals

PLANNING_INPUTS_KEPT = timedelta(days=2)
"""Stored pages are needed only while their signal plans (and its activities retry)."""


def planning_input_page(session: Session, run_id: str, kind: str, page: int) -> str | None:
    row = session.get(PlanningInputRow, (run_id, kind, page))
    return None if row is None else row.body


def planning_input_pages(session: Session, run_id: str, kind: str) -> list[str]:
    return list(
        session.scalars(
            select(PlanningInputRow.body)
            .where(PlanningInputRow.run_id == run_id, PlanningInputRow.kind == kind)
            .order_by(PlanningInputRow.page)
        )
    )


def store_planning_input(
    session: Session, run_id: str, kind: str, pages: list[str], now: datetime
) -> None:
    """Store every page of one reading; pages older than :data:`PLANNING_INPUTS_KEPT` go."""
    session.execute(
        delete(PlanningInputRow).where(PlanningInputRow.created_at < now - PLANNING_INPUTS_KEPT)
    )
    session.add_all(
        PlanningInputRow(
            run_id=run_id, kind=kind, page=n, pages=len(pages), body=body, created_at=now
        )
        for n, body in enumerate(pages)
    )

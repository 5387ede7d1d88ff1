"""Reads and writes of the orchestrator's own records. Every function takes the session of a
unit of work (``Database.transaction()``) and never commits on its own."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from orchestrator.book import AccountRecord, AccountState, Book, PaperBehaviour
from orchestrator.db.schema import (
    AccountRow,
    AccountStateRow,
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
from orchestrator.errors import DuplicateSignal, InvalidOrderTransition
from orchestrator.models import (
    AccountLimits,
    AccountSnapshot,
    AccountStatus,
    BookSnapshot,
    DenialReason,
    Mandate,
    OrderOutcome,
    PlaceOrderRequest,
    ReserveRiskRequest,
    ReserveRiskResult,
    Signal,
    SnapshotRequest,
    SymbolSpec,
    spec_key,
)
from orchestrator.orders import OrderStatus, advance

RESERVED = "RESERVED"
SETTLED = "SETTLED"


# --------------------------------------------------------------------------------------------
# Account book


def save_book(session: Session, book: Book, now: datetime) -> None:
    """Insert or replace every symbol spec, account, state and return of ``book``."""
    for spec in book.symbols:
        session.merge(SymbolSpecRow(**spec.model_dump()))
    for record in book.accounts:
        limits = record.limits
        mandate = record.mandate
        session.merge(
            AccountRow(
                account_id=record.id,
                name=record.name or record.id,
                broker=record.broker,
                currency=record.currency,
                status=record.status.value,
                risk_per_trade=limits.risk_per_trade,
                daily_loss_budget=limits.daily_loss_budget,
                max_drawdown=limits.max_drawdown,
                max_open_positions=limits.max_open_positions,
                max_lots=limits.max_lots,
                allowed_symbols=mandate.allowed_symbols,
                trading_hours=(
                    mandate.trading_hours.model_dump(mode="json") if mandate.trading_hours else None
                ),
                exclude_from_multi_account=mandate.exclude_from_multi_account,
                symbol_map=dict(record.symbol_map),
                reserve_only=record.reserve_only,
                reroute_on_pause=record.reroute_on_pause,
                paper=record.paper.model_dump(mode="json"),
                updated_at=now,
            )
        )
        session.flush()
        state = record.state
        existing = session.get(AccountStateRow, record.id)
        values = {
            "balance": state.balance,
            "equity": state.equity,
            "peak_equity": state.peak_equity,
            "free_margin": state.free_margin,
            "open_positions": state.open_positions,
            "realized_loss_today": state.realized_loss_today,
            "risk_committed_today": Decimal(0),
            "as_of": state.as_of or now,
        }
        if existing is None:
            session.add(AccountStateRow(account_id=record.id, **values))
        else:
            for key, value in values.items():
                setattr(existing, key, value)
    for ret in book.returns:
        session.merge(DailyReturnRow(account_id=ret.account_id, day=ret.day, ret=ret.ret))
    session.flush()


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


def reserve_risk(session: Session, request: ReserveRiskRequest, now: datetime) -> ReserveRiskResult:
    """Atomically re-check the account and the kill switch, then reserve the leg's risk.

    Idempotent per (signal, account): a retry after a crash finds its own reservation and
    succeeds again without reserving twice. The account's state row is locked (``SELECT … FOR
    UPDATE`` on PostgreSQL; SQLite's write lock is taken by ``BEGIN IMMEDIATE``) and versioned,
    so two signals racing for the last of an account's capacity cannot both win.
    """
    existing = session.scalar(
        select(RiskReservationRow).where(
            RiskReservationRow.signal_id == request.signal_id,
            RiskReservationRow.account_id == request.account_id,
        )
    )
    if existing is not None:
        if existing.origin_account_id != request.origin_account_id:
            return ReserveRiskResult(
                reserved=False,
                denial=DenialReason.ACCOUNT_ALREADY_USED,
                detail="account already took part in this signal",
            )
        return ReserveRiskResult(reserved=True, detail=ALREADY_RESERVED)

    def deny(reason: DenialReason, detail: str) -> ReserveRiskResult:
        return ReserveRiskResult(reserved=False, denial=reason, detail=detail)

    if is_halted(session):
        return deny(DenialReason.HALTED, f"trading halted: {halt_reason(session)}")
    account = session.get(AccountRow, request.account_id)
    state = session.get(AccountStateRow, request.account_id, with_for_update=True)
    if account is None or state is None:
        return deny(DenialReason.ACCOUNT_DISABLED, "account no longer in the book")
    if account.status == AccountStatus.PAUSED.value:
        return deny(DenialReason.PAUSED, "account was paused before its order was placed")
    if account.status != AccountStatus.ACTIVE.value:
        return deny(DenialReason.ACCOUNT_DISABLED, f"account is {account.status}")
    if state.open_positions >= account.max_open_positions:
        return deny(
            DenialReason.MAX_POSITIONS,
            f"{state.open_positions} open positions, limit {account.max_open_positions}",
        )
    remaining = account.daily_loss_budget - state.realized_loss_today - state.risk_committed_today
    if request.risk_amount > remaining:
        return deny(
            DenialReason.RISK_BUDGET_EXHAUSTED,
            f"leg risks {request.risk_amount}, {max(remaining, Decimal(0))} left of today's budget",
        )
    if request.margin > state.free_margin:
        return deny(
            DenialReason.INSUFFICIENT_MARGIN,
            f"leg needs {request.margin} margin, {state.free_margin} free",
        )
    if state.peak_equity > 0 and (state.peak_equity - state.equity) / state.peak_equity >= (
        account.max_drawdown
    ):
        return deny(DenialReason.DRAWDOWN_LIMIT, "drawdown limit reached since planning")

    state.open_positions += 1
    state.risk_committed_today += request.risk_amount
    state.free_margin -= request.margin
    session.add(
        RiskReservationRow(
            signal_id=request.signal_id,
            account_id=request.account_id,
            origin_account_id=request.origin_account_id,
            client_order_id=request.client_order_id,
            quantity=request.quantity,
            risk_amount=request.risk_amount,
            margin=request.margin,
            status=RESERVED,
            created_at=now,
        )
    )
    session.flush()
    return ReserveRiskResult(reserved=True)


def leg_filled(session: Session, signal_id: str, account_id: str) -> Decimal:
    """Everything filled for one account in one signal, across its orders (first and
    completions)."""
    # Summed here, not in SQL: SQLite would add the text-stored decimals as floats.
    quantities = session.scalars(
        select(FillRow.quantity)
        .join(OrderRow, OrderRow.client_order_id == FillRow.client_order_id)
        .where(OrderRow.signal_id == signal_id, OrderRow.account_id == account_id)
    )
    return sum(quantities, Decimal(0))


def settle_reservation(session: Session, signal_id: str, account_id: str, now: datetime) -> None:
    """Book the leg's outcome against its reservation: keep the filled share of risk and
    margin (all orders of the leg counted), give back the rest. Settling twice changes
    nothing."""
    reservation = session.scalar(
        select(RiskReservationRow)
        .where(
            RiskReservationRow.signal_id == signal_id,
            RiskReservationRow.account_id == account_id,
        )
        .with_for_update()
    )
    if reservation is None or reservation.status == SETTLED:
        return
    state = session.get(AccountStateRow, account_id, with_for_update=True)
    if state is None:
        return
    filled = leg_filled(session, signal_id, account_id)
    unfilled = max(reservation.quantity - filled, Decimal(0)) / reservation.quantity
    state.risk_committed_today -= reservation.risk_amount * unfilled
    state.free_margin += reservation.margin * unfilled
    if filled <= 0:
        state.open_positions = max(0, state.open_positions - 1)
    reservation.status = SETTLED
    reservation.settled_at = now


# --------------------------------------------------------------------------------------------
# Order ledger


def record_order_intent(session: Session, request: PlaceOrderRequest, now: datetime) -> OrderRow:
    """Write-ahead: the order exists in our ledger before the broker is asked. Idempotent."""
    row = session.get(OrderRow, request.client_order_id)
    if row is not None:
        return row
    row = OrderRow(
        client_order_id=request.client_order_id,
        signal_id=request.signal_id,
        account_id=request.account_id,
        business_sequence=request.business_sequence,
        broker=request.broker,
        broker_symbol=request.broker_symbol,
        side=request.side.value,
        order_type=request.order_type.value,
        quantity=request.quantity,
        limit_price=request.limit_price,
        status=OrderStatus.PENDING_SUBMIT.value,
        filled_quantity=Decimal(0),
        average_price=None,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return row


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
    keeps the status (its executions still count); an inexplicable transition raises."""
    row = session.get(OrderRow, client_order_id, with_for_update=True)
    if row is None:
        raise LookupError(f"order {client_order_id} is not in the ledger")
    row.status = advance(OrderStatus(row.status), status).value
    known = set(
        session.scalars(
            select(FillRow.execution_id).where(FillRow.client_order_id == row.client_order_id)
        )
    )
    for execution_id, quantity, price, at in executions:
        if execution_id in known:
            continue
        session.add(
            FillRow(
                execution_id=execution_id,
                client_order_id=client_order_id,
                quantity=quantity,
                price=price,
                filled_at=at,
            )
        )
        known.add(execution_id)
    session.flush()
    fills = list(session.scalars(select(FillRow).where(FillRow.client_order_id == client_order_id)))
    filled = sum((f.quantity for f in fills), Decimal(0))
    if filled > row.quantity:  # no late or repeated report explains this: a human must look
        raise InvalidOrderTransition(
            row.status, f"{status.value} with fills of {filled}, over the order's {row.quantity}"
        )
    row.filled_quantity = filled
    row.average_price = (
        (sum((f.quantity * f.price for f in fills), Decimal(0)) / filled) if filled > 0 else None
    )
    row.broker_order_id = broker_order_id or row.broker_order_id
    if reject_text is not None:
        row.reject_text = reject_text
    row.updated_at = now
    return OrderOutcome.model_validate(row)


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

"""Risk reservation: a leg's risk and margin taken from its account's capacity, under the lock
of the account's state row, after the same capacity check planning made."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ARRAY, CursorResult, String, bindparam, func, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from orchestrator.adapters.db.repository.ledger import INSERT_ORDER, order_values
from orchestrator.adapters.db.repository.tables import (
    ACCOUNTS,
    CONTROLS,
    HALT_ROW,
    ORDERS,
    RESERVATIONS,
    STATE,
    on_postgres,
    prefixed,
)
from orchestrator.domain.book import AccountStatus
from orchestrator.domain.contracts.payloads import (
    PlaceOrderRequest,
    ReserveRiskRequest,
    ReserveRiskResult,
)
from orchestrator.domain.planning import AccountCapacity, capacity_denial
from orchestrator.domain.values import DenialReason

RESERVED = "RESERVED"
SETTLED = "SETTLED"
ALREADY_RESERVED = "already reserved"

_LEG_COLUMNS = (
    ACCOUNTS.c.status,
    ACCOUNTS.c.currency,
    ACCOUNTS.c.max_open_positions,
    ACCOUNTS.c.daily_loss_budget,
    ACCOUNTS.c.max_drawdown,
    ACCOUNTS.c.reduce_only,
    STATE.c.open_positions,
    STATE.c.realized_loss_today,
    STATE.c.risk_committed_today,
    STATE.c.free_margin,
    STATE.c.peak_equity,
    STATE.c.equity,
    STATE.c.version,
    CONTROLS.c.halted,
    CONTROLS.c.reason,
    RESERVATIONS.c.id.label("reservation_id"),
    RESERVATIONS.c.origin_account_id,
)
_LEG_READ = (
    select(*_LEG_COLUMNS)
    .select_from(
        ACCOUNTS.join(STATE, STATE.c.account_id == ACCOUNTS.c.account_id)
        .outerjoin(CONTROLS, CONTROLS.c.id == HALT_ROW)
        .outerjoin(
            RESERVATIONS,
            (RESERVATIONS.c.account_id == ACCOUNTS.c.account_id)
            & (RESERVATIONS.c.signal_id == bindparam("signal_id")),
        )
    )
    .where(ACCOUNTS.c.account_id == bindparam("account_id"))
    .with_for_update(of=STATE)
)
"""Everything a reservation decides on, the account's state row locked."""
_WANTED = (
    func.unnest(
        bindparam("account_ids", type_=ARRAY(String)),
        bindparam("signal_ids", type_=ARRAY(String)),
    )
    .table_valued("account_id", "signal_id")
    .render_derived(name="wanted")
)
_SLICE_READ = (
    select(ACCOUNTS.c.account_id, *_LEG_COLUMNS)
    .select_from(
        _WANTED.join(ACCOUNTS, ACCOUNTS.c.account_id == _WANTED.c.account_id)
        .join(STATE, STATE.c.account_id == ACCOUNTS.c.account_id)
        .outerjoin(CONTROLS, CONTROLS.c.id == HALT_ROW)
        .outerjoin(
            RESERVATIONS,
            (RESERVATIONS.c.account_id == ACCOUNTS.c.account_id)
            & (RESERVATIONS.c.signal_id == _WANTED.c.signal_id),
        )
    )
    .order_by(ACCOUNTS.c.account_id.collate("C"))
    .with_for_update(of=STATE)
)
"""PostgreSQL: :data:`_LEG_READ` for a slice's legs (``account_ids`` and ``signal_ids``, pairwise),
a row per account in the book, the state rows locked in account order (as Python sorts ids)."""
_RESERVATION_ORIGIN = select(RESERVATIONS.c.origin_account_id).where(
    RESERVATIONS.c.signal_id == bindparam("signal_id"),
    RESERVATIONS.c.account_id == bindparam("account_id"),
)
_INSERT_RESERVATION = insert(RESERVATIONS)
UPDATE_STATE = (
    update(STATE)
    .where(STATE.c.account_id == bindparam("key"), STATE.c.version == bindparam("read_version"))
    .values(
        version=bindparam("version"),
        open_positions=bindparam("open_positions"),
        risk_committed_today=bindparam("risk_committed_today"),
        free_margin=bindparam("free_margin"),
    )
)
_RESERVATION_WRITTEN = insert(RESERVATIONS).values(
    {c.name: bindparam(f"r_{c.name}") for c in RESERVATIONS.c if c.name != "id"}
)
_ORDER_WRITTEN = insert(ORDERS).values({c.name: bindparam(f"o_{c.name}") for c in ORDERS.c})
_PG_RESERVE = UPDATE_STATE.add_cte(_RESERVATION_WRITTEN.cte("reservation_written"))
"""Reserve: the account's state, then the reservation."""
_PG_RESERVE_AND_RECORD = _PG_RESERVE.add_cte(_ORDER_WRITTEN.cte("order_written"))
"""Reserve and write the order to the ledger."""


def reserve_risk(
    session: Session,
    request: ReserveRiskRequest,
    now: datetime,
    *,
    order: PlaceOrderRequest | None = None,
) -> ReserveRiskResult:
    """Atomically re-check the account and the kill switch, then reserve the leg's risk.

    The check is planning's own (:func:`~orchestrator.domain.planning.capacity_denial`), on the
    locked row, with the leg's risk and margin: a leg planning would no longer allow is denied,
    with planning's reason.

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
    decision = _decide(request, row, now)
    if isinstance(decision, ReserveRiskResult):
        return decision
    state, reservation = decision
    if on_postgres(connection):
        params = state | prefixed("r_", reservation)
        if order is None:
            check_state_written(connection.execute(_PG_RESERVE, params), request.account_id)
        else:
            params |= prefixed("o_", order_values(order, now))
            written = connection.execute(_PG_RESERVE_AND_RECORD, params)
            check_state_written(written, request.account_id)
        return ReserveRiskResult(reserved=True)
    check_state_written(connection.execute(UPDATE_STATE, state), request.account_id)
    connection.execute(_INSERT_RESERVATION, reservation)
    if order is not None:
        connection.execute(INSERT_ORDER, order_values(order, now))
    return ReserveRiskResult(reserved=True)


def reserve_slice(
    session: Session, orders: Sequence[PlaceOrderRequest], now: datetime
) -> dict[str, ReserveRiskResult] | None:
    """:func:`reserve_risk` with its order for every order of a slice (each with a
    reservation), by client order id: the same decisions and the same writes, on PostgreSQL in
    a constant number of round trips — one read of every account, its state row locked (in
    account order), then the writes of all the reservations taken, in one pipelined
    ``executemany``. An account not in the book is asked about on its own.

    ``None``: the slice is not for batching (SQLite, or an account twice); the caller reserves
    order by order."""
    connection = session.connection()
    requests = [_reservation_of(order) for order in orders]
    accounts = [request.account_id for request in requests]
    if not on_postgres(connection) or len(set(accounts)) != len(accounts):
        return None
    read = connection.execute(
        _SLICE_READ,
        {"account_ids": accounts, "signal_ids": [request.signal_id for request in requests]},
    )
    rows = {row.account_id: row for row in read}
    results: dict[str, ReserveRiskResult] = {}
    writes: list[dict[str, object]] = []
    for order, request in zip(orders, requests, strict=True):
        row = rows.get(request.account_id)
        if row is None:  # not in the book: its own read, as alone
            results[order.client_order_id] = reserve_risk(session, request, now, order=order)
            continue
        decision = _decide(request, row, now)
        if isinstance(decision, ReserveRiskResult):
            results[order.client_order_id] = decision
            continue
        state, reservation = decision
        writes.append(
            state | prefixed("r_", reservation) | prefixed("o_", order_values(order, now))
        )
        results[order.client_order_id] = ReserveRiskResult(reserved=True)
    if writes:
        check_states_written(connection.execute(_PG_RESERVE_AND_RECORD, writes), len(writes))
    return results


def _reservation_of(order: PlaceOrderRequest) -> ReserveRiskRequest:
    if order.reservation is None:
        raise ValueError(f"order {order.client_order_id} reserves nothing")
    return order.reservation


def _decide(
    request: ReserveRiskRequest, row: Any, now: datetime
) -> ReserveRiskResult | tuple[dict[str, object], dict[str, object]]:
    """The decision on a leg's reservation from its account's locked row (a row of
    :data:`_LEG_READ`): a result that writes nothing (already reserved, or denied), or the
    account's new state and the reservation to write."""
    if row.reservation_id is not None:
        return _already_reserved(row.origin_account_id, request)
    denial = capacity_denial(
        _capacity(request.account_id, row),
        risk=request.risk_amount,
        margin=request.margin,
        halted=bool(row.halted),
        halt_reason=row.reason,
    )
    if denial is not None:
        return _denied(denial.reason, denial.detail)
    state = state_values(
        request.account_id,
        row.version,
        open_positions=row.open_positions + 1,
        risk_committed_today=row.risk_committed_today + request.risk_amount,
        free_margin=row.free_margin - request.margin,
    )
    reservation: dict[str, object] = {
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
    return state, reservation


def _capacity(account_id: str, row: Any) -> AccountCapacity:
    """The capacity the locked row of :data:`_LEG_READ` gives the account."""
    return AccountCapacity(
        account_id=account_id,
        status=AccountStatus(row.status),
        currency=row.currency,
        max_open_positions=row.max_open_positions,
        open_positions=row.open_positions,
        daily_loss_budget=row.daily_loss_budget,
        realized_loss_today=row.realized_loss_today,
        risk_committed_today=row.risk_committed_today,
        free_margin=row.free_margin,
        peak_equity=row.peak_equity,
        equity=row.equity,
        max_drawdown=row.max_drawdown,
        reduce_only=bool(row.reduce_only),
    )


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


def state_values(
    account_id: str,
    version: int,
    *,
    open_positions: int,
    risk_committed_today: Decimal,
    free_margin: Decimal,
) -> dict[str, object]:
    """A locked account state row's new values, its version bumped (as the ORM's versioned
    writes do): see :func:`check_state_written`."""
    return {
        "key": account_id,
        "read_version": version,
        "version": version + 1,
        "open_positions": open_positions,
        "risk_committed_today": risk_committed_today,
        "free_margin": free_margin,
    }


def check_state_written(written: CursorResult[Any], account_id: str) -> None:
    """A row changed since it was read raises instead of losing that change."""
    if written.rowcount != 1:
        raise StaleDataError(f"account state of {account_id} changed under its lock")


def check_states_written(written: CursorResult[Any], expected: int) -> None:
    """:func:`check_state_written` for an ``executemany`` of ``expected`` rows."""
    if written.rowcount != expected:
        raise StaleDataError(
            f"{expected - written.rowcount} of {expected} account states changed under their locks"
        )

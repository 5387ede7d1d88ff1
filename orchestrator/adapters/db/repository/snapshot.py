"""What planning reads: the book's snapshot for one signal, the accounts' daily returns, and
the stored pages of a large signal's planning inputs."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import ColumnElement, String, any_, bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, Session

from orchestrator.adapters.db.repository.book import spec_of
from orchestrator.adapters.db.repository.controls import is_halted
from orchestrator.adapters.db.schema import (
    AccountRow,
    AccountStateRow,
    DailyReturnRow,
    PlanningInputRow,
    SymbolSpecRow,
)
from orchestrator.domain.book import (
    AccountSnapshot,
    BookSnapshot,
    SymbolSpec,
    spec_key,
)
from orchestrator.domain.contracts.payloads import SnapshotRequest

_ACCOUNT_COLUMNS = (
    AccountRow.account_id,
    AccountRow.broker,
    AccountRow.currency,
    AccountRow.status,
    AccountRow.risk_per_trade,
    AccountRow.daily_loss_budget,
    AccountRow.max_drawdown,
    AccountRow.max_open_positions,
    AccountRow.max_lots,
    AccountRow.on_breach,
    AccountRow.allowed_symbols,
    AccountRow.trading_hours,
    AccountRow.exclude_from_multi_account,
    AccountRow.symbol_map,
    AccountRow.reserve_only,
    AccountRow.reroute_on_pause,
    AccountRow.reduce_only,
    AccountStateRow.balance,
    AccountStateRow.equity,
    AccountStateRow.peak_equity,
    AccountStateRow.free_margin,
    AccountStateRow.open_positions,
    AccountStateRow.realized_loss_today,
    AccountStateRow.risk_committed_today,
    AccountStateRow.as_of,
)
"""What a snapshot reads of an account and its state: plain column values, no ORM entities
(and not the columns planning never reads, such as the paper behaviour's JSON)."""

_ACCOUNTS: TypeAdapter[list[AccountSnapshot]] = TypeAdapter(list[AccountSnapshot])


def load_snapshot(session: Session, request: SnapshotRequest, now: datetime) -> BookSnapshot:
    """Every account of the request (all of the book's without ids), in account id order,
    with its state and the specs of the symbols it trades the signal's symbol as.

    One query of plain values, validated in one call: the accounts as dicts, each checked as
    :class:`AccountSnapshot` (and its limits and mandate) would check it field by field."""
    query = (
        select(*_ACCOUNT_COLUMNS)
        .join(AccountStateRow, AccountStateRow.account_id == AccountRow.account_id)
        .order_by(AccountRow.account_id)
    )
    if request.account_ids is not None:
        query = query.where(_among(session, AccountRow.account_id, request.account_ids))
    symbol = request.symbol
    raw: list[dict[str, Any]] = []
    wanted: set[tuple[str, str]] = set()
    for row in session.execute(query):
        broker_symbol = (row.symbol_map or {}).get(symbol, symbol)
        if broker_symbol is not None:
            wanted.add((row.broker, broker_symbol))
        raw.append(
            {
                "account_id": row.account_id,
                "broker": row.broker,
                "currency": row.currency,
                "status": row.status,
                "limits": {
                    "risk_per_trade": row.risk_per_trade,
                    "daily_loss_budget": row.daily_loss_budget,
                    "max_drawdown": row.max_drawdown,
                    "max_open_positions": row.max_open_positions,
                    "max_lots": row.max_lots,
                    "on_breach": row.on_breach,
                },
                "mandate": {
                    "allowed_symbols": row.allowed_symbols,
                    "trading_hours": row.trading_hours,
                    "exclude_from_multi_account": row.exclude_from_multi_account,
                },
                "broker_symbol": broker_symbol,
                "balance": row.balance,
                "equity": row.equity,
                "peak_equity": row.peak_equity,
                "free_margin": row.free_margin,
                "open_positions": row.open_positions,
                "realized_loss_today": row.realized_loss_today,
                "risk_committed_today": row.risk_committed_today,
                "as_of": row.as_of,
                "reserve_only": row.reserve_only,
                "reroute_on_pause": row.reroute_on_pause,
                "reduce_only": row.reduce_only,
            }
        )
    accounts = _ACCOUNTS.validate_python(raw)
    specs: dict[str, SymbolSpec] = {}
    if wanted:
        symbols = {symbol for _, symbol in wanted}
        for spec_row in session.scalars(
            select(SymbolSpecRow).where(SymbolSpecRow.symbol.in_(symbols))
        ):
            if (spec_row.broker, spec_row.symbol) in wanted:
                specs[spec_key(spec_row.broker, spec_row.symbol)] = spec_of(spec_row)
    return BookSnapshot(
        symbol=request.symbol,
        taken_at=now,
        accounts=accounts,
        specs=specs,
        halted=is_halted(session),
    )


def _among(
    session: Session, column: InstrumentedAttribute[str], ids: list[str]
) -> ColumnElement[bool]:
    """``column IN ids``; on PostgreSQL as ``= ANY`` of one array parameter, not one bound
    parameter per id (5,000 of them cost more to bind than the query takes to run)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(ids), type_=ARRAY(String)))
    return column.in_(ids)


def load_returns(
    session: Session, account_ids: list[str], lookback_days: int
) -> tuple[list[date], dict[str, dict[date, Decimal]]]:
    """The most recent ``lookback_days`` days with any return, and each account's returns.

    Reads plain values, never ORM entities (5,000 accounts × 250 days is 1.25M rows); on
    PostgreSQL one row per account, its days and returns aggregated into two arrays.
    """
    among = _among(session, DailyReturnRow.account_id, account_ids)
    days = list(
        session.scalars(
            select(DailyReturnRow.day)
            .where(among)
            .distinct()
            .order_by(DailyReturnRow.day.desc())
            .limit(lookback_days)
        )
    )
    days.sort()
    returns: dict[str, dict[date, Decimal]] = defaultdict(dict)
    if not days:
        return days, returns
    wanted = (among, DailyReturnRow.day >= days[0])
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

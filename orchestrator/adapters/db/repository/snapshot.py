"""What planning reads: the book's snapshot for one signal, the accounts' daily returns, and
the stored pages of a large signal's planning inputs."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from orchestrator.adapters.db.repository.book import limits_of, mandate_of, spec_of
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
    AccountStatus,
    BookSnapshot,
    SymbolSpec,
    spec_key,
)
from orchestrator.domain.contracts.payloads import SnapshotRequest


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
                limits=limits_of(account),
                mandate=mandate_of(account),
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
                reduce_only=account.reduce_only,
            )
        )
    specs: dict[str, SymbolSpec] = {}
    if wanted:
        symbols = {symbol for _, symbol in wanted}
        for row in session.scalars(select(SymbolSpecRow).where(SymbolSpecRow.symbol.in_(symbols))):
            if (row.broker, row.symbol) in wanted:
                specs[spec_key(row.broker, row.symbol)] = spec_of(row)
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

"""Account sync in the ledger (long: the page of accounts read at once, then each account's
state): the state a broker reading (or its derivation) writes, today's
realized loss reset at the trading-day boundary, the mismatches reconciliation stores, the
system reduce-only they and breached limits hold, and an operator's adoption of the broker's
view (``reconcile --accept``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.adapters.brokers.base import KnownOrder
from orchestrator.adapters.db.repository.controls import (
    record_operator_action,
    set_reduce_only,
)
from orchestrator.adapters.db.repository.order_reconcile import (
    ended_statuses,
    ledger_orders,
    store_order_mismatches,
    stored_order_mismatches,
)
from orchestrator.adapters.db.repository.reservation import RESERVED
from orchestrator.adapters.db.schema import (
    AccountRow,
    AccountStateRow,
    MismatchRow,
    OperatorActionRow,
    OrderMismatchRow,
    PositionRow,
    RiskReservationRow,
    SymbolSpecRow,
)
from orchestrator.domain.book import OnBreach
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.positions import Contract, PositionStatus, realized_pnl
from orchestrator.domain.sync import (
    SYSTEM,
    WRITTEN_AHEAD_MARGIN,
    Breach,
    BrokerWorking,
    LedgerOrder,
    Mismatch,
    MismatchKind,
    OrderMismatch,
    ReduceOnlyCause,
    StateSource,
    breaches,
    expected_at_broker,
    net_by_symbol,
    reconcile,
    reconcile_orders,
)
from orchestrator.domain.values import Side, plain

REDUCE_ONLY = "reduce_only"
ALLOW_ENTRIES = "allow_entries"
RECONCILE_ACCEPT = "reconcile_accept"
"""Operator-action names (the first two as ``services/operators.py`` records them)."""

PRECEDENCE = {
    ReduceOnlyCause.RECONCILIATION: 1,
    ReduceOnlyCause.DAILY_LOSS: 2,
    ReduceOnlyCause.DRAWDOWN: 3,
}
"""Which cause a system reduce-only records when several hold: the one lifted last."""


@dataclass(frozen=True)
class LedgerHolding:
    """One open ledger position, as the sync needs it to derive equity."""

    broker_symbol: str
    side: Side
    quantity: Decimal
    average_entry: Decimal
    contract: Contract | None
    """``None``: no symbol spec at the broker (it cannot be valued)."""
    margin_per_lot: Decimal


@dataclass(frozen=True)
class SyncAccount:
    account_id: str
    holdings: list[LedgerHolding]
    entries_in_flight: bool
    """A leg of the account holds an open risk reservation: its entry fills may be at the
    broker and not yet in the ledger, so its positions are not compared this time."""
    orders: dict[str, LedgerOrder] = field(default_factory=dict)
    """The ledger's working orders of the account (entries and protective), by client id."""

    def known_orders(self, written_before: datetime | None = None) -> list[KnownOrder]:
        """What a broker that can only be asked per order is asked about: the orders sent,
        and those written ahead at or before ``written_before`` (the broker should have them
        by now: see :func:`~orchestrator.domain.sync.written_ahead_grace`)."""
        return [
            KnownOrder(o.client_order_id, self.account_id, o.broker_symbol, o.side, o.quantity)
            for _, o in sorted(self.orders.items())
            if expected_at_broker(o, written_before)
        ]


@dataclass(frozen=True)
class Reading:
    """What the broker gave for one account (``None`` fields: it gave nothing)."""

    balance: Decimal | None
    equity: Decimal | None
    free_margin: Decimal | None
    at: datetime | None
    positions: dict[str, Decimal] | None
    """Signed net lots per broker symbol."""
    average_prices: dict[str, Decimal | None] = field(default_factory=dict)
    quotes: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    """Bid and ask per broker symbol of the ledger's holdings, where the broker gave one."""
    orders: list[BrokerWorking] | None = None
    """The account's working orders at the broker (``None``: no answer)."""


@dataclass
class Page:
    """What the sync of a page of accounts reads from the ledger before writing, at once."""

    rows: dict[str, AccountRow]
    states: dict[str, AccountStateRow]
    mismatches: dict[str, list[MismatchRow]]
    order_mismatches: dict[str, list[OrderMismatchRow]]
    acknowledged: dict[str, datetime]
    ended: dict[str, OrderStatus]
    """The ledger's status of orders the broker works that are not among its working ones."""


def load_page(
    session: Session, accounts: Sequence[SyncAccount], readings: Sequence[Reading]
) -> Page:
    """Lock the accounts and their states (in id order, as every writer does) and read what
    their sync compares with: a few statements for the whole page."""
    ids = sorted(a.account_id for a in accounts)
    rows = {
        r.account_id: r
        for r in session.scalars(
            select(AccountRow)
            .where(AccountRow.account_id.in_(ids))
            .order_by(AccountRow.account_id)
            .with_for_update()
        )
    }
    states = {
        r.account_id: r
        for r in session.scalars(
            select(AccountStateRow)
            .where(AccountStateRow.account_id.in_(ids))
            .order_by(AccountStateRow.account_id)
            .with_for_update()
        )
    }
    mismatches: dict[str, list[MismatchRow]] = {}
    for m in session.scalars(select(MismatchRow).where(MismatchRow.account_id.in_(ids))):
        mismatches.setdefault(m.account_id, []).append(m)
    foreign = [
        o.client_order_id
        for account, reading in zip(accounts, readings, strict=True)
        for o in reading.orders or []
        if o.client_order_id not in account.orders
    ]
    return Page(
        rows=rows,
        states=states,
        mismatches=mismatches,
        order_mismatches=stored_order_mismatches(session, ids),
        acknowledged=_acknowledged_all(session, ids),
        ended=ended_statuses(session, foreign),
    )


@dataclass
class SyncOutcome:
    source: StateSource | None
    """``None``: nothing was read or derived; the state was kept (marked derived)."""
    day_reset: bool = False
    mismatches: list[Mismatch] = field(default_factory=list)
    new_breach: Breach | None = None
    flatten: bool = False
    released: bool = False
    order_mismatches: list[OrderMismatch] = field(default_factory=list)


def sync_account_ids(session: Session, broker: str, accounts: list[str] | None) -> list[str]:
    """The broker's accounts (or the listed ones of it), by id."""
    query = select(AccountRow.account_id).where(AccountRow.broker == broker)
    if accounts is not None:
        query = query.where(AccountRow.account_id.in_(accounts))
    return list(session.scalars(query.order_by(AccountRow.account_id)))


def sync_accounts(session: Session, broker: str, accounts: list[str] | None) -> list[SyncAccount]:
    """The broker's accounts (or the listed ones of it) with their open ledger positions."""
    ids = sync_account_ids(session, broker, accounts)
    specs = {
        row.symbol: row
        for row in session.scalars(select(SymbolSpecRow).where(SymbolSpecRow.broker == broker))
    }
    holdings: dict[str, list[LedgerHolding]] = {}
    for row in session.scalars(
        select(PositionRow)
        .where(PositionRow.account_id.in_(ids), PositionRow.status != PositionStatus.CLOSED.value)
        .order_by(PositionRow.account_id, PositionRow.signal_id)
    ):
        spec = specs.get(row.broker_symbol)
        holdings.setdefault(row.account_id, []).append(
            LedgerHolding(
                broker_symbol=row.broker_symbol,
                side=Side(row.side),
                quantity=row.open_quantity,
                average_entry=row.average_entry,
                contract=None
                if spec is None
                else Contract(
                    tick_size=spec.tick_size,
                    tick_value=spec.tick_value,
                    lot_step=spec.lot_step,
                    min_lot=spec.min_lot,
                ),
                margin_per_lot=spec.margin_per_lot if spec is not None else Decimal(0),
            )
        )
    in_flight = set(
        session.scalars(
            select(RiskReservationRow.account_id).where(
                RiskReservationRow.account_id.in_(ids), RiskReservationRow.status == RESERVED
            )
        )
    )
    orders = ledger_orders(session, ids)
    return [
        SyncAccount(
            account_id=account_id,
            holdings=holdings.get(account_id, []),
            entries_in_flight=account_id in in_flight,
            orders=orders.get(account_id, {}),
        )
        for account_id in ids
    ]


def ledger_net(holdings: list[LedgerHolding]) -> dict[str, Decimal]:
    return net_by_symbol((h.broker_symbol, h.side, h.quantity) for h in holdings)


def derive(
    balance: Decimal, holdings: list[LedgerHolding], quotes: dict[str, tuple[Decimal, Decimal]]
) -> tuple[Decimal, Decimal] | None:
    """Equity and free margin from the last known balance and the ledger's open positions
    marked at the broker's quotes (a long at the bid, a short at the ask); ``None`` when a
    position has no quote or cannot be valued."""
    unrealized = margin = Decimal(0)
    for holding in holdings:
        quote = quotes.get(holding.broker_symbol)
        if quote is None or holding.contract is None:
            return None
        mark = quote[0] if holding.side is Side.BUY else quote[1]
        unrealized += realized_pnl(
            holding.side, holding.average_entry, mark, holding.quantity, holding.contract
        )
        margin += holding.margin_per_lot * holding.quantity
    equity = balance + unrealized
    return equity, equity - margin


def write_sync(
    session: Session,
    account: SyncAccount,
    reading: Reading,
    *,
    now: datetime,
    day_start: datetime,
    page: Page | None = None,
    written_ahead_grace: timedelta = WRITTEN_AHEAD_MARGIN,
) -> SyncOutcome:
    """One account's sync: its state, its day, its mismatches of positions and orders, and the
    system reduce-only they and its limits hold. ``page``: what :func:`load_page` read for the
    page of accounts this one is in (without: read for it alone). An order written ahead is
    expected at the broker ``written_ahead_grace`` after it was written."""
    if page is None:
        page = load_page(session, [account], [reading])
    row = page.rows.get(account.account_id)
    state = page.states.get(account.account_id)
    if row is None or state is None:
        return SyncOutcome(source=None)
    outcome = SyncOutcome(source=None)
    # The day today's realized loss counts in: the boundary the last sync used, or (never
    # synced) the day of the state's time.
    counted_from = state.trading_day_start or state.as_of
    if reading.equity is not None and reading.balance is not None:
        state.balance = reading.balance
        state.equity = reading.equity
        state.free_margin = (
            reading.free_margin if reading.free_margin is not None else reading.equity
        )
        state.as_of = reading.at or now
        outcome.source = StateSource.REPORTED
    else:
        derived = derive(state.balance, account.holdings, reading.quotes)
        if derived is not None:
            state.equity, state.free_margin = derived
            state.as_of = now
            outcome.source = StateSource.DERIVED
    # Kept or derived, the state is no broker's report: its age (as_of) says how old it is.
    state.source = (outcome.source or StateSource.DERIVED).value
    state.peak_equity = max(state.peak_equity, state.equity)
    if counted_from < day_start:
        outcome.day_reset = True
        # Committed risk is what working orders and open positions still risk: it is given
        # back as they settle and close, so the new day does not touch it.
        state.realized_loss_today = Decimal(0)
    state.trading_day_start = day_start

    stored = page.mismatches.get(account.account_id, [])
    if not account.entries_in_flight:
        outcome.mismatches, stored = _store_mismatches(
            session, row.broker, account, reading, now, stored_rows=stored
        )
    found_orders = reconcile_orders(
        account.account_id,
        reading.orders,
        account.orders,
        page.ended,
        written_before=now - written_ahead_grace,
    )
    outcome.order_mismatches = found_orders
    standing = store_order_mismatches(
        session,
        row.broker,
        account.account_id,
        found_orders,
        answered=reading.orders is not None,
        stored=page.order_mismatches.get(account.account_id, []),
        now=now,
    )
    acting = [m for m in stored if m.kind != MismatchKind.UNKNOWN and m.detected_at < now]
    acting_orders = [m for m in standing if m.kind != MismatchKind.UNKNOWN and m.detected_at < now]
    found = breaches(
        currency=row.currency,
        balance=state.balance,
        equity=state.equity,
        peak_equity=state.peak_equity,
        realized_loss_today=state.realized_loss_today,
        daily_loss_budget=row.daily_loss_budget,
        max_drawdown=row.max_drawdown,
    )
    _hold(
        session,
        row,
        found,
        acting,
        acting_orders,
        acknowledged=page.acknowledged.get(account.account_id),
        outcome=outcome,
        now=now,
        day_start=day_start,
    )
    return outcome


def _store_mismatches(
    session: Session,
    broker: str,
    account: SyncAccount,
    reading: Reading,
    now: datetime,
    *,
    stored_rows: list[MismatchRow],
) -> tuple[list[Mismatch], list[MismatchRow]]:
    """Replace the account's stored mismatches with what this sync found. A mismatch seen
    before keeps when it was first detected (it acts from its second sighting on, so a fill
    the keeper has not recorded yet is not taken for one). When the broker did not answer,
    the differences found before stand, and the ledger's other positions are flagged unknown."""
    found = reconcile(
        account.account_id,
        reading.positions,
        ledger_net(account.holdings),
        broker_prices=reading.average_prices,
    )
    stored = {m.broker_symbol: m for m in stored_rows}
    standing: dict[str, MismatchRow] = {}
    seen: set[str] = set()
    for mismatch in found:
        existing = stored.get(mismatch.broker_symbol)
        if (
            reading.positions is None
            and existing is not None
            and existing.kind != MismatchKind.UNKNOWN.value
        ):
            seen.add(mismatch.broker_symbol)
            standing[mismatch.broker_symbol] = existing
            continue
        if existing is None or existing.kind != mismatch.kind.value:
            if existing is not None:
                session.delete(existing)
                session.flush()
            row = MismatchRow(
                account_id=account.account_id,
                broker=broker,
                broker_symbol=mismatch.broker_symbol,
                kind=mismatch.kind.value,
                broker_quantity=mismatch.broker_quantity,
                broker_average_price=mismatch.broker_average_price,
                ledger_quantity=mismatch.ledger_quantity,
                detected_at=now,
                seen_at=now,
            )
            session.add(row)
            standing[mismatch.broker_symbol] = row
        else:
            existing.broker_quantity = mismatch.broker_quantity
            existing.broker_average_price = mismatch.broker_average_price
            existing.ledger_quantity = mismatch.ledger_quantity
            existing.seen_at = now
            standing[mismatch.broker_symbol] = existing
        seen.add(mismatch.broker_symbol)
    for symbol, existing in stored.items():
        if symbol in seen:
            continue
        if reading.positions is not None or existing.kind == MismatchKind.UNKNOWN.value:
            session.delete(existing)
        else:
            standing[symbol] = existing
    return found, list(standing.values())


def _hold(
    session: Session,
    row: AccountRow,
    found: list[Breach],
    acting: Sequence[MismatchRow],
    acting_orders: Sequence[OrderMismatchRow],
    *,
    acknowledged: datetime | None,
    outcome: SyncOutcome,
    now: datetime,
    day_start: datetime,
) -> None:
    """Bring the account's system reduce-only to what holds it now: a drawdown breach until an
    operator lifts it, a daily-loss breach until the next trading day, a mismatch until the
    two agree or the operator accepts the broker's view. An operator's reduce-only is theirs:
    the sync leaves it (and its reason) alone. An operator who let the account trade again
    (``allow-entries``) has acknowledged the breach: it is not put back while it lasts (a
    daily one: that day)."""
    if row.reduce_only and (row.reduce_only_by != SYSTEM or row.reduce_only_cause is None):
        return
    current = ReduceOnlyCause(row.reduce_only_cause) if row.reduce_only_cause else None
    holds: dict[ReduceOnlyCause, str] = {
        b.cause: b.reason
        for b in found
        if acknowledged is None
        or (b.cause is ReduceOnlyCause.DAILY_LOSS and acknowledged < day_start)
    }
    if current is ReduceOnlyCause.DRAWDOWN:
        holds.setdefault(current, row.reduce_only_reason or "drawdown limit")
    if current is ReduceOnlyCause.DAILY_LOSS and not outcome.day_reset:
        holds.setdefault(current, row.reduce_only_reason or "daily loss budget")
    differences = []
    if acting:
        differences.append(
            "positions differ from the broker's: "
            + "; ".join(
                f"{m.broker_symbol} {m.kind}: broker {_q(m.broker_quantity)}, "
                f"ledger {plain(m.ledger_quantity)}"
                for m in acting
            )
        )
    if acting_orders:
        differences.append(
            "orders differ from the broker's: "
            + "; ".join(
                f"{m.client_order_id} {m.kind}: broker {_q(m.broker_quantity)}, "
                f"ledger {_q(m.ledger_quantity) if m.ledger_status is None else m.ledger_status}"
                for m in acting_orders
            )
        )
    if differences:
        holds[ReduceOnlyCause.RECONCILIATION] = " / ".join(differences)
    desired = max(holds, key=PRECEDENCE.__getitem__) if holds else None
    if desired is current:
        return
    if desired is None:
        set_reduce_only(
            session,
            [row.account_id],
            reduce_only=False,
            by=SYSTEM,
            reason="released",
            now=now,
        )
        why = (
            "a new trading day"
            if current is ReduceOnlyCause.DAILY_LOSS
            else "positions and orders agree with the broker's"
        )
        record_operator_action(
            session,
            action=ALLOW_ENTRIES,
            target=row.account_id,
            operator=SYSTEM,
            reason=f"{current} no longer holds: {why}",
            reached=[],
            outcome={"released": str(current)},
            now=now,
        )
        outcome.released = True
        return
    reason = f"{desired}: {holds[desired]}"
    set_reduce_only(
        session,
        [row.account_id],
        reduce_only=True,
        by=SYSTEM,
        reason=reason,
        now=now,
        cause=desired.value,
    )
    record_operator_action(
        session,
        action=REDUCE_ONLY,
        target=row.account_id,
        operator=SYSTEM,
        reason=reason,
        reached=[],
        outcome={"cause": desired.value, "was": str(current) if current else None},
        now=now,
    )
    breach_causes = (ReduceOnlyCause.DAILY_LOSS, ReduceOnlyCause.DRAWDOWN)
    if desired in breach_causes and current not in breach_causes:
        outcome.new_breach = Breach(cause=desired, reason=holds[desired])
        outcome.flatten = row.on_breach == OnBreach.FLATTEN.value


def _acknowledged_all(session: Session, account_ids: Sequence[str]) -> dict[str, datetime]:
    """Per account, when an operator last let it trade again, if that is the last word on its
    reduce-only (no reduce-only since): one query for the page."""
    last: dict[str, tuple[str, str, datetime]] = {}
    for target, action, operator, at in session.execute(
        select(
            OperatorActionRow.target,
            OperatorActionRow.action,
            OperatorActionRow.operator,
            OperatorActionRow.at,
        )
        .where(
            OperatorActionRow.target.in_(account_ids),
            OperatorActionRow.action.in_((REDUCE_ONLY, ALLOW_ENTRIES)),
            OperatorActionRow.workflow_id.is_(None),
        )
        .order_by(OperatorActionRow.at, OperatorActionRow.id)
    ).tuples():
        if target is not None:
            last[target] = (action, operator, at)
    return {
        target: at
        for target, (action, operator, at) in last.items()
        if action == ALLOW_ENTRIES and operator != SYSTEM
    }


def _q(value: Decimal | None) -> str:
    return "no answer" if value is None else plain(value)

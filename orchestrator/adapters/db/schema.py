"""Tables of the orchestrator's database (SQLAlchemy 2.0), identical on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from orchestrator.domain.orders import OrderPurpose


class Money(TypeDecorator[Decimal]):
    """Exact decimals: ``NUMERIC(28, 10)`` on PostgreSQL, text on SQLite (which has no decimal
    type and would otherwise round-trip through float)."""

    impl = Numeric(28, 10)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(48))
        return dialect.type_descriptor(Numeric(28, 10, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"Money columns take Decimal, got {type(value).__name__}")
        return format(value, "f") if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(value).normalize() + 0 if dialect.name == "sqlite" else Decimal(value)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both dialects (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        # SQLite keeps the wall-clock text and drops the offset: store the UTC instant.
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class AccountRow(Base):
    __tablename__ = "accounts"

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    broker: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    risk_per_trade: Mapped[Decimal] = mapped_column(Money)
    daily_loss_budget: Mapped[Decimal] = mapped_column(Money)
    max_drawdown: Mapped[Decimal] = mapped_column(Money)
    max_open_positions: Mapped[int] = mapped_column(Integer)
    max_lots: Mapped[Decimal] = mapped_column(Money)
    on_breach: Mapped[str] = mapped_column(
        String(16), default="reduce_only", server_default="reduce_only"
    )
    """What a breached daily loss budget or drawdown limit does (``OnBreach``)."""
    allowed_symbols: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    trading_hours: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    exclude_from_multi_account: Mapped[bool] = mapped_column(Boolean, default=False)
    symbol_map: Mapped[dict[str, str | None]] = mapped_column(JSON, default=dict)
    reserve_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Takes part in a signal only as a reroute target."""
    reroute_on_pause: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Why the account has its status (an operator's pause reason)."""
    reduce_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """No new risk: entries are denied REDUCE_ONLY; exits and protective orders still go."""
    reduce_only_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    reduce_only_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    """Who put the account in reduce-only: an operator, or ``system`` (reconciliation)."""
    reduce_only_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    reduce_only_cause: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """What holds a system reduce-only (``ReduceOnlyCause``): a reconciliation mismatch, the
    daily loss budget or the drawdown limit; ``None`` for an operator's."""
    paper: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Paper broker behaviour for this account (fill / partial / reject, latency, slippage)."""
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AccountStateRow(Base):
    __tablename__ = "account_state"

    account_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("accounts.account_id"), primary_key=True
    )
    balance: Mapped[Decimal] = mapped_column(Money)
    equity: Mapped[Decimal] = mapped_column(Money)
    peak_equity: Mapped[Decimal] = mapped_column(Money)
    free_margin: Mapped[Decimal] = mapped_column(Money)
    open_positions: Mapped[int] = mapped_column(Integer)
    realized_loss_today: Mapped[Decimal] = mapped_column(Money)
    risk_committed_today: Mapped[Decimal] = mapped_column(Money)
    as_of: Mapped[datetime] = mapped_column(UtcDateTime)
    source: Mapped[str] = mapped_column(String(16), default="book", server_default="book")
    """Where the state comes from: ``book`` (the book file), ``reported`` (the broker said so)
    or ``derived`` (last known balance and our positions marked at the broker's prices)."""
    trading_day_start: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    """The trading-day boundary today's realized loss counts from, as the last sync decided it."""
    version: Mapped[int] = mapped_column(Integer, nullable=False)

    __mapper_args__ = {"version_id_col": version}


class MismatchRow(Base):
    """One difference reconciliation found between the broker's positions and the ledger's,
    for one account and broker symbol; open until an operator resolves it (``reconcile
    --accept``) or a later sync finds the two agree again."""

    __tablename__ = "reconciliation_mismatches"
    __table_args__ = (UniqueConstraint("account_id", "broker_symbol", name="uq_mismatch_symbol"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64), ForeignKey("accounts.account_id"))
    broker: Mapped[str] = mapped_column(String(64))
    broker_symbol: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(24))
    """``MismatchKind``: UNKNOWN_TO_LEDGER, MISSING_AT_BROKER, QUANTITY_DIFFERS, UNKNOWN."""
    broker_quantity: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    """Signed net lots at the broker (positive long); ``None``: the broker did not answer."""
    broker_average_price: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    ledger_quantity: Mapped[Decimal] = mapped_column(Money)
    """Signed net lots of the ledger's open positions."""
    detected_at: Mapped[datetime] = mapped_column(UtcDateTime)
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime)


class OrderMismatchRow(Base):
    """One order where reconciliation found the broker's working orders and the ledger's differ
    (``MismatchKind``), open until the two agree again or an operator accepts the broker's view
    (``reconcile --accept``)."""

    __tablename__ = "reconciliation_order_mismatches"
    __table_args__ = (
        UniqueConstraint("account_id", "client_order_id", name="uq_order_mismatch_order"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64), ForeignKey("accounts.account_id"))
    broker: Mapped[str] = mapped_column(String(64))
    client_order_id: Mapped[str] = mapped_column(String(160))
    broker_symbol: Mapped[str | None] = mapped_column(String(32), nullable=True)
    side: Mapped[str | None] = mapped_column(String(4), nullable=True)
    kind: Mapped[str] = mapped_column(String(24))
    broker_quantity: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    """The order's quantity at the broker (lots); ``None``: not reported, or no answer."""
    broker_filled: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    broker_order_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    order_type: Mapped[str | None] = mapped_column(String(8), nullable=True)
    ledger_quantity: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    """The ledger's working quantity; ``None``: the ledger has no working order of that id."""
    ledger_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    """For an order the ledger does not have working: the state it ended in, if it had it."""
    detected_at: Mapped[datetime] = mapped_column(UtcDateTime)
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime)


class SymbolSpecRow(Base):
    __tablename__ = "symbol_specs"

    broker: Mapped[str] = mapped_column(String(64), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    tick_size: Mapped[Decimal] = mapped_column(Money)
    tick_value: Mapped[Decimal] = mapped_column(Money)
    contract_size: Mapped[Decimal] = mapped_column(Money)
    min_lot: Mapped[Decimal] = mapped_column(Money)
    lot_step: Mapped[Decimal] = mapped_column(Money)
    max_lot: Mapped[Decimal] = mapped_column(Money)
    margin_per_lot: Mapped[Decimal] = mapped_column(Money)


class DailyReturnRow(Base):
    __tablename__ = "daily_returns"

    account_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("accounts.account_id"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    ret: Mapped[Decimal] = mapped_column(Money)
    """Daily return as a fraction of start-of-day equity."""


class SignalRow(Base):
    __tablename__ = "signals"

    signal_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    workflow_id: Mapped[str] = mapped_column(String(100))
    submitted_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RiskReservationRow(Base):
    __tablename__ = "risk_reservations"
    __table_args__ = (UniqueConstraint("signal_id", "account_id", name="uq_reservation_leg"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    signal_id: Mapped[str] = mapped_column(String(64), index=True)
    account_id: Mapped[str] = mapped_column(String(64), ForeignKey("accounts.account_id"))
    origin_account_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """For a reroute: the account whose leg this reservation took over."""
    client_order_id: Mapped[str] = mapped_column(String(160))
    quantity: Mapped[Decimal] = mapped_column(Money)
    risk_amount: Mapped[Decimal] = mapped_column(Money)
    margin: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(16))
    """RESERVED while the order works; SETTLED once its outcome is booked."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    settled_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class OrderRow(Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint(
            "signal_id",
            "account_id",
            "purpose",
            "business_sequence",
            name="uq_order_purpose_seq",
        ),
        # Reconciliation reads the working orders of a page of accounts at once.
        Index("ix_orders_account_status", "account_id", "status"),
    )

    client_order_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    signal_id: Mapped[str] = mapped_column(String(64), index=True)
    account_id: Mapped[str] = mapped_column(String(64), ForeignKey("accounts.account_id"))
    business_sequence: Mapped[int] = mapped_column(Integer)
    broker: Mapped[str] = mapped_column(String(64))
    broker_symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    order_type: Mapped[str] = mapped_column(String(8))
    quantity: Mapped[Decimal] = mapped_column(Money)
    limit_price: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    purpose: Mapped[str] = mapped_column(
        String(16), default=OrderPurpose.ENTRY.value, server_default=OrderPurpose.ENTRY.value
    )
    """An :class:`~orchestrator.domain.orders.OrderPurpose`."""
    stop_price: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    status: Mapped[str] = mapped_column(String(20))
    filled_quantity: Mapped[Decimal] = mapped_column(Money)
    average_price: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    broker_order_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    reject_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class FillRow(Base):
    __tablename__ = "fills"

    execution_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    client_order_id: Mapped[str] = mapped_column(
        String(160), ForeignKey("orders.client_order_id"), index=True
    )
    quantity: Mapped[Decimal] = mapped_column(Money)
    price: Mapped[Decimal] = mapped_column(Money)
    filled_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PositionRow(Base):
    """One (signal, account)'s position, as its keeper last recorded it."""

    __tablename__ = "positions"

    signal_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("accounts.account_id"), primary_key=True
    )
    keeper_workflow_id: Mapped[str] = mapped_column(String(200))
    """The one workflow that writes it (``signal-{id}/positions``)."""
    broker: Mapped[str] = mapped_column(String(64))
    broker_symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    entry_quantity: Mapped[Decimal] = mapped_column(Money)
    average_entry: Mapped[Decimal] = mapped_column(Money)
    open_quantity: Mapped[Decimal] = mapped_column(Money)
    stop: Mapped[Decimal] = mapped_column(Money)
    take_profit: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    realized_pnl: Mapped[Decimal] = mapped_column(Money)
    stop_client_order_id: Mapped[str | None] = mapped_column(String(160), nullable=True)
    take_profit_client_order_id: Mapped[str | None] = mapped_column(String(160), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class PositionFillRow(Base):
    """A fill that reduced a position, with its cause and realized P&L: booked once."""

    __tablename__ = "position_fills"

    execution_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    signal_id: Mapped[str] = mapped_column(String(64), index=True)
    account_id: Mapped[str] = mapped_column(String(64), ForeignKey("accounts.account_id"))
    client_order_id: Mapped[str] = mapped_column(String(160))
    quantity: Mapped[Decimal] = mapped_column(Money)
    price: Mapped[Decimal] = mapped_column(Money)
    cause: Mapped[str] = mapped_column(String(24))
    pnl: Mapped[Decimal] = mapped_column(Money)
    filled_at: Mapped[datetime] = mapped_column(UtcDateTime)


class OperatorActionRow(Base):
    """Every operator action: who, what, why, when, and which workflows it reached. A row with
    a ``workflow_id`` is one workflow's receipt of an action (written by that workflow, whatever
    sent it); a row without one is what the starter itself did (persisted a pause or the kill
    switch, and which workflows its broadcast reached)."""

    __tablename__ = "operator_actions"
    __table_args__ = (UniqueConstraint("receipt", name="uq_operator_actions_receipt"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(100), nullable=True)
    operator: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    reached: Mapped[list[str]] = mapped_column(JSON)
    outcome: Mapped[dict[str, Any]] = mapped_column(JSON)
    workflow_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    """The workflow that received the action (and recorded this row)."""
    via: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """signal, update or cancellation (Temporal's own cancellation request)."""
    identity: Mapped[str | None] = mapped_column(String(200), nullable=True)
    """The sending client's identity, as Temporal recorded it."""
    receipt: Mapped[str | None] = mapped_column(String(400), nullable=True)
    """``{workflow_id}/{run_id}/{key}``: one row per receipt, however often it is written."""


class SystemControlRow(Base):
    """One row (id 1): the system-wide kill switch."""

    __tablename__ = "system_controls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    halted: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    operator: Mapped[str | None] = mapped_column(String(100), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PlanningInputRow(Base):
    """One page of a large signal's planning input (snapshot or correlation), taken once per
    workflow run and served page by page: every page comes from the same reading, however
    often an activity is retried, and no payload nears Temporal's limits."""

    __tablename__ = "planning_inputs"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    page: Mapped[int] = mapped_column(Integer, primary_key=True)
    pages: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


# The paper broker's own book. It stands in for a broker's server: the orchestrator reaches it
# only through the Broker interface, never by reading these tables.


class PaperOrderRow(Base):
    __tablename__ = "paper_orders"

    client_order_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    broker_order_id: Mapped[str] = mapped_column(String(100), unique=True)
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    order_type: Mapped[str] = mapped_column(String(8))
    quantity: Mapped[Decimal] = mapped_column(Money)
    limit_price: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    reference_price: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(20))
    filled_quantity: Mapped[Decimal] = mapped_column(Money)
    average_price: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    reject_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    schedule: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    """Executions still to come: ``[{"due_ms": "...", "quantity": "...", "price": "..."}]``."""
    final_status: Mapped[str] = mapped_column(String(20))
    """Status the order takes once its schedule is exhausted."""
    submitted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    stop_price: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    """A STOP order's trigger price."""
    resting: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Works until a quote of the market reaches its price (a STOP, or a LIMIT that was not
    marketable when it arrived) instead of following the account's fill schedule."""
    evaluated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    """A resting order: the time of the last quote checked against it (the next check starts
    there, that quote included; a quote committed late for a later time is still seen)."""


class PaperExecutionRow(Base):
    __tablename__ = "paper_executions"

    execution_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    client_order_id: Mapped[str] = mapped_column(
        String(160), ForeignKey("paper_orders.client_order_id"), index=True
    )
    quantity: Mapped[Decimal] = mapped_column(Money)
    price: Mapped[Decimal] = mapped_column(Money)
    executed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PaperQuoteRow(Base):
    """The paper market's price path: one symbol's bid and ask from ``at`` until its next
    quote. Shared by every paper account trading the symbol."""

    __tablename__ = "paper_quotes"

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    bid: Mapped[Decimal] = mapped_column(Money)
    ask: Mapped[Decimal] = mapped_column(Money)


class PaperAccountRow(Base):
    """A paper account as the paper broker opened it: the balance it started with, taken once
    (from the account's state row) the first time the paper broker dealt with the account, so
    that later readings of our own ledger never feed back into the broker's."""

    __tablename__ = "paper_accounts"

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    starting_balance: Mapped[Decimal] = mapped_column(Money)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime)

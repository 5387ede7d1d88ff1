"""Domain values and the payloads that cross workflow and activity boundaries.

Every model here is pure (no I/O) and safe to import from workflow code. Money, prices and
quantities are ``Decimal`` end to end; delays are whole milliseconds.
"""

from __future__ import annotations

from datetime import datetime, time
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.#-]{0,31}$"

Identifier = Annotated[str, Field(pattern=ID_PATTERN)]
"""Signal and account ids: 1–64 of letters, digits, ``_ . -``; first a letter or digit."""
SymbolName = Annotated[str, Field(pattern=SYMBOL_PATTERN)]
PositiveDecimal = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
NonNegativeDecimal = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[Decimal, Field(gt=0, le=1, allow_inf_nan=False)]


class Model(BaseModel):
    """Base for every payload: immutable, unknown fields refused; also built from ORM rows
    by attribute (``from_attributes``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", from_attributes=True)


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell: multiplies a price move into P&L direction."""
        return 1 if self is Side.BUY else -1


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"


class AccountStatus(StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    DISABLED = "DISABLED"


class DenialReason(StrEnum):
    """Our own pre-trade refusals. Never used for a broker's rejection."""

    PAUSED = "PAUSED"
    ACCOUNT_DISABLED = "ACCOUNT_DISABLED"
    HALTED = "HALTED"
    STALE_ACCOUNT_DATA = "STALE_ACCOUNT_DATA"
    MANDATE_FORBIDS = "MANDATE_FORBIDS"
    SYMBOL_NOT_TRADABLE = "SYMBOL_NOT_TRADABLE"
    MAX_POSITIONS = "MAX_POSITIONS"
    DRAWDOWN_LIMIT = "DRAWDOWN_LIMIT"
    RISK_BUDGET_EXHAUSTED = "RISK_BUDGET_EXHAUSTED"
    INSUFFICIENT_MARGIN = "INSUFFICIENT_MARGIN"
    SIZE_BELOW_MIN_LOT = "SIZE_BELOW_MIN_LOT"
    NOT_SELECTED = "NOT_SELECTED"
    ACCOUNT_ALREADY_USED = "ACCOUNT_ALREADY_USED"
    """A reroute target already took part in this signal."""
    LEG_CLOSED = "LEG_CLOSED"
    """The leg was settled or cancelled before this order could leave: it never will."""


# --------------------------------------------------------------------------------------------
# Signal


class Signal(Model):
    """One trade idea, to be executed across the eligible accounts of the book."""

    signal_id: Identifier
    symbol: SymbolName
    """Canonical symbol (e.g. ``EURUSD``); each account maps it to its broker's name."""
    side: Side
    entry: PositiveDecimal
    """Reference price: the limit price of LIMIT orders and the slippage benchmark."""
    stop: PositiveDecimal
    """Protective stop; its distance from ``entry`` defines the risk per lot."""
    take_profit: PositiveDecimal | None = None
    order_type: OrderType = OrderType.MARKET
    account_ids: list[Identifier] | None = Field(default=None, min_length=1)
    """Restrict the signal to these accounts; ``None`` means the whole book."""
    reroute_on_pause: bool = False
    """A leg whose account is paused while it waits is rerouted instead of skipped."""
    note: str | None = Field(default=None, max_length=500)

    @field_validator("stop")
    @classmethod
    def _stop_on_the_losing_side(cls, stop: Decimal, info: ValidationInfo) -> Decimal:
        side, entry = info.data.get("side"), info.data.get("entry")
        if side is Side.BUY and entry is not None and stop >= entry:
            raise ValueError("stop must be below entry for a BUY")
        if side is Side.SELL and entry is not None and stop <= entry:
            raise ValueError("stop must be above entry for a SELL")
        return stop

    @field_validator("take_profit")
    @classmethod
    def _target_on_the_winning_side(
        cls, target: Decimal | None, info: ValidationInfo
    ) -> Decimal | None:
        side, entry = info.data.get("side"), info.data.get("entry")
        if target is None or entry is None:
            return target
        if side is Side.BUY and target <= entry:
            raise ValueError("take_profit must be above entry for a BUY")
        if side is Side.SELL and target >= entry:
            raise ValueError("take_profit must be below entry for a SELL")
        return target


# --------------------------------------------------------------------------------------------
# Account book


class SymbolSpec(Model):
    """A broker's contract specification for one of its symbols."""

    broker: Identifier
    symbol: SymbolName
    """The broker's own name for the symbol (``EURUSD.pro``)."""
    tick_size: PositiveDecimal
    tick_value: PositiveDecimal
    """Account-currency value of one tick for one lot."""
    contract_size: PositiveDecimal
    min_lot: PositiveDecimal
    lot_step: PositiveDecimal
    max_lot: PositiveDecimal
    margin_per_lot: NonNegativeDecimal
    """Account-currency margin one lot ties up."""

    @property
    def key(self) -> str:
        return spec_key(self.broker, self.symbol)

    @model_validator(mode="after")
    def _lots_consistent(self) -> SymbolSpec:
        if self.min_lot > self.max_lot:
            raise ValueError("min_lot must not exceed max_lot")
        if (self.min_lot % self.lot_step) != 0:
            raise ValueError("min_lot must be a multiple of lot_step")
        return self


def spec_key(broker: str, symbol: str) -> str:
    return f"{broker}:{symbol}"


class TradingHours(Model):
    """A daily UTC window; ``start > end`` spans midnight. Start inclusive, end exclusive."""

    start: time
    end: time
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] | None = None
    """Allowed weekdays, Monday = 0; ``None`` means every day."""

    def contains(self, moment: datetime) -> bool:
        if self.weekdays is not None and moment.weekday() not in self.weekdays:
            return False
        t = moment.time().replace(tzinfo=None)
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


class Mandate(Model):
    """Rules the account's owner imposes; the orchestrator enforces them and records denials."""

    allowed_symbols: list[SymbolName] | None = None
    """Canonical symbols this account may trade; ``None`` means any the broker offers."""
    trading_hours: TradingHours | None = None
    exclude_from_multi_account: bool = False
    """The account must not take part in a signal executed on more than one account."""


class AccountLimits(Model):
    risk_per_trade: Fraction
    """Fraction of equity risked by one signal (0.01 = 1 %)."""
    daily_loss_budget: NonNegativeDecimal
    """Account-currency loss the account may risk in one day, realized plus committed."""
    max_drawdown: Fraction
    """Largest tolerated fall from peak equity, as a fraction (0.10 = 10 %)."""
    max_open_positions: Annotated[int, Field(ge=0)]
    max_lots: PositiveDecimal
    """Largest order this account may send, in lots."""


class AccountSnapshot(Model):
    """What planning needs to know about one account, as of ``as_of``."""

    account_id: Identifier
    broker: Identifier
    currency: Annotated[str, Field(min_length=3, max_length=3)]
    status: AccountStatus
    limits: AccountLimits
    mandate: Mandate
    broker_symbol: SymbolName | None
    """The signal's symbol in this broker's naming, or ``None`` if the account has no mapping."""
    balance: Decimal
    equity: Decimal
    peak_equity: Decimal
    free_margin: Decimal
    open_positions: Annotated[int, Field(ge=0)]
    realized_loss_today: NonNegativeDecimal
    risk_committed_today: NonNegativeDecimal
    """Risk already reserved today by other signals' orders."""
    as_of: datetime
    reserve_only: bool = False
    """Takes part only as a reroute target, never as a first choice."""
    reroute_on_pause: bool = False
    """If paused while a leg of it waits, reroute the leg instead of skipping it."""


class BookSnapshot(Model):
    """The snapshot activity's result: every candidate account and the specs they need."""

    symbol: SymbolName
    taken_at: datetime
    accounts: list[AccountSnapshot]
    specs: dict[str, SymbolSpec]
    """Keyed by :func:`spec_key` of broker and broker symbol."""
    halted: bool = False
    """The system-wide kill switch was on when the snapshot was taken."""
    page: int = 0
    pages: int = 1
    """A large book arrives in pages (each well under Temporal's payload limits); the workflow
    asks for the rest once the first says how many there are."""
    correlation: CorrelationResult | None = None
    """The accounts' correlation, when the request asked for it (``correlate``) and the book
    came in one page with room for it: one activity instead of two."""


# --------------------------------------------------------------------------------------------
# Correlation


class CorrelationRequest(Model):
    account_ids: list[Identifier] | None = None
    """Correlate these accounts; ``None``: the accounts of the paged snapshot of ``run_id``."""
    run_id: str | None = None
    """The signal workflow run whose stored snapshot and result the pages come from."""
    page: int = 0
    lookback_days: Annotated[int, Field(ge=2)]
    threshold: Fraction
    min_observations: Annotated[int, Field(ge=2)]
    max_peers: Annotated[int, Field(ge=0)] = 10


class AccountCorrelation(Model):
    account_id: Identifier
    group: str | None
    """Id of the connected group of accounts correlated above the threshold; ``None`` alone."""
    max_correlation: Decimal | None
    peers: list[Identifier]
    """Accounts above the threshold, strongest first, capped at ``max_peers``."""
    observations: int
    insufficient_history: bool


class CorrelationResult(Model):
    threshold: Decimal
    accounts: list[AccountCorrelation]
    page: int = 0
    pages: int = 1

    def by_account(self) -> dict[str, AccountCorrelation]:
        return {a.account_id: a for a in self.accounts}


# --------------------------------------------------------------------------------------------
# Plan


class PlanSettings(Model):
    """Every knob planning reads. Recorded in the workflow input, so replay sees the same."""

    plan_version: Annotated[int, Field(ge=1)] = 1
    delay_min_ms: Annotated[int, Field(ge=0)] = 1_000
    delay_max_ms: Annotated[int, Field(ge=0)] = 30_000
    size_variance: Annotated[Decimal, Field(ge=0, lt=1, decimal_places=4)] = Decimal("0.10")
    """Bound of the symmetric size variance: 0.10 draws a factor in [0.90, 1.10]. At most
    4 decimals, so the drawn factor (6 places) never leaves the bound."""
    correlation_threshold: Fraction = Decimal("0.7")
    correlated_min_gap_ms: Annotated[int, Field(ge=0)] = 5_000
    correlation_lookback_days: Annotated[int, Field(ge=2)] = 60
    correlation_min_observations: Annotated[int, Field(ge=2)] = 20
    max_account_data_age_s: Annotated[int, Field(ge=1)] = 900
    max_legs: Annotated[int, Field(ge=1)] | None = None
    """Cap on legs per signal; further eligible accounts become the reroute reserve."""
    batch_size: Annotated[int, Field(ge=1, le=1000)] = 300
    """Legs per batch child workflow once a signal has more legs than this."""

    @model_validator(mode="after")
    def _bounds_ordered(self) -> PlanSettings:
        if self.delay_min_ms > self.delay_max_ms:
            raise ValueError("delay_min_ms must not exceed delay_max_ms")
        return self


class SizeRationale(Model):
    """Every factor that shaped one leg's size, in the order they were applied."""

    equity: Decimal
    risk_per_trade: Decimal
    risk_amount: Decimal
    """equity × risk_per_trade, account currency."""
    per_lot_risk: Decimal
    """|entry − stop| / tick_size × tick_value, account currency per lot."""
    base_lots: Decimal
    drawdown: Decimal
    drawdown_factor: Decimal
    correlated_accounts: int
    """Accounts of this account's correlated group that were eligible for this signal before
    sizing (itself included). Members later denied on size still count: it errs small."""
    correlation_factor: Decimal
    variance_factor: Decimal
    """The size variance drawn (1 on a reroute target: it replaces an order already sized)."""
    target_lots: Decimal
    budget_cap_lots: Decimal
    margin_cap_lots: Decimal
    max_lots: Decimal
    carried_risk: Decimal | None = None
    """On a reroute target: the failed order's risk at the stop still to move on (the reroute
    fraction of it, less what earlier targets took), in this account's currency."""
    carried_cap_lots: Decimal | None = None
    """The lots that carry ``carried_risk`` through this account's contract."""
    capped_lots: Decimal
    binding: str
    """Which of target / budget / margin / max_lots / carried_risk decided the size before
    rounding."""
    final_lots: Decimal


class DelayRationale(Model):
    delay_ms: int
    group: str | None
    group_size: int
    effective_gap_ms: int
    """The gap kept from the previous account of the same group (0 when alone)."""


class LegOrder(Model):
    """What executing one leg needs: a batch child gets its legs in this form, the rationale
    staying in the plan (the signal's history re-derives it)."""

    sequence: int
    """Position in execution order, from 1."""
    account_id: Identifier
    broker: Identifier
    broker_symbol: SymbolName
    quantity: PositiveDecimal
    """Lots, a multiple of the lot step within [min lot, max lot]."""
    client_order_id: str
    delay_ms: int
    tick_size: PositiveDecimal
    """The contract's tick, to express slippage in ticks."""
    min_lot: PositiveDecimal
    lot_step: PositiveDecimal
    reroute_on_pause: bool = False
    risk_amount: Decimal
    """Risk the order commits if stopped out: quantity × per-lot risk."""
    margin: Decimal


class PlannedLeg(LegOrder):
    """A leg of the plan, with why it has this size and this delay."""

    size: SizeRationale
    delay: DelayRationale

    def slim(self) -> LegOrder:
        """This leg without its rationale, as batch children get it."""
        return LegOrder.model_validate(self.model_dump(exclude={"size", "delay"}))


class Denial(Model):
    account_id: Identifier
    reason: DenialReason
    detail: str
    size: SizeRationale | None = None
    """For a denial on size (below the min lot once capped): every factor and the cap that
    bound, as a leg's rationale has them."""


class Plan(Model):
    signal_id: Identifier
    plan_version: int
    seed: int
    planned_at: datetime
    legs: list[PlannedLeg]
    denials: list[Denial]
    reserve: list[Identifier]
    """Accounts eligible at planning time but not given a leg, in order: reroute candidates."""
    groups: dict[str, list[Identifier]] = {}
    """Correlated groups among the eligible accounts: group id → its members, each sized down
    by 1/√k and spaced by the correlated gap."""


# --------------------------------------------------------------------------------------------
# Execution


class LegStatus(StrEnum):
    WAITING = "WAITING"
    RESERVING = "RESERVING"
    WORKING = "WORKING"
    FILLED = "FILLED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    REJECTED = "REJECTED"
    DENIED = "DENIED"
    SKIPPED_PAUSED = "SKIPPED_PAUSED"
    HALTED = "HALTED"
    """Stopped by the kill switch before its order was sent."""
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"


class ReserveRiskRequest(Model):
    signal_id: Identifier
    account_id: Identifier
    origin_account_id: Identifier | None = None
    """For a reroute: the account whose leg this reservation serves. A reservation is
    idempotent only for the same origin, so two reroutes can never share a target."""
    client_order_id: str
    quantity: PositiveDecimal
    risk_amount: NonNegativeDecimal
    margin: NonNegativeDecimal


class ReserveRiskResult(Model):
    reserved: bool
    denial: DenialReason | None = None
    detail: str = ""


class PlaceOrderRequest(Model):
    signal_id: Identifier
    account_id: Identifier
    client_order_id: str
    business_sequence: Annotated[int, Field(ge=1)]
    """1 for a leg's first order; completions and reroutes take the next numbers."""
    broker: Identifier
    broker_symbol: SymbolName
    side: Side
    order_type: OrderType
    quantity: PositiveDecimal
    limit_price: PositiveDecimal | None
    reference_price: PositiveDecimal
    settles_leg: bool = True
    """Settle the leg's risk reservation when this order ends, unless it ends partially
    filled (a completion follows, and settles the leg itself)."""
    reservation: ReserveRiskRequest | None = None
    """Reserve the leg's risk first, in the transaction that writes the order to the ledger:
    one activity per leg instead of two. ``None``: reserved beforehand (or a completion)."""

    @field_validator("client_order_id")
    @classmethod
    def _bounded(cls, value: str) -> str:
        if not 1 <= len(value) <= 160:
            raise ValueError("client_order_id must be 1–160 characters")
        return value


class OrderOutcome(Model):
    """Where an order ended: the broker's terminal state as recorded in our ledger."""

    client_order_id: str
    broker_order_id: str | None
    status: str
    """An :class:`orchestrator.domain.orders.OrderStatus` value."""
    quantity: Decimal
    filled_quantity: Decimal
    average_price: Decimal | None
    reject_text: str | None = None
    """The broker's rejection text, verbatim."""


class CompletionStop(StrEnum):
    COMPLETED = "COMPLETED"
    DUST = "DUST"
    """The remainder is below the min lot or not a lot-step multiple: recorded, not sent."""
    ATTEMPTS_EXHAUSTED = "ATTEMPTS_EXHAUSTED"
    DEADLINE = "DEADLINE"
    REJECTED = "REJECTED"
    STOPPED_BY_OPERATOR = "STOPPED_BY_OPERATOR"
    """Halted, or the account paused: no further completion order was sent."""
    FAILED = "FAILED"


class CompletionInput(Model):
    signal: Signal
    account_id: Identifier
    broker: Identifier
    broker_symbol: SymbolName
    remaining: PositiveDecimal
    min_lot: PositiveDecimal
    lot_step: PositiveDecimal
    first_sequence: Annotated[int, Field(ge=2)]
    """Business sequence of the first completion order (the leg's own order was 1)."""
    execution: ExecutionSettings


class CompletionResult(Model):
    account_id: Identifier
    filled: Decimal
    """Filled by the completion orders (not counting the leg's first order)."""
    average_price: Decimal | None
    """Volume-weighted over the completion's fills."""
    unfilled: Decimal
    dust: Decimal
    """Part of ``unfilled`` that could never be sent: below the min lot or the lot step."""
    attempts: int
    stopped: CompletionStop
    detail: str
    client_order_ids: list[str]


class RerouteHop(Model):
    to_account: Identifier
    outcome: LegStatus
    """FILLED, PARTIALLY_FILLED, REJECTED, DENIED or FAILED."""
    reason: str
    quantity: Decimal
    filled: Decimal
    risk: Decimal = Decimal(0)
    """Risk at the stop of the order sent to this account (its own currency)."""
    risk_filled: Decimal = Decimal(0)
    """The part of ``risk`` that filled: what found a home here."""


class RerouteOutcome(StrEnum):
    PLACED = "PLACED"
    """The carried risk found a home (up to less than one lot step of the last target)."""
    PARTLY_PLACED = "PARTLY_PLACED"
    """Part of it did; the reserve accounts or the tries ran out for the rest."""
    NO_ALTERNATIVE_ACCOUNT = "NO_ALTERNATIVE_ACCOUNT"
    """None of it did."""
    FAILED = "FAILED"
    """An order's outcome is unknown (cancelled at the broker): the rest is not sent elsewhere
    too."""


class RerouteInput(Model):
    signal: Signal
    from_account: Identifier
    reason: str
    """Why the original leg could not be executed (broker text or denial)."""
    original_quantity: PositiveDecimal
    original_risk: NonNegativeDecimal
    """Risk at the stop of the failed order, in the original account's currency: the reroute
    carries at most the reroute fraction of it, converted through each target's contract."""
    candidates: list[Identifier]
    """The plan's reserve list: eligible at planning, not yet used, in order."""
    settings: PlanSettings
    execution: ExecutionSettings
    started_at: datetime
    """Start of the signal's workflow: latencies are measured from it."""
    leg_ref: str | None = None
    """The leg this reroute is for (``leg-3``), for its children's ids."""


class RerouteResult(Model):
    from_account: Identifier
    reason: str
    hops: list[RerouteHop]
    outcome: RerouteOutcome
    risk_original: Decimal
    """Risk at the stop of the failed order."""
    risk_carried: Decimal
    """The reroute fraction of it: the most the reroute may place elsewhere."""
    risk_placed: Decimal
    """What found a home: the filled risk of every target, summed."""
    reports: list[AccountReport] = []
    """The execution lines of the accounts that took part of the order over."""

    @property
    def placed_share(self) -> Decimal:
        """``risk_placed`` as a fraction of the failed order's risk."""
        return self.risk_placed / self.risk_original if self.risk_original else Decimal(0)


class AccountReport(Model):
    """One account's line of the execution report."""

    account_id: Identifier
    status: LegStatus
    requested: Decimal
    filled: Decimal
    average_price: Decimal | None = None
    slippage: Decimal | None = None
    """Adverse price difference to the signal's entry (positive = worse), in price units."""
    slippage_ticks: Decimal | None = None
    delay_ms: int | None = None
    latency_ms: int | None = None
    """From the start of the signal's workflow to the order's terminal state."""
    client_order_id: str | None = None
    denial: DenialReason | None = None
    reason: str | None = None
    """Denial detail, or the broker's rejection text verbatim."""
    size: SizeRationale | None = None
    delay: DelayRationale | None = None
    completion: CompletionResult | None = None
    """The partial-fill completion, when the first order filled only part."""
    reroute: RerouteResult | None = None
    """The reroute chain, when this account's order failed and was moved elsewhere."""
    rerouted_from: Identifier | None = None
    """On a reroute target's line: the account whose leg it took over."""


class ExecutionReport(Model):
    signal_id: Identifier
    symbol: SymbolName
    side: Side
    reference_price: Decimal
    plan_version: int
    status: str
    started_at: datetime
    finished_at: datetime
    accounts: list[AccountReport]
    requested_total: Decimal
    filled_total: Decimal
    by_status: dict[str, int] = {}
    """Accounts per status, every account of the signal counted."""
    batches: list[str] = []
    """Workflow ids of the batch children, for a signal run in batches."""
    accounts_in_batches: bool = False
    """The per-account lines were too many for one payload: ``accounts`` is empty and the lines
    are the batch children's results (``orchestrator.domain.reports.full_report`` joins them)."""


class SnapshotRequest(Model):
    signal_id: Identifier
    symbol: SymbolName
    account_ids: list[Identifier] | None = None
    """Limit the snapshot to these accounts; ``None`` takes every account in the book."""
    run_id: str | None = None
    """Set by the signal workflow: a snapshot too large for one payload is taken once, stored
    under the run, and served in pages. ``None``: one snapshot, whatever its size."""
    page: int = 0
    correlate: CorrelationRequest | None = None
    """Also correlate the snapshot's accounts with these settings (its ``account_ids`` are
    the snapshot's), in the same activity, when the book fits in one page together with the
    result. Otherwise the snapshot comes without it and the workflow asks separately."""


class ExecutionSettings(Model):
    """Timeouts and retry bounds of the broker activities, recorded in the workflow input."""

    order_start_to_close_s: Annotated[int, Field(ge=1)] = 120
    order_schedule_to_close_s: Annotated[int, Field(ge=1)] = 600
    """Give up on placing an order after this long across retries; the leg then ends FAILED
    and any order the broker holds for it is cancelled."""
    order_heartbeat_s: Annotated[int, Field(ge=1)] = 10
    """Cancellation reaches a working order within about 0.8 × this."""
    poll_interval_ms: Annotated[int, Field(ge=1)] = 200
    completion_max_attempts: Annotated[int, Field(ge=1, le=20)] = 3
    completion_deadline_s: Annotated[int, Field(ge=1)] = 120
    """A completion stops placing orders after this long; a working order is cancelled."""
    reroute_fraction: Annotated[Decimal, Field(gt=0, le=1)] = Decimal("0.95")
    """The share of a failed order's risk at the stop a reroute may place elsewhere."""
    reroute_max_accounts: Annotated[int, Field(ge=1, le=20)] = 3
    max_orders_in_flight: Annotated[int, Field(ge=1)] = 600
    """First orders one signal keeps working at once; a large signal's batches each take an
    equal share. Legs due past it wait their turn, in the order they came due."""
    broker_task_queues: dict[str, str] = {}
    """Broker name → task queue of the worker that holds that broker's session (a FIX session
    lives in one process). Order and cancel activities of its accounts go there; brokers not
    listed use the workflow's own task queue."""

    def broker_queue(self, broker: str) -> str | None:
        return self.broker_task_queues.get(broker)


class ActivityName(StrEnum):
    """Activity names shared by workflows (which must not import the activity modules) and
    the worker."""

    LOAD_SNAPSHOT = "load_snapshot"
    COMPUTE_CORRELATION = "compute_correlation"
    RESERVE_RISK = "reserve_risk"
    PLACE_AND_FOLLOW_ORDER = "place_and_follow_order"
    CANCEL_ORDER = "cancel_order"
    SETTLE_LEG = "settle_leg"
    SERVICE_SETTINGS = "service_settings"
    RECORD_OPERATOR_ACTION = "record_operator_action"
    APPLY_KILL_SWITCH = "apply_kill_switch"
    CANCELLATION_REQUEST = "cancellation_request"
    ARCHIVE_CLOSED_SIGNALS = "archive_closed_signals"


class SettleLegRequest(Model):
    signal_id: Identifier
    account_id: Identifier


class ErrorType(StrEnum):
    """``ApplicationError`` types the order activity raises and workflows classify."""

    BROKER_REJECTED = "BrokerRejected"
    """The broker refused the order (permanent); its text is kept verbatim."""
    ORDER_REFUSED = "OrderRefused"
    """Our own last gate refused to send a new order (halted, paused, leg closed)."""
    RESERVATION_DENIED = "ReservationDenied"
    """The leg's risk reservation, made by the order activity itself, was denied (limits
    reached since planning): nothing was sent."""
    BROKER_UNAVAILABLE = "BrokerUnavailable"
    """Transient: retried with the same client order id."""
    LEDGER_INCONSISTENT = "LedgerInconsistent"
    """An illegal order-state transition: a bug to investigate, not to retry."""
    REFUSED = "Refused"
    """An operator request a workflow's validator refused: its message is one sentence for the
    operator, sent without a stack trace."""


class CancelOrderRequest(Model):
    signal_id: Identifier
    account_id: Identifier
    client_order_id: str
    reason: str


class ServiceSettings(Model):
    """The settings a signal is planned and executed with: the worker's, read by the signal
    workflow's first activity, so every way in (starter, webhook, ``temporal`` CLI, Web UI)
    plans the same book the same way, whatever the submitter's environment."""

    plan: PlanSettings
    execution: ExecutionSettings


class SignalWorkflowInput(Model):
    signal: Signal
    settings: PlanSettings | None = None
    """``None`` (as every way in sends it): the worker's settings, read by an activity and
    recorded in the history. Given: pinned for this run (tests, benchmarks)."""
    execution: ExecutionSettings | None = None
    """``None``: the worker's, as ``settings``."""


class LegBatchInput(Model):
    signal: Signal
    settings: PlanSettings
    execution: ExecutionSettings
    legs: list[PlannedLeg | LegOrder]
    """Recorded before batches took slim legs: with their rationale."""
    reserve: list[Identifier]
    started_at: datetime
    denials: list[Denial] = []
    """Accounts of this slice the plan denied: the batch reports them, so a large signal's
    whole report lives in its batches (the signal's own result is then a summary)."""


class LegBatchResult(Model):
    accounts: list[AccountReport]


class LegProgress(Model):
    """One leg as the live status query shows it."""

    account_id: Identifier
    status: LegStatus
    quantity: Decimal
    delay_ms: int
    due_at: datetime
    """When the leg's timer fires (workflow time)."""
    client_order_id: str
    filled: Decimal = Decimal(0)
    reason: str | None = None


class SignalProgress(Model):
    signal_id: Identifier
    phase: str
    """PLANNING, EXECUTING or COMPLETED."""
    started_at: datetime
    legs: list[LegProgress]
    denied: int
    batches: int = 0
    """Batch child workflows running legs of this signal (their legs are not listed here)."""


# --------------------------------------------------------------------------------------------
# Operator controls (signals and updates). Fields are plain strings: the update validators,
# not deserialisation, refuse a missing operator or reason, so the refusal says why.


class OperatorAction(Model):
    operator: str = ""
    """Who acts (a person or system name)."""
    reason: str = ""
    """Why, in the operator's words."""


class PauseAccount(OperatorAction):
    account_id: Identifier
    reroute: bool = False
    """Reroute this account's waiting legs instead of skipping them."""


class ResumeAccount(OperatorAction):
    account_id: Identifier


class HaltRequest(OperatorAction):
    cancel_working: bool = False
    """Also cancel orders already working at the broker."""
    from_kill_switch: bool = False
    """Sent by the kill switch's own broadcast (already persisted). A halt sent to one workflow
    by hand (the Web UI, the ``temporal`` CLI) leaves it false: that workflow then throws the
    kill switch itself, persisted and broadcast to every running signal."""


class UnhaltRequest(OperatorAction):
    from_kill_switch: bool = False
    """As :attr:`HaltRequest.from_kill_switch`: an unhalt sent by hand lifts the kill switch."""


class CancelSignalRequest(OperatorAction):
    pass


class StopResult(Model):
    """A workflow's answer to a halt or a cancel."""

    workflow_id: str
    legs_stopped: int
    """Legs that had not sent their order and now never will."""
    orders_cancelled: int
    """Working orders cancelled at the broker."""


class ActionVia(StrEnum):
    SIGNAL = "signal"
    UPDATE = "update"
    CANCELLATION = "cancellation"
    """Temporal's own cancellation request (the Web UI's Request Cancellation button)."""


class ActionReceipt(Model):
    """An operator action as one workflow received it, whatever sent it (starter, ``temporal``
    CLI, Web UI): recorded in ``operator_actions`` by that workflow, once."""

    workflow_id: str
    run_id: str
    action: str
    """The signal or update name (``pause_account``, ``halt``, ...), or ``cancel_signal`` for a
    Temporal cancellation request."""
    via: ActionVia
    key: str
    """Which receipt of this run it is (``signal:pause_account:2``, ``update:<update id>``,
    ``cancellation``): with the run, the row's unique key, so a retried activity records it
    once; and how the sender's identity is found in the history."""
    target: str | None = None
    operator: str
    reason: str
    outcome: dict[str, int | str | bool] = {}


class ActionRecorded(Model):
    identity: str | None
    """The sending client's identity, as the history recorded it."""


class KillSwitch(Model):
    """Throw (or lift) the system-wide kill switch from inside a workflow: persisted, then
    broadcast to every other running signal workflow."""

    halted: bool
    operator: str
    reason: str
    cancel_working: bool = False
    origin_workflow_id: str
    """The workflow that received the halt by hand: it has already applied it."""
    origin_key: str
    """Makes the broadcast's update ids unique per origin, so a retry sends nothing twice."""


class KillSwitchResult(Model):
    reached: list[str]


class CancellationRequest(Model):
    """Who asked Temporal to cancel a workflow, read from its history."""

    identity: str | None
    reason: str


RerouteResult.model_rebuild()
AccountReport.model_rebuild()


# --------------------------------------------------------------------------------------------
# Archive


class ArchiveRequest(Model):
    closed_for_s: Annotated[int, Field(ge=0)] = 0
    """Archive signals closed at least this long ago."""
    max_signals: Annotated[int, Field(ge=1)] = 1000
    """At most this many per run; the next run takes the rest."""


class ArchivedSignal(Model):
    workflow_id: str
    run_id: str
    directory: str
    histories: int
    verified: bool
    """Every history replayed clean against the code that archived it."""
    audit_ok: bool
    failure: str | None = None


class ArchiveResult(Model):
    directory: str
    archived: list[ArchivedSignal]
    already_archived: int

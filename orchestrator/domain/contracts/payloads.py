"""What crosses between workflows and activities: requests and results of every activity, the
inputs and results of the workflows, and the error types workflows classify.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import (
    Field,
    field_validator,
)

from orchestrator.domain.correlation import CorrelationRequest
from orchestrator.domain.limits import MAX_BATCH_LEGS
from orchestrator.domain.orders import OrderOutcome
from orchestrator.domain.planning.decisions import Denial, LegOrder
from orchestrator.domain.report import AccountReport
from orchestrator.domain.settings import ExecutionSettings, PlanSettings
from orchestrator.domain.signal import Signal
from orchestrator.domain.values import (
    DenialReason,
    Identifier,
    Model,
    NonNegativeDecimal,
    OrderType,
    PositiveDecimal,
    Side,
    SymbolName,
)


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
    resume: bool = False
    """The order may already be at the broker (its slice wrote it ahead and sent it, or could
    not tell whether the broker got it): ask the broker first, as a retry does, and follow
    what it holds; send only if it holds nothing."""

    @field_validator("client_order_id")
    @classmethod
    def _bounded(cls, value: str) -> str:
        if not 1 <= len(value) <= 160:
            raise ValueError("client_order_id must be 1–160 characters")
        return value


class PlaceSliceRequest(Model):
    """The first orders of the legs that came due together, for one broker: reserved and
    written ahead in one transaction, sent one by one (each with its own client order id),
    followed for at most ``follow_ms``."""

    orders: Annotated[list[PlaceOrderRequest], Field(min_length=1, max_length=MAX_BATCH_LEGS)]
    """Each a leg's first order, with its reservation; in the order the legs came due."""
    follow_ms: Annotated[int, Field(ge=0)]
    """Follow the orders at most this long; one still working then is returned working, and
    its leg follows it on its own (so a slow order holds up no other leg)."""


class SliceLegResult(Model):
    """How one order of a slice ended, or that it is still the leg's to follow: what the
    per-order activity's result or error would have said, per leg."""

    client_order_id: str
    outcome: OrderOutcome | None = None
    """The ledger's last state of the order (terminal unless ``working``)."""
    rejected: str | None = None
    """The broker's rejection text, verbatim."""
    refused: DenialReason | None = None
    """Our own last gate refused to send it (halted, paused): never sent."""
    denied: DenialReason | None = None
    """Its reservation was denied (limits reached since planning): never sent."""
    detail: str = ""
    """Why it was refused or denied."""
    failure: str | None = None
    """The ledger could not book the broker's report of it (a bug to investigate)."""
    working: bool = False
    """Still working at the broker, or sent without an answer (the broker may hold it): the
    leg follows it with ``place_and_follow_order`` (``resume``), which asks first."""


class SliceOutcome(Model):
    results: list[SliceLegResult]
    """One per order of the request, in its order."""


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
    entry_deadline: datetime | None = None
    """When the signal's entries stop leaving (``orchestrator.domain.expiry``); ``None``:
    never (an entry TTL of 0 and no ``valid_until``)."""


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
    entry_deadline: datetime | None = None
    """When the signal's entries stop leaving (``orchestrator.domain.expiry``); ``None``:
    never (an entry TTL of 0 and no ``valid_until``)."""


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
    legs: list[LegOrder]
    """Without their rationale: the plan keeps it (the signal's history re-derives it)."""
    reserve: list[Identifier]
    started_at: datetime
    denials: list[Denial] = []
    """Accounts of this slice the plan denied: the batch reports them, so a large signal's
    whole report lives in its batches (the signal's own result is then a summary)."""
    entry_deadline: datetime | None = None
    """When the signal's entries stop leaving (``orchestrator.domain.expiry``); ``None``:
    never (an entry TTL of 0 and no ``valid_until``)."""


class LegBatchResult(Model):
    accounts: list[AccountReport]


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
    positions_open: int = 0
    """Signals closed, not archived yet: a keeper of their positions still runs (the signal is
    archived with its whole story once every position is closed)."""

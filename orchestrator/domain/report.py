"""Where each account ended: its leg's status, its line of the signal's report, what a
completion or a reroute did, and the report itself.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from orchestrator.domain.planning.decisions import DelayRationale, SizeRationale
from orchestrator.domain.positions import Contract, Position
from orchestrator.domain.values import DenialReason, Identifier, Model, Side, SymbolName


class LegStatus(StrEnum):
    WAITING = "WAITING"
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


class CompletionStop(StrEnum):
    COMPLETED = "COMPLETED"
    DUST = "DUST"
    """The remainder is below the min lot or not a lot-step multiple: recorded, not sent."""
    ATTEMPTS_EXHAUSTED = "ATTEMPTS_EXHAUSTED"
    DEADLINE = "DEADLINE"
    REJECTED = "REJECTED"
    STOPPED_BY_OPERATOR = "STOPPED_BY_OPERATOR"
    """Halted, or the account paused or reduce-only: no further completion order was sent."""
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    """The signal's entry deadline passed: no further completion order was sent."""


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
    broker: Identifier | None = None
    broker_symbol: SymbolName | None = None
    contract: Contract | None = None
    """The traded account's contract (what its position is valued with)."""
    position: Position | None = None
    """The position its fills opened, as it stood when the line was written."""


class SignalStatus(StrEnum):
    """Where a signal is (its ``SignalStatus`` search attribute and its report's status)."""

    SUBMITTED = "SUBMITTED"
    PLANNING = "PLANNING"
    EXECUTING = "EXECUTING"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


class SignalReport(Model):
    signal_id: Identifier
    symbol: SymbolName
    side: Side
    reference_price: Decimal
    plan_version: int
    status: SignalStatus
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
    are the batch children's results (``orchestrator.services.reports.full_report`` joins them)."""


RerouteResult.model_rebuild()

AccountReport.model_rebuild()

"""The activities workflows call, as classes of definitions: workflows call them by method
(``workflow.execute_activity_method(Execution.place_and_follow_order, ...)``), so a rename or a
changed argument fails at type-check time, not at run time. The worker registers the
implementations in ``activities/``, subclasses that override every method with the same
definition (a test holds each implementation to its contract).

Nothing here runs: a method called on these classes themselves raises."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity

from orchestrator.domain.actions import AccountOutcome
from orchestrator.domain.book import BookSnapshot
from orchestrator.domain.contracts.actions import (
    ActionInput,
    ActionTargets,
    DeliverRequest,
    QuoteAnswer,
    QuoteRequest,
    StopEntriesRequest,
    StopEntriesResult,
)
from orchestrator.domain.contracts.operators import (
    ActionReceipt,
    ActionRecorded,
    CancellationRequest,
    KillSwitch,
    KillSwitchResult,
)
from orchestrator.domain.contracts.payloads import (
    ArchiveRequest,
    ArchiveResult,
    CancelOrderRequest,
    PlaceOrderRequest,
    PlaceSliceRequest,
    SettleLegRequest,
    SliceOutcome,
    SnapshotRequest,
)
from orchestrator.domain.contracts.positions import (
    CloseOutcome,
    CloseRequest,
    EntryFillsRequest,
    OrderNews,
    PositionFill,
    PositionsRecord,
    ProtectionOutcome,
    ProtectionRequest,
    WatchRequest,
)
from orchestrator.domain.contracts.sync import (
    FlattenRequest,
    FlattenResult,
    SyncRequest,
    SyncResult,
)
from orchestrator.domain.correlation import CorrelationRequest, CorrelationResult
from orchestrator.domain.orders import OrderOutcome
from orchestrator.domain.settings import ServiceSettings


def _contract() -> NotImplementedError:
    return NotImplementedError("an activity contract: the worker runs its implementation")


class Execution:
    """A signal's execution: the worker's settings, the book, its correlation, and every order
    (database and broker). Blocking calls, run on the worker's thread pool."""

    @activity.defn
    def service_settings(self) -> ServiceSettings:
        """The settings this worker plans and executes signals with."""
        raise _contract()

    @activity.defn
    def load_snapshot(self, request: SnapshotRequest) -> BookSnapshot:
        """The book for one signal, in pages when large; with its correlation when asked and it
        fits."""
        raise _contract()

    @activity.defn
    def compute_correlation(self, request: CorrelationRequest) -> CorrelationResult:
        """The accounts' correlation, in pages when large."""
        raise _contract()

    @activity.defn
    def place_and_follow_order(self, request: PlaceOrderRequest) -> OrderOutcome:
        """Reserve (when asked), pass the last gate, write the order, send it once whatever the
        retries, and follow it to a terminal state."""
        raise _contract()

    @activity.defn
    def place_and_follow_slice(self, request: PlaceSliceRequest) -> SliceOutcome:
        """The first orders of legs due together: reserve and write them all ahead in one
        transaction, send each once whatever the retries (paced per broker), follow them for a
        while; one result per leg."""
        raise _contract()

    @activity.defn
    def cancel_order(self, request: CancelOrderRequest) -> OrderOutcome | None:
        """Cancel what the broker holds under a client order id; book it; settle the leg."""
        raise _contract()

    @activity.defn
    def settle_leg(self, request: SettleLegRequest) -> None:
        """Close a leg's risk reservation once its orders are over."""
        raise _contract()


class Control:
    """Operator control from inside a workflow: the Temporal client and the database."""

    @activity.defn
    async def record_operator_action(self, receipt: ActionReceipt) -> ActionRecorded:
        """Record a workflow's receipt of an operator action, once, with the sender's identity."""
        raise _contract()

    @activity.defn
    async def apply_kill_switch(self, request: KillSwitch) -> KillSwitchResult:
        """Persist the kill switch (or lift it) and send it to every other running signal."""
        raise _contract()

    @activity.defn
    async def cancellation_request(self, workflow_id: str) -> CancellationRequest:
        """Who asked Temporal to cancel the calling workflow, and why."""
        raise _contract()


class Positions:
    """The protective and closing orders of a signal's positions, and the ledger's record of
    them. Blocking calls (database and broker), on the worker's thread pool."""

    @activity.defn
    def protect(self, request: ProtectionRequest) -> list[ProtectionOutcome]:
        """Make each position's stop and take-profit at the broker exactly what its target
        says: placed, replaced (cancel/replace where the broker can) or cancelled."""
        raise _contract()

    @activity.defn
    def check_orders(self, request: WatchRequest) -> list[OrderNews]:
        """The protective orders that filled (more) or ended since the keeper last knew, with
        every execution; booked in the ledger."""
        raise _contract()

    @activity.defn
    def close_positions(self, request: CloseRequest) -> list[CloseOutcome]:
        """Close positions (or part of them) at market and follow each order to its end."""
        raise _contract()

    @activity.defn
    def entry_fills(self, request: EntryFillsRequest) -> list[PositionFill]:
        """What each account's entry orders in the signal filled, in all, as the ledger has
        it (the keeper's check, once the legs are done, that no filled quantity was missed)."""
        raise _contract()

    @activity.defn
    def quotes(self, request: QuoteRequest) -> list[QuoteAnswer]:
        """The broker's current bid and ask for each position's symbol, where it gives one."""
        raise _contract()

    @activity.defn
    def record_positions(self, record: PositionsRecord) -> None:
        """Write the positions as the keeper holds them, their closing fills, and what
        closing did to each account (open positions, committed risk, margin, today's loss),
        each closing fill once."""
        raise _contract()


class Actions:
    """An action's steps outside its workflow: the ledger's positions, and the signal and the
    keepers it reaches through the Temporal client (async, on the worker's event loop)."""

    @activity.defn
    async def action_targets(self, request: ActionInput) -> ActionTargets:
        """The keepers and open positions the action is for, whether its signal still
        executes, or why it cannot be done."""
        raise _contract()

    @activity.defn
    async def stop_entries(self, request: StopEntriesRequest) -> StopEntriesResult:
        """Cancel a signal still executing and wait for its report: the keepers it started."""
        raise _contract()

    @activity.defn
    async def deliver(self, request: DeliverRequest) -> list[AccountOutcome]:
        """Hand the action to one keeper (its ``act`` update) and return what it did; nothing
        when the keeper never started or has ended (no open position there)."""
        raise _contract()


class Archive:
    """Keeping closed signals' histories past the server's retention."""

    @activity.defn
    async def archive_closed_signals(self, request: ArchiveRequest) -> ArchiveResult:
        """Export, verify and audit the signals closed long enough, not yet archived."""
        raise _contract()


class AccountSync:
    """Account state from the broker: read, reconciled with the ledger, checked against the
    account's limits."""

    @activity.defn
    def sync_accounts(self, request: SyncRequest) -> SyncResult:
        """Read each account of the broker (money and positions), write its state with its
        time and source, reset today's realized loss at the trading-day boundary, reconcile
        its positions with the ledger and act on mismatches and breached limits (reduce-only).
        Blocking, on the thread pool of the worker holding the broker's session."""
        raise _contract()

    @activity.defn
    async def flatten_account(self, request: FlattenRequest) -> FlattenResult:
        """Submit a FLATTEN of the account (its limits say ``on_breach: flatten``); once,
        whatever the retries (the action's id)."""
        raise _contract()


CONTRACTS: tuple[type, ...] = (Execution, Control, Positions, Actions, Archive, AccountSync)


def activity_name(definition: Callable[..., Any]) -> str:
    """The name an activity of these contracts runs under: its method's (what its history
    records as the activity type)."""
    return definition.__name__

"""The activities of one signal's execution, as methods of a class built by the worker.

They touch the database and blocking broker clients, so they are plain ``def`` methods run on
the worker's thread pool. Each is safe to retry: snapshots and correlation only read, the risk
reservation is idempotent per (signal, account), and orders are identified by their client
order id, which the broker is asked about before anything is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TypeVar

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory, CancelledError

from activities.order_slice import OrderSlice
from activities.order_steps import Pace, Pulse, admit, apply, book, send
from orchestrator.adapters.brokers.base import Broker, BrokerOrder
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.domain import limits, paging
from orchestrator.domain.book import BookSnapshot
from orchestrator.domain.contracts.activities import Execution
from orchestrator.domain.contracts.payloads import (
    CancelOrderRequest,
    ErrorType,
    PlaceOrderRequest,
    PlaceSliceRequest,
    SettleLegRequest,
    SliceOutcome,
    SnapshotRequest,
)
from orchestrator.domain.correlate import correlate
from orchestrator.domain.correlation import CorrelationRequest, CorrelationResult
from orchestrator.domain.errors import BrokerUnavailable, InvalidOrderTransition
from orchestrator.domain.orders import TERMINAL, OrderOutcome, OrderStatus
from orchestrator.domain.settings import ServiceSettings
from orchestrator.domain.values import Identifier

SNAPSHOT = "snapshot"
CORRELATION = "correlation"
"""Kinds of stored planning input."""


class ExecutionActivities(Execution):
    """The execution activities (see :class:`~orchestrator.domain.contracts.activities.Execution`)
    on the ledger and a broker."""

    def __init__(
        self,
        db: Database,
        broker: Broker,
        *,
        service: ServiceSettings,
        poll_interval_s: float = 0.2,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._db = db
        self._broker = broker
        self._service = service
        self._poll_interval_s = poll_interval_s
        self._clock = clock or (lambda: datetime.now(UTC))
        self._pace = Pace(service.execution.broker_orders_per_s)

    @property
    def db(self) -> Database:
        return self._db

    @property
    def broker(self) -> Broker:
        return self._broker

    @property
    def pace(self) -> Pace:
        """This worker's pace of new orders to its broker: entries and the keepers' orders
        share it."""
        return self._pace

    @activity.defn
    def service_settings(self) -> ServiceSettings:
        """The settings this worker plans and executes signals with (its environment's)."""
        return self._service

    @activity.defn
    def load_snapshot(self, request: SnapshotRequest) -> BookSnapshot:
        """The book for one signal. With a run id, a book too large for one payload is read
        once, stored, and served page by page (``page`` of ``pages``). With ``correlate``, a
        book of one page also comes with its accounts' correlation when both fit together."""
        returns = None
        with self._db.transaction() as session:
            if request.run_id is None:
                pages = [repository.load_snapshot(session, request, self._clock())]
            else:
                stored = repository.planning_input_page(
                    session, request.run_id, SNAPSHOT, request.page
                )
                if stored is not None:
                    return BookSnapshot.model_validate_json(stored)
                now = self._clock()
                pages = paging.snapshot_pages(repository.load_snapshot(session, request, now))
                if len(pages) > 1:
                    bodies = [p.model_dump_json() for p in pages]
                    repository.store_planning_input(session, request.run_id, SNAPSHOT, bodies, now)
            if request.correlate is not None and len(pages) == 1:
                ids = [a.account_id for a in pages[0].accounts]
                returns = repository.load_returns(session, ids, request.correlate.lookback_days)
        if request.correlate is not None and returns is not None:
            return _with_correlation(pages[0], request.correlate, *returns)
        return _page(pages, request.page)

    @activity.defn
    def compute_correlation(self, request: CorrelationRequest) -> CorrelationResult:
        """Correlate the accounts' returns. With a run id, a result too large for one payload
        is computed once, stored, and served page by page; without account ids, the accounts
        are those of the run's stored snapshot."""
        account_ids = request.account_ids
        with self._db.transaction() as session:
            if request.run_id is not None:
                stored = repository.planning_input_page(
                    session, request.run_id, CORRELATION, request.page
                )
                if stored is not None:
                    return CorrelationResult.model_validate_json(stored)
                if account_ids is None:
                    account_ids = [
                        a.account_id
                        for body in repository.planning_input_pages(
                            session, request.run_id, SNAPSHOT
                        )
                        for a in _AccountIds.model_validate_json(body).accounts
                    ]
            if account_ids is None:
                raise ApplicationError(
                    "correlation needs account ids or a run with a stored snapshot",
                    non_retryable=True,
                )
            days, returns = repository.load_returns(session, account_ids, request.lookback_days)
        result = _correlate(account_ids, request, days, returns)
        if request.run_id is None:
            return result
        pages = paging.correlation_pages(result)
        if len(pages) > 1:
            with self._db.transaction() as session:
                repository.store_planning_input(
                    session,
                    request.run_id,
                    CORRELATION,
                    [p.model_dump_json() for p in pages],
                    self._clock(),
                )
        return _page(pages, request.page)

    @activity.defn
    def place_and_follow_order(self, request: PlaceOrderRequest) -> OrderOutcome:
        """Place the order (once, whatever the retries) and follow it to a terminal state.

        Raises a non-retryable ``BrokerRejected`` error carrying the broker's text verbatim
        when the broker refuses the order.
        """
        pulse = Pulse()
        try:
            # On a retry (or a slice's order it could not finish), ask first: after a timeout
            # or a crash the order may already be at the broker, and must be followed, not
            # abandoned. (Submitting is idempotent on the client order id too; asking first
            # also covers weaker brokers.)
            state = None
            if activity.info().attempt > 1 or request.resume:
                state = self._broker.status(request.client_order_id)
            if state is None:
                self._pass_gate_and_record_intent(request)
                pulse.beat()
                state = send(self._broker, self._pace, request)
            outcome = self._book(request, state)
            while state.status not in TERMINAL:
                activity.heartbeat(str(outcome.filled_quantity))
                activity.wait_for_cancelled_sync(self._poll_interval_s)
                if activity.is_cancelled():
                    cancelled = self._broker.cancel(request.client_order_id) or state
                    self._book(request, cancelled)
                    raise CancelledError("order cancelled at the broker: leg cancelled")
                current = self._broker.status(request.client_order_id)
                if current is None:
                    raise BrokerUnavailable(
                        f"broker lost track of {request.client_order_id}; will ask again"
                    )
                state = current
                outcome = self._book(request, state)
        except BrokerUnavailable as exc:
            raise ApplicationError(str(exc), type=ErrorType.BROKER_UNAVAILABLE) from exc
        except InvalidOrderTransition as exc:
            raise ApplicationError(
                str(exc), type=ErrorType.LEDGER_INCONSISTENT, non_retryable=True
            ) from exc
        if outcome.status == OrderStatus.REJECTED.value:
            text = outcome.reject_text or "rejected without a reason"
            # A broker's refusal is a business outcome, not a fault: BENIGN keeps it out of
            # error logs and failure metrics.
            raise ApplicationError(
                text,
                text,
                type=ErrorType.BROKER_REJECTED,
                non_retryable=True,
                category=ApplicationErrorCategory.BENIGN,
            )
        return outcome

    @activity.defn
    def place_and_follow_slice(self, request: PlaceSliceRequest) -> SliceOutcome:
        """The first orders of legs due together (see :mod:`activities.order_slice`)."""
        return OrderSlice(
            self._db, self._broker, self._pace, self._clock, self._poll_interval_s
        ).run(request)

    def _pass_gate_and_record_intent(self, request: PlaceOrderRequest) -> None:
        """:func:`~activities.order_steps.admit` in a transaction of its own; a denied
        reservation or a refusal raises its non-retryable error."""
        with self._db.transaction() as session:
            barred = admit(session, request, self._clock())
        if barred is None:
            return
        reason, detail = barred.reason, barred.detail
        raise ApplicationError(
            f"{reason}: {detail}",
            reason.value,
            detail,
            type=ErrorType.RESERVATION_DENIED if barred.denied else ErrorType.ORDER_REFUSED,
            non_retryable=True,
            category=ApplicationErrorCategory.BENIGN,
        )

    @activity.defn
    def cancel_order(self, request: CancelOrderRequest) -> OrderOutcome | None:
        """Cancel whatever the broker holds under the client order id and book the result.

        ``None`` when the broker never had the order (nothing to cancel)."""
        try:
            state = self._broker.cancel(request.client_order_id)
        except BrokerUnavailable as exc:
            raise ApplicationError(str(exc), type=ErrorType.BROKER_UNAVAILABLE) from exc
        now = self._clock()
        with self._db.transaction() as session:
            outcome = None if state is None else apply(session, state, now)
            repository.settle_reservation(session, request.signal_id, request.account_id, now)
        return outcome

    @activity.defn
    def settle_leg(self, request: SettleLegRequest) -> None:
        """Close the leg's risk reservation once its completion is over."""
        with self._db.transaction() as session:
            repository.settle_reservation(
                session, request.signal_id, request.account_id, self._clock()
            )

    def _book(self, request: PlaceOrderRequest, state: BrokerOrder) -> OrderOutcome:
        """:func:`~activities.order_steps.book` in one unit of work."""
        with self._db.transaction() as session:
            return book(session, request, state, self._clock())

    def all(self) -> list[Callable[..., object]]:
        return [
            self.service_settings,
            self.load_snapshot,
            self.compute_correlation,
            self.place_and_follow_order,
            self.place_and_follow_slice,
            self.cancel_order,
            self.settle_leg,
        ]


def _with_correlation(
    snapshot: BookSnapshot,
    settings: CorrelationRequest,
    days: list[date],
    returns: dict[str, dict[date, Decimal]],
) -> BookSnapshot:
    """The snapshot with its accounts' correlation, computed as ``compute_correlation`` would
    for them; the snapshot alone if both would not fit in one page."""
    result = _correlate([a.account_id for a in snapshot.accounts], settings, days, returns)
    combined = snapshot.model_copy(update={"correlation": result})
    return combined if paging.json_size(combined) <= limits.PAGE_BYTES else snapshot


def _correlate(
    account_ids: list[str],
    settings: CorrelationRequest,
    days: list[date],
    returns: dict[str, dict[date, Decimal]],
) -> CorrelationResult:
    """The one call of ``correlate`` both activities make, with the request's settings."""
    return correlate(
        account_ids,
        days,
        returns,
        threshold=settings.threshold,
        min_observations=settings.min_observations,
        max_peers=settings.max_peers,
    )


class _AccountId(BaseModel):
    account_id: Identifier


class _AccountIds(BaseModel):
    """A stored snapshot page read for its account ids only: the other fields of the page and
    of its accounts are skipped, not validated into models the correlation never reads."""

    accounts: list[_AccountId]


P = TypeVar("P")


def _page(pages: list[P], page: int) -> P:
    if not 0 <= page < len(pages):
        raise ApplicationError(f"page {page} of {len(pages)} asked for", non_retryable=True)
    return pages[page]

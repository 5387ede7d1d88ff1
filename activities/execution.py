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
from typing import Any, TypeVar

from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory, CancelledError

from orchestrator.adapters.brokers.base import Broker, BrokerOrder, OrderTicket
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.domain import limits, paging
from orchestrator.domain.book import BookSnapshot
from orchestrator.domain.contracts.activities import Execution
from orchestrator.domain.contracts.payloads import (
    CancelOrderRequest,
    ErrorType,
    PlaceOrderRequest,
    SettleLegRequest,
    SnapshotRequest,
)
from orchestrator.domain.correlate import correlate
from orchestrator.domain.correlation import CorrelationRequest, CorrelationResult
from orchestrator.domain.errors import BrokerUnavailable, InvalidOrderTransition
from orchestrator.domain.orders import TERMINAL, OrderOutcome, OrderStatus
from orchestrator.domain.settings import ServiceSettings
from orchestrator.domain.values import DenialReason

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

    @property
    def db(self) -> Database:
        return self._db

    @property
    def broker(self) -> Broker:
        return self._broker

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
                        for a in BookSnapshot.model_validate_json(body).accounts
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
        pulse = _Pulse()
        try:
            # On a retry, ask first: after a timeout or a crash the order may already be at
            # the broker, and must be followed, not abandoned. (Submitting is idempotent on
            # the client order id too; asking first also covers weaker brokers.)
            state = None
            if activity.info().attempt > 1:
                state = self._broker.status(request.client_order_id)
            if state is None:
                self._pass_gate_and_record_intent(request)
                pulse.beat()
                state = self._broker.submit(_ticket(request))
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

    def _pass_gate_and_record_intent(self, request: PlaceOrderRequest) -> None:
        """In one transaction: reserve the leg's risk when the request says so, re-check the
        kill switch and the account's pause, then write the order to the ledger before the
        broker sees it. A refusal writes no order and gives the leg's reserved risk back (a
        completion settles its leg itself); a denied reservation reserves nothing."""
        now = self._clock()
        with self._db.transaction() as session:
            fresh = False
            if request.reservation is not None:
                reserved = repository.reserve_risk(session, request.reservation, now, order=request)
                if not reserved.reserved:
                    denial = reserved.denial or DenialReason.LEG_CLOSED
                    raise ApplicationError(
                        f"{denial}: {reserved.detail}",
                        denial.value,
                        reserved.detail,
                        type=ErrorType.RESERVATION_DENIED,
                        non_retryable=True,
                        category=ApplicationErrorCategory.BENIGN,
                    )
                # Reserved just now, in this transaction, after the same checks as the gate's,
                # and the order written with it.
                fresh = reserved.detail != repository.ALREADY_RESERVED
            refusal = (
                None
                if fresh
                else repository.order_gate(session, request.signal_id, request.account_id)
            )
            if refusal is None:
                if not fresh:
                    repository.record_order_intent(session, request, now)
                return
            if request.settles_leg:
                repository.settle_reservation(session, request.signal_id, request.account_id, now)
        reason, detail = refusal
        raise ApplicationError(
            f"{reason}: {detail}",
            reason.value,
            detail,
            type=ErrorType.ORDER_REFUSED,
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
            outcome = None if state is None else self._apply(session, state, now)
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
        """Bring the ledger to the broker's state in one unit of work. When the order ends,
        the leg's reservation is settled in the same transaction — unless the order filled
        only partly: a completion follows and settles the leg itself."""
        now = self._clock()
        with self._db.transaction() as session:
            if state.status in TERMINAL and request.settles_leg:
                return repository.book_and_settle(
                    session,
                    state.client_order_id,
                    signal_id=request.signal_id,
                    account_id=request.account_id,
                    **_report(state),
                    now=now,
                )
            return self._apply(session, state, now)

    @staticmethod
    def _apply(session: Session, state: BrokerOrder, now: datetime) -> OrderOutcome:
        return repository.apply_broker_report(
            session, state.client_order_id, **_report(state), now=now
        )

    def all(self) -> list[Callable[..., object]]:
        return [
            self.service_settings,
            self.load_snapshot,
            self.compute_correlation,
            self.place_and_follow_order,
            self.cancel_order,
            self.settle_leg,
        ]


class _Pulse:
    """Heartbeats an order activity needs before it starts following the order: one only once
    a third of the heartbeat timeout has passed since the attempt started. An order filled at
    once sends none (each costs a round trip through the event loop and a server write); a
    slow ledger or broker still beats well before the timeout would fail the attempt."""

    def __init__(self) -> None:
        info = activity.info()
        self._started = info.started_time
        timeout = info.heartbeat_timeout
        self._due_after = None if timeout is None else timeout / 3

    def beat(self) -> None:
        if self._due_after is None:
            return
        if datetime.now(UTC) - self._started >= self._due_after:
            activity.heartbeat()
            self._started = datetime.now(UTC)


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


P = TypeVar("P")


def _page(pages: list[P], page: int) -> P:
    if not 0 <= page < len(pages):
        raise ApplicationError(f"page {page} of {len(pages)} asked for", non_retryable=True)
    return pages[page]


def _report(state: BrokerOrder) -> dict[str, Any]:
    """A broker's report of an order, as the ledger's booking functions take it."""
    return {
        "status": state.status,
        "broker_order_id": state.broker_order_id,
        "executions": [
            (e.execution_id, e.quantity, e.price, e.executed_at) for e in state.executions
        ],
        "reject_text": state.reject_text,
    }


def _ticket(request: PlaceOrderRequest) -> OrderTicket:
    return OrderTicket(
        client_order_id=request.client_order_id,
        account_id=request.account_id,
        symbol=request.broker_symbol,
        side=request.side,
        order_type=request.order_type,
        quantity=request.quantity,
        limit_price=request.limit_price,
        reference_price=request.reference_price,
    )

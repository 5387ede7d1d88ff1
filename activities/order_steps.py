"""The steps every entry order takes, whichever activity places it (one order, or a slice of
them): the last gate and the write-ahead, the broker's ticket, booking a broker's report, the
pace of sends to a broker, and the heartbeats an attempt owes before it follows its orders."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session
from temporalio import activity

from orchestrator.adapters.brokers.base import Broker, BrokerOrder, OrderTicket
from orchestrator.adapters.db import repository
from orchestrator.domain.contracts.payloads import PlaceOrderRequest, ReserveRiskResult
from orchestrator.domain.orders import TERMINAL, OrderOutcome
from orchestrator.domain.values import DenialReason


@dataclass(frozen=True)
class Barred:
    """Why an order may not leave: its reservation was denied (``denied``), or the last gate
    refused it (kill switch, pause, reduce-only, leg closed)."""

    reason: DenialReason
    detail: str
    denied: bool


def admit(
    session: Session,
    request: PlaceOrderRequest,
    now: datetime,
    *,
    reserved: ReserveRiskResult | None = None,
) -> Barred | None:
    """In the caller's transaction: reserve the leg's risk when the request says so, re-check
    the kill switch and the account's pause, then write the order to the ledger before the
    broker sees it. ``None``: admitted (the order is written ahead). A refusal writes no order
    and gives the leg's reserved risk back (a completion settles its leg itself); a denied
    reservation reserves nothing. ``reserved``: the request's reservation, already decided
    (and written, with the order) by :func:`admit_slice`."""
    fresh = False
    if request.reservation is not None:
        if reserved is None:
            reserved = repository.reserve_risk(session, request.reservation, now, order=request)
        if not reserved.reserved:
            return Barred(reserved.denial or DenialReason.LEG_CLOSED, reserved.detail, True)
        # Reserved just now, in this transaction, after the same checks as the gate's, and
        # the order written with it.
        fresh = reserved.detail != repository.ALREADY_RESERVED
    refusal = (
        None if fresh else repository.order_gate(session, request.signal_id, request.account_id)
    )
    if refusal is None:
        if not fresh:
            repository.record_order_intent(session, request, now)
        return None
    if request.settles_leg:
        repository.settle_reservation(session, request.signal_id, request.account_id, now)
    reason, detail = refusal
    return Barred(reason, detail, False)


def admit_slice(
    session: Session, requests: list[PlaceOrderRequest], now: datetime, pulse: Pulse | None = None
) -> dict[str, Barred | None]:
    """:func:`admit` for every order of a slice, in account order, by client order id. Their
    reservations are taken together where the ledger can (PostgreSQL: a constant number of
    round trips for the slice, see :func:`~orchestrator.adapters.db.repository.reserve_slice`);
    a leg reserved already (a retry) passes the gate and is written ahead on its own."""
    ordered = sorted(requests, key=lambda o: (o.account_id, o.client_order_id))
    reserving = [o for o in ordered if o.reservation is not None]
    decided = repository.reserve_slice(session, reserving, now) if reserving else None
    barred: dict[str, Barred | None] = {}
    for request in ordered:
        cid = request.client_order_id
        reserved = None if decided is None else decided.get(cid)
        barred[cid] = admit(session, request, now, reserved=reserved)
        if pulse is not None:
            pulse.beat("admitting")
    return barred


def book(
    session: Session, request: PlaceOrderRequest, state: BrokerOrder, now: datetime
) -> OrderOutcome:
    """Bring the ledger to the broker's state of the order. When it ends, the leg's
    reservation is settled in the same transaction — unless the order filled only partly: a
    completion follows and settles the leg itself."""
    if state.status in TERMINAL and request.settles_leg:
        return repository.book_and_settle(
            session,
            state.client_order_id,
            signal_id=request.signal_id,
            account_id=request.account_id,
            **report_of(state),
            now=now,
        )
    return apply(session, state, now)


def book_slice(
    session: Session,
    requests: dict[str, PlaceOrderRequest],
    states: dict[str, BrokerOrder],
    now: datetime,
    pulse: Pulse | None = None,
) -> dict[str, OrderOutcome]:
    """:func:`book` for every report of a slice, by client order id. The reports that end an
    order settling its leg are booked together where the ledger can (PostgreSQL: a constant
    number of round trips, see :func:`~orchestrator.adapters.db.repository.book_slice`);
    the others, and every report where it cannot, one by one."""
    ending = [
        repository.LegReport(cid, requests[cid].signal_id, requests[cid].account_id, report_of(s))
        for cid, s in states.items()
        if s.status in TERMINAL and requests[cid].settles_leg
    ]
    batched = repository.book_slice(session, ending, now) if ending else None
    outcomes: dict[str, OrderOutcome] = {}
    for cid, state in states.items():
        done = None if batched is None else batched.get(cid)
        outcomes[cid] = done if done is not None else book(session, requests[cid], state, now)
        if pulse is not None:
            pulse.beat("booking")
    return outcomes


def apply(session: Session, state: BrokerOrder, now: datetime) -> OrderOutcome:
    return repository.apply_broker_report(
        session, state.client_order_id, **report_of(state), now=now
    )


def report_of(state: BrokerOrder) -> dict[str, Any]:
    """A broker's report of an order, as the ledger's booking functions take it."""
    return {
        "status": state.status,
        "broker_order_id": state.broker_order_id,
        "executions": [
            (e.execution_id, e.quantity, e.price, e.executed_at) for e in state.executions
        ],
        "reject_text": state.reject_text,
    }


def ticket_of(request: PlaceOrderRequest) -> OrderTicket:
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


class Pace:
    """At most ``per_second`` new orders to one broker from this worker, whichever activity
    sends them (0: unpaced). Each send takes the next free instant; a caller waits for its own
    in its thread, so concurrent activities share the pace first come, first served."""

    def __init__(self, per_second: float) -> None:
        self._gap = 1 / per_second if per_second > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._gap:
            return
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next)
            self._next = at + self._gap
        if at > now:
            time.sleep(at - now)


def send(broker: Broker, pace: Pace, request: PlaceOrderRequest) -> BrokerOrder:
    """Send one order to the broker at the broker's pace. The one place an entry order
    leaves (the fault suite kills the worker around it)."""
    pace.wait()
    return broker.submit(ticket_of(request))


class Pulse:
    """Heartbeats an order activity needs before it starts following its orders: one only once
    a third of the heartbeat timeout has passed since the attempt started (or the last beat).
    An order filled at once sends none (each costs a round trip through the event loop and a
    server write); a slow ledger or broker still beats well before the timeout would fail the
    attempt."""

    def __init__(self) -> None:
        info = activity.info()
        self._started = info.started_time
        timeout = info.heartbeat_timeout
        self._due_after = None if timeout is None else timeout / 3

    def beat(self, *details: Any) -> None:
        if self._due_after is None:
            return
        if datetime.now(UTC) - self._started >= self._due_after:
            activity.heartbeat(*details)
            self._started = datetime.now(UTC)

"""A slice: the first orders of the legs that came due together, for one broker, placed by one
activity (``Execution.place_and_follow_slice``).

1. On a retry, the broker is asked about every client order id first: what it holds was sent
   by the attempt before and is followed, never sent again.
2. One transaction reserves every other leg's risk, passes each through the last gate and
   writes its order ahead (:func:`~activities.order_steps.admit`, in account order so two
   slices never wait on each other's locks). A leg denied or refused there is only that leg's
   result; the others go on.
3. Each admitted order is sent, at the broker's pace, with its own client order id; a send
   that fails without an answer leaves that order to its leg, which asks the broker first.
4. The broker's answers are booked in one transaction, then the working orders followed (one
   status poll each per interval, what changed booked together) for at most ``follow_ms``:
   an order still working then is handed back to its leg to follow on its own.

A cancellation (the legs were cancelled) stops sending, cancels the slice's working orders at
the broker and books them; each leg then cancels its own id as well (as after one order)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from activities.order_steps import Pace, Pulse, admit_slice, book, book_slice, send
from orchestrator.adapters.brokers.base import Broker, BrokerOrder
from orchestrator.adapters.db.engine import Database
from orchestrator.domain.contracts.payloads import (
    ErrorType,
    PlaceOrderRequest,
    PlaceSliceRequest,
    SliceLegResult,
    SliceOutcome,
)
from orchestrator.domain.errors import BrokerUnavailable, InvalidOrderTransition
from orchestrator.domain.orders import TERMINAL, OrderOutcome, OrderStatus


class OrderSlice:
    """One attempt at one slice (see the module's docstring)."""

    def __init__(
        self,
        db: Database,
        broker: Broker,
        pace: Pace,
        clock: Callable[[], datetime],
        poll_interval_s: float,
    ) -> None:
        self._db = db
        self._broker = broker
        self._pace = pace
        self._clock = clock
        self._poll_interval_s = poll_interval_s
        self._results: dict[str, SliceLegResult] = {}
        self._states: dict[str, BrokerOrder] = {}
        self._outcomes: dict[str, OrderOutcome] = {}

    def run(self, request: PlaceSliceRequest) -> SliceOutcome:
        orders = {order.client_order_id: order for order in request.orders}
        pulse = Pulse()
        if activity.info().attempt > 1:
            self._ask_first(orders.values())
        self._admit([o for cid, o in orders.items() if cid not in self._states], pulse)
        sent = 0
        for cid, order in orders.items():
            if cid in self._results or cid in self._states:
                continue
            if activity.is_cancelled():
                break
            try:
                self._states[cid] = send(self._broker, self._pace, order)
            except BrokerUnavailable:
                # The broker may or may not hold it: its leg asks before sending again.
                self._results[cid] = SliceLegResult(client_order_id=cid, working=True)
            sent += 1
            pulse.beat(f"sent {sent}")
        self._book(orders, self._states, pulse)
        if activity.is_cancelled():
            self._cancel(orders)
        self._follow(orders, request.follow_ms / 1000)
        return SliceOutcome(results=[self._result(cid) for cid in orders])

    def _ask_first(self, orders: Iterable[PlaceOrderRequest]) -> None:
        """A retry: what the broker already holds was sent by an earlier attempt."""
        try:
            for order in orders:
                state = self._broker.status(order.client_order_id)
                if state is not None:
                    self._states[order.client_order_id] = state
        except BrokerUnavailable as exc:
            raise ApplicationError(str(exc), type=ErrorType.BROKER_UNAVAILABLE) from exc

    def _admit(self, orders: list[PlaceOrderRequest], pulse: Pulse) -> None:
        """Reserve, gate and write ahead every order in one transaction, the account state
        rows locked in account order."""
        if not orders:
            return
        with self._db.transaction() as session:
            admitted = admit_slice(session, orders, self._clock(), pulse)
        for cid, barred in admitted.items():
            if barred is not None:
                self._results[cid] = SliceLegResult(
                    client_order_id=cid,
                    denied=barred.reason if barred.denied else None,
                    refused=None if barred.denied else barred.reason,
                    detail=barred.detail,
                )

    def _book(
        self,
        orders: dict[str, PlaceOrderRequest],
        states: dict[str, BrokerOrder],
        pulse: Pulse | None = None,
    ) -> None:
        """Book the broker's reports in one transaction; should one not fit the order's
        lifecycle, each is booked on its own and only that order fails."""
        if not states:
            return
        now = self._clock()
        try:
            with self._db.transaction() as session:
                booked = book_slice(session, orders, states, now, pulse)
            self._outcomes.update(booked)
            return
        except InvalidOrderTransition:
            pass
        for cid, state in states.items():
            try:
                with self._db.transaction() as session:
                    self._outcomes[cid] = book(session, orders[cid], state, now)
            except InvalidOrderTransition as exc:
                self._results[cid] = SliceLegResult(client_order_id=cid, failure=str(exc))

    def _working(self) -> list[str]:
        return [
            cid
            for cid, state in self._states.items()
            if state.status not in TERMINAL and cid not in self._results
        ]

    def _follow(self, orders: dict[str, PlaceOrderRequest], follow_s: float) -> None:
        deadline = time.monotonic() + follow_s
        while (working := self._working()) and time.monotonic() < deadline:
            activity.heartbeat(f"{len(orders) - len(working)} of {len(orders)} settled")
            activity.wait_for_cancelled_sync(self._poll_interval_s)
            if activity.is_cancelled():
                self._cancel(orders)
            changed: dict[str, BrokerOrder] = {}
            for cid in working:
                try:
                    current = self._broker.status(cid)
                except BrokerUnavailable:
                    continue  # asked again next round, or by its leg
                if current is not None and _moved(self._states[cid], current):
                    changed[cid] = self._states[cid] = current
            self._book(orders, changed)

    def _cancel(self, orders: dict[str, PlaceOrderRequest]) -> None:
        """The legs are cancelled: no order of the slice stays working at the broker."""
        cancelled: dict[str, BrokerOrder] = {}
        for cid in self._working():
            try:
                cancelled[cid] = self._broker.cancel(cid) or self._states[cid]
            except BrokerUnavailable:
                continue  # each leg cancels its own order once the slice has ended
        self._book(orders, cancelled)
        raise CancelledError("slice cancelled: its working orders cancelled at the broker")

    def _result(self, cid: str) -> SliceLegResult:
        result = self._results.get(cid)
        if result is not None:
            return result
        outcome = self._outcomes[cid]
        if outcome.status == OrderStatus.REJECTED.value:
            text = outcome.reject_text or "rejected without a reason"
            return SliceLegResult(client_order_id=cid, outcome=outcome, rejected=text)
        working = self._states[cid].status not in TERMINAL
        return SliceLegResult(client_order_id=cid, outcome=outcome, working=working)


def _moved(before: BrokerOrder, after: BrokerOrder) -> bool:
    return after.status != before.status or len(after.executions) != len(before.executions)

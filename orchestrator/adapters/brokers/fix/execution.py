"""The FIX broker: orders and questions over one session, in a book shared with its callbacks.

Threading. QuickFIX calls the application (``fromApp``, ``toApp``, …) on its own thread while
holding that session's mutex; our activities call :class:`FixBroker` from the worker's thread
pool. What this relies on, and how it stays safe:

- Every piece of order state lives in the :class:`~.book.Book`, guarded by one
  ``threading.Condition``. Callbacks (:mod:`.callbacks`) update it and ``notify_all``; callers
  wait on it with a deadline.
- Nothing calls into QuickFIX while holding that lock, and callbacks never send. So the only
  lock order is "QuickFIX session mutex → our lock", and no cycle is possible.
- ``quickfix-py`` releases the GIL inside its C++ calls (it links ``PyEval_SaveThread``) and
  takes it for callbacks, so an activity thread blocked in ``sendToTarget`` on the session
  mutex does not starve the callback that holds it.
- Callbacks must not raise anything but QuickFIX's own exceptions (:mod:`.session` logs what
  escapes a handler). The initiator lives as long as the process (:mod:`.session` too).

Safety rules (each has a test):

- Never send while the session is down: QuickFIX's ``sendToTarget`` would accept the message,
  store it and deliver it after the next logon. :class:`FixNotConnected` (a retryable
  :class:`BrokerUnavailable`) is raised instead.
- A NewOrderSingle or OrderCancelReplaceRequest that QuickFIX would *resend* (PossDupFlag=Y,
  answering the peer's resend request) is dropped in ``toApp`` with ``DoNotSend``, so the peer
  gets a gap fill: an order the peer never saw is forgotten here and placed again by the
  activity's retry, never replayed late. Resent status requests and questions about the account
  are dropped the same way; a resent cancel is let through.
- A reject for a duplicate ClOrdID (OrdRejReason 6, or CxlRejReason 6 for a replace) means
  "already there": the adapter asks for that order's status instead of reporting a rejection.
- After a restart, an order this process has not seen is looked up with an OrderStatusRequest
  by ClOrdID (side and symbol come from the order lookup, i.e. the ledger).
- A question about the account (positions, collateral, mass status) that gets no complete
  answer in time, or a refusal, is ``None``: unknown, never "flat" or "no orders".
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import quickfix as fix

from orchestrator.adapters.brokers.base import (
    AccountReading,
    BrokerOrder,
    BrokerPosition,
    KnownOrder,
    OrderTicket,
    Quote,
    ReplaceNotSupported,
    ReplaceRejected,
)
from orchestrator.adapters.brokers.fix.book import Book, Inquiry, InquiryKind, ReplaceAttempt
from orchestrator.adapters.brokers.fix.callbacks import OrderLookup, SessionEvents
from orchestrator.adapters.brokers.fix.config import FixSessionConfig
from orchestrator.adapters.brokers.fix.messages import (
    cancel_request,
    collateral_inquiry,
    mass_status_request,
    new_order_single,
    positions_request,
    replace_request,
    status_request,
)
from orchestrator.adapters.brokers.fix.parsing import OrderRef, OrderState, advance, filled
from orchestrator.adapters.brokers.fix.reports import positions_of
from orchestrator.adapters.brokers.fix.session import start_initiator, stop_initiator
from orchestrator.domain.errors import BrokerUnavailable
from orchestrator.domain.orders import TERMINAL, OrderStatus

log = logging.getLogger(__name__)


class FixNotConnected(BrokerUnavailable):
    """The FIX session is not logged on: nothing was sent. Retry later with the same id."""


class FixBroker:
    """A :class:`orchestrator.adapters.brokers.base.Broker` over one FIX session.

    Call :meth:`start` once (it connects in the background and keeps reconnecting), and
    :meth:`stop` before the process exits.
    """

    def __init__(
        self,
        config: FixSessionConfig,
        *,
        order_lookup: OrderLookup | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config
        self._lookup = order_lookup or (lambda _id: None)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._book = Book()
        self._events = SessionEvents(config, self._book, lookup=self._lookup, clock=self._clock)
        self._session_id: object | None = None
        self._initiator: object | None = None
        self._cancel_seq = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; :class:`FixSessionInUse` if this process already has an
        initiator for this session id."""
        cfg = self.config
        # Set before the initiator starts: the callbacks send on this session id.
        self._session_id = fix.SessionID(cfg.begin_string, cfg.sender_comp_id, cfg.target_comp_id)
        self._events.session_id = self._session_id
        self._initiator = start_initiator(cfg, self)

    def stop(self) -> None:
        """Log out and stop the initiator. It stays referenced until the process exits."""
        stop_initiator(self, self._initiator)
        self._initiator = None
        with self._book.changed:
            self._book.logged_on = False
            self._book.session_up = False
            self._book.changed.notify_all()

    def is_logged_on(self) -> bool:
        with self._book.changed:
            return self._book.logged_on

    def wait_logged_on(self, timeout_s: float) -> bool:
        """Block until the session is logged on; ``False`` after ``timeout_s`` seconds."""
        with self._book.changed:
            return self._book.changed.wait_for(lambda: self._book.logged_on, timeout_s)

    def wait_logged_out(self, timeout_s: float) -> bool:
        """Block until the session is down; ``False`` after ``timeout_s`` seconds."""
        with self._book.changed:
            return self._book.changed.wait_for(lambda: not self._book.logged_on, timeout_s)

    @property
    def logons(self) -> int:
        """How many times the session has logged on since :meth:`start`."""
        with self._book.changed:
            return self._book.logons

    # -- the Broker protocol -------------------------------------------------------------------

    def submit(self, ticket: OrderTicket) -> BrokerOrder:
        """Send a NewOrderSingle and wait for the first answer (ack, fill or reject).

        Idempotent on the client order id within this process. A duplicate-ClOrdID reject from
        the counterparty is answered with a status request: the order that exists is returned.
        Raises :class:`FixNotConnected` when the session is down (nothing sent) and
        :class:`BrokerUnavailable` when no answer came in time (the order may exist: ask with
        :meth:`status` before sending again).
        """
        cid = ticket.client_order_id
        with self._book.changed:
            existing = self._book.orders.get(cid)
            if existing is not None and not existing.unknown:
                return existing.view()
            self._require_logged_on()
            order = OrderState(
                OrderRef(cid, ticket.account_id, ticket.symbol, ticket.side, ticket.quantity)
            )
            self._book.orders[cid] = order
        try:
            self._send(new_order_single(ticket, self.config, self._clock()))
        except FixNotConnected:
            with self._book.changed:
                if self._book.orders.get(cid) is order:
                    del self._book.orders[cid]  # never sent: nothing to follow
            raise
        order = self._await_answer(cid, "NewOrderSingle")
        if order.unknown:
            raise BrokerUnavailable(f"{cid} was not delivered (gap-filled); send it again")
        if order.duplicate:
            # "Already there": the counterparty holds an order under this ClOrdID. Follow it.
            found = self._request_status(order.ref)
            if found is None:
                raise BrokerUnavailable(f"{cid} is a duplicate, yet its status is unknown")
            return found
        return order.view()

    def status(self, client_order_id: str) -> BrokerOrder | None:
        """The order as last reported. An order this process has no answer for yet is looked
        up with an OrderStatusRequest (when the counterparty answers those); ``None`` when the
        counterparty does not know it, or we never recorded it."""
        with self._book.changed:
            order = self._book.orders.get(client_order_id)
            if order is not None and order.answered and not order.unknown:
                return order.view()
        if not self.config.status_requests:
            return None if order is None or order.unknown else order.view()
        ref = order.ref if order is not None else self._lookup(client_order_id)
        if ref is None:
            return None
        return self._request_status(ref)

    def cancel(self, client_order_id: str) -> BrokerOrder | None:
        """Send an OrderCancelRequest for what is left and wait (bounded) for the outcome.

        A terminal order is returned as it is; an order the counterparty does not know is
        ``None``. If no answer comes in time the order is returned as last reported."""
        current = self.status(client_order_id)
        if current is None or current.status in TERMINAL:
            return current
        with self._book.changed:
            self._require_logged_on()
            order = self._book.orders[client_order_id]
            self._cancel_seq += 1
            cancel_id = f"{client_order_id}/C{self._cancel_seq}"
            self._book.cancel_ids[cancel_id] = client_order_id
            ref = order.ref
        self._send(cancel_request(ref, cancel_id, self.config, self._clock()))
        deadline = time.monotonic() + self.config.ack_timeout_s
        with self._book.changed:
            self._book.changed.wait_for(
                lambda: order.status in TERMINAL or cancel_id not in self._book.cancel_ids,
                max(0.0, deadline - time.monotonic()),
            )
            self._book.cancel_ids.pop(cancel_id, None)
            return order.view()

    def open_orders(self, account_id: str) -> list[BrokerOrder]:
        """Orders of the account seen by this process that are not terminal (what the venue
        holds: :meth:`working_orders`)."""
        with self._book.changed:
            return [
                o.view()
                for o in self._book.orders.values()
                if o.ref.account_id == account_id and o.status not in TERMINAL and not o.unknown
            ]

    def replace(self, client_order_id: str, ticket: OrderTicket) -> BrokerOrder:
        """OrderCancelReplaceRequest (35=G): ``ticket`` (new ClOrdID, quantity, limit or stop
        price) takes the place of the working order ``client_order_id``; waits for the answer.

        ``ticket.quantity`` is FIX's OrderQty: the order's total, what the old order already
        filled included (so a stop moved with its quantity unchanged keeps covering exactly the
        open rest, whatever filled meanwhile). The returned new order carries only its own
        fills; what the old one filled stays on it, and the old one ends CANCELLED (replaced).

        Idempotent on the new id. Raises :class:`ReplaceNotSupported` when the connection is
        configured without cancel/replace (nothing sent) or the counterparty refuses the message
        type; :class:`ReplaceRejected` when it refuses this replace (OrderCancelReject, or a
        reject of our message), with the old order as now known (it may have filled
        meanwhile); :class:`FixNotConnected` when the session is down; and
        :class:`BrokerUnavailable` when no answer came in time.
        """
        new_id = ticket.client_order_id
        if not self.config.cancel_replace:
            raise ReplaceNotSupported(
                f"FIX connection {self.config.name} is configured without cancel/replace "
                f"(cancel_replace: false): cancel {client_order_id} and submit anew"
            )
        with self._book.changed:
            existing = self._book.orders.get(new_id)
            if existing is not None and existing.answered and not existing.unknown:
                return existing.view()
        current = self.status(client_order_id)
        if current is None:
            raise ReplaceRejected(client_order_id, "the counterparty does not know it", None)
        if current.status in TERMINAL:
            raise ReplaceRejected(client_order_id, "the order has ended", current)
        with self._book.changed:
            self._require_logged_on()
            old = self._book.orders[client_order_id]
            message = replace_request(
                old.ref, old.broker_order_id, ticket, self.config, self._clock()
            )
            booked, booked_price = filled(old)
            ref = OrderRef(
                new_id,
                ticket.account_id,
                ticket.symbol,
                ticket.side,
                ticket.quantity,
                booked_quantity=booked,
                booked_price=booked_price,
            )
            new = self._book.orders[new_id] = OrderState(ref)
            attempt = self._book.replaces[new_id] = ReplaceAttempt(original=client_order_id)
        try:
            self._send(message)
        except FixNotConnected:
            self._forget_replacement(new_id, new, attempt)
            raise
        deadline = time.monotonic() + self.config.ack_timeout_s
        with self._book.changed:
            self._book.changed.wait_for(
                lambda: attempt.outcome is not None or not self._book.logged_on,
                max(0.0, deadline - time.monotonic()),
            )
            outcome, text = attempt.outcome, attempt.text
            old_view, new_view = old.view(), new.view()
        if outcome == "replaced":
            return new_view
        if outcome is None:
            # Sent, unanswered: the replace may yet happen. A late answer still settles it (a
            # resend of it is gap-filled instead: see to_app); a retry with the same new id
            # returns the replacement once it is known.
            raise BrokerUnavailable(
                f"no answer to OrderCancelReplaceRequest {new_id} from {self.config.name} "
                f"within {self.config.ack_timeout_s} s, or before the session dropped"
            )
        if outcome == "duplicate":
            return self._replacement_exists(new, old)
        self._forget_replacement(new_id, new, attempt)
        if outcome == "not_delivered":
            raise BrokerUnavailable(f"replace {new_id} was not delivered (gap-filled); send again")
        if outcome == "unsupported":
            raise ReplaceNotSupported(
                f"FIX connection {self.config.name} refused OrderCancelReplaceRequest as an "
                f"unsupported message ({text}): set cancel_replace: false for it; cancel "
                f"{client_order_id} and submit anew"
            )
        raise ReplaceRejected(client_order_id, text or "refused without a reason", old_view)

    def _replacement_exists(self, new: OrderState, old: OrderState) -> BrokerOrder:
        """The counterparty already has the new ClOrdID (an earlier attempt got through)."""
        found = self._request_status(new.ref) if self.config.status_requests else None
        if found is None:
            raise BrokerUnavailable(
                f"replacement {new.ref.client_order_id} is a duplicate, yet its status is unknown"
            )
        with self._book.changed:
            old.status = advance(old.status, OrderStatus.CANCELLED)
        return found

    def _forget_replacement(self, new_id: str, new: OrderState, attempt: ReplaceAttempt) -> None:
        """The replacement was never made: nothing to follow under its id."""
        with self._book.changed:
            if self._book.orders.get(new_id) is new:
                del self._book.orders[new_id]
            if self._book.replaces.get(new_id) is attempt:
                del self._book.replaces[new_id]

    def quote(self, account_id: str, symbol: str) -> Quote | None:
        """``None``: the adapter does not subscribe to market data (FIX MarketDataRequest is
        venue-specific, and QuickFIX's ``ordermatch`` parses it without answering)."""
        return None

    # -- questions about the account (FIX 4.4) -------------------------------------------------

    def positions(self, account_id: str) -> list[BrokerPosition] | None:
        """The account's positions from RequestForPositions (AN) → PositionReports (AP). An
        answer of "no positions" is ``[]``; no answer in time, a refusal (PosReqResult 4: not
        supported) or FIX 4.2 (which has no AN) is ``None``. See :mod:`.reports`."""
        inquiry = self._ask(
            "positions",
            account_id,
            lambda rid: positions_request(rid, account_id, self.config, self._clock()),
        )
        return None if inquiry is None else positions_of(inquiry)

    def account_state(self, account_id: str) -> AccountReading | None:
        """Balance, equity and free margin from CollateralInquiry (BB) → CollateralReport (BA):
        CashOutstanding, TotalNetValue and MarginExcess (see :mod:`.reports`). ``None`` when
        the counterparty does not answer, refuses, or the session is FIX 4.2."""
        inquiry = self._ask(
            "collateral", account_id, lambda rid: collateral_inquiry(rid, account_id, self.config)
        )
        return None if inquiry is None else inquiry.reading

    def open_orders_at_venue(self, account_id: str) -> list[BrokerOrder] | None:
        """The account's working orders as the counterparty lists them, for reconciliation:
        OrderMassStatusRequest (AF, all orders) → ExecutionReports with ExecType I. Includes
        orders this process (and the ledger) never saw. ``None`` when the counterparty does not
        answer in time, refuses, or the session is FIX 4.2 (which has no AF)."""
        inquiry = self._ask(
            "mass_status", account_id, lambda rid: mass_status_request(rid, account_id, self.config)
        )
        if inquiry is None:
            return None
        return [o for o in inquiry.orders.values() if o.status not in TERMINAL]

    def working_orders(
        self, account_id: str, known: Sequence[KnownOrder]
    ) -> list[BrokerOrder] | None:
        """Mass status (AF); without its answer (FIX 4.2, refused) one OrderStatusRequest (H)
        per order of ``known`` (blind to orders placed outside the system); ``None`` when a
        status request is refused or none may be sent (``status_requests: false``)."""
        listed = self.open_orders_at_venue(account_id)
        if listed is not None or not self.config.status_requests:
            return listed
        working = []
        for order in known:
            ref = OrderRef(
                order.client_order_id, account_id, order.symbol, order.side, order.quantity
            )
            found = self._request_status(ref)  # unanswered: BrokerUnavailable
            if self._book.orders[ref.client_order_id].status_refused:  # set before answered
                return None
            if found is not None and found.status not in TERMINAL:
                working.append(found)
        return working

    def _ask(
        self, kind: InquiryKind, account_id: str, write: Callable[[str], fix.Message]
    ) -> Inquiry | None:
        """Send one question and wait (bounded) for its complete answer; ``None`` without one.
        Raises :class:`FixNotConnected` when the session is down (nothing sent)."""
        if self.config.begin_string != "FIX.4.4":
            return None
        request_id = f"teo-{kind.replace('_', '-')}-{uuid.uuid4().hex[:16]}"
        with self._book.changed:
            self._require_logged_on()
            inquiry = self._book.inquiries[request_id] = Inquiry(kind, account_id)
        try:
            self._send(write(request_id))
        except FixNotConnected:
            with self._book.changed:
                del self._book.inquiries[request_id]
            raise
        deadline = time.monotonic() + self.config.ack_timeout_s
        with self._book.changed:
            self._book.changed.wait_for(
                lambda: inquiry.done or not self._book.logged_on,
                max(0.0, deadline - time.monotonic()),
            )
            del self._book.inquiries[request_id]
        if not inquiry.done or inquiry.failed:
            why = inquiry.failed or f"no complete answer within {self.config.ack_timeout_s} s"
            log.warning("FIX %s: %s of %s unknown: %s", self.config.name, kind, account_id, why)
            return None
        return inquiry

    # -- sending -------------------------------------------------------------------------------

    def _require_logged_on(self) -> None:
        if not self._book.logged_on:
            raise FixNotConnected(
                f"FIX session {self.config.name} is not logged on; nothing was sent"
            )

    def _send(self, message: fix.Message) -> None:
        # Checked again right before sending (without our lock held: QuickFIX takes its session
        # mutex, and its callbacks take our lock under that mutex). A session that drops after
        # this check gets the message stored and, on resend, dropped in toApp (a gap fill).
        if not self.is_logged_on():
            raise FixNotConnected(
                f"FIX session {self.config.name} is not logged on; nothing was sent"
            )
        try:
            fix.Session.sendToTarget(message, self._session_id)
        except fix.SessionNotFound as exc:
            raise FixNotConnected(f"FIX session {self.config.name} not found") from exc

    def _request_status(self, ref: OrderRef) -> BrokerOrder | None:
        """Ask the counterparty about one ClOrdID and wait for its answer."""
        cid = ref.client_order_id
        with self._book.changed:
            self._require_logged_on()
            order = self._book.orders.setdefault(cid, OrderState(ref))
            order.answered = order.unknown = order.duplicate = order.status_refused = False
        self._send(status_request(ref, self.config))
        order = self._await_answer(cid, "OrderStatusRequest")
        return None if order.unknown else order.view()

    def _await_answer(self, cid: str, what: str) -> OrderState:
        deadline = time.monotonic() + self.config.ack_timeout_s
        with self._book.changed:
            order = self._book.orders[cid]
            answered = self._book.changed.wait_for(
                lambda: order.answered or not self._book.logged_on,
                max(0.0, deadline - time.monotonic()),
            )
            if not order.answered and not self._book.logged_on:
                # Sent, then the session dropped. After the next logon the session layer
                # settles it: the peer's resend brings its answer, or its resend request for
                # our order becomes a gap fill and the order is forgotten (see to_app).
                raise BrokerUnavailable(
                    f"FIX session {self.config.name} dropped before {what} {cid} was answered"
                )
            if not answered:
                raise BrokerUnavailable(
                    f"no answer to {what} {cid} within {self.config.ack_timeout_s} s "
                    f"from {self.config.name}"
                )
            return order

    # -- QuickFIX's callbacks (SessionHandler), handled by :mod:`.callbacks` ---------------------

    def on_logon(self) -> None:
        self._events.on_logon()

    def on_logout(self) -> None:
        self._events.on_logout()

    def to_admin(self, message: fix.Message) -> None:
        self._events.to_admin(message)

    def from_admin(self, message: fix.Message) -> None:
        self._events.from_admin(message)

    def to_app(self, message: fix.Message) -> None:
        self._events.to_app(message)

    def from_app(self, message: fix.Message) -> None:
        self._events.from_app(message)

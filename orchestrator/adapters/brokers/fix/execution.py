"""The FIX broker: orders over one session, in a book that QuickFIX's callbacks and callers share.

Threading. QuickFIX calls the application (``fromApp``, ``toApp``, …) on its own thread while
holding that session's mutex; our activities call :class:`FixBroker` from the worker's thread
pool. What this relies on, and how it stays safe:

- Every piece of order state lives in :class:`_Book`, guarded by one ``threading.Condition``.
  Callbacks update it and ``notify_all``; callers wait on it with a deadline.
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
- A NewOrderSingle that QuickFIX would *resend* (PossDupFlag=Y, answering the peer's resend
  request) is dropped in ``toApp`` with ``DoNotSend``, so the peer gets a gap fill: an order the
  peer never saw is forgotten here and placed again by the activity's retry, never replayed
  late. Resent status requests are dropped the same way; a resent cancel is let through.
- A reject for a duplicate ClOrdID (OrdRejReason 6) means "already there": the adapter asks for
  that order's status instead of reporting a rejection.
- After a restart, an order this process has not seen is looked up with an OrderStatusRequest
  by ClOrdID (side and symbol come from the order lookup, i.e. the ledger).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import quickfix as fix

from orchestrator.adapters.brokers.base import (
    AccountReading,
    BrokerOrder,
    BrokerPosition,
    OrderTicket,
    Quote,
    ReplaceNotSupported,
)
from orchestrator.adapters.brokers.fix.config import FixSessionConfig
from orchestrator.adapters.brokers.fix.parsing import (
    CL_ORD_ID,
    MSG_SEQ_NUM,
    MSG_TYPE,
    ORIG_CL_ORD_ID,
    PASSWORD,
    POSS_DUP,
    TEST_REQ_ID,
    TEXT,
    USERNAME,
    OrderRef,
    OrderState,
    apply_execution_report,
    apply_rejection,
    apply_status_refused,
    cancel_request,
    field_of,
    header_field,
    new_order_single,
    probe_request,
    read_rejection,
    status_request,
)
from orchestrator.adapters.brokers.fix.session import start_initiator, stop_initiator
from orchestrator.domain.errors import BrokerUnavailable
from orchestrator.domain.orders import TERMINAL

log = logging.getLogger(__name__)


class FixNotConnected(BrokerUnavailable):
    """The FIX session is not logged on: nothing was sent. Retry later with the same id."""


OrderLookup = Callable[[str], OrderRef | None]
"""Finds an order we placed by its client order id (the worker reads the ledger)."""


@dataclass(slots=True)
class _Request:
    """An outgoing message we may need to match a session or business reject to."""

    msg_type: str
    client_order_id: str
    rejected: str | None = None


class _Book:
    """All order state, under one condition variable. Never held while calling QuickFIX."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.orders: dict[str, OrderState] = {}
        self.cancel_ids: dict[str, str] = {}
        """Cancel request ClOrdID → the order's ClOrdID."""
        self.by_seq: dict[int, _Request] = {}
        """Our outgoing MsgSeqNum → what it asked, to place a Reject (3) or (j)."""
        self.logged_on = False
        """Logged on *and* synchronised: the TestRequest we sent after logon was answered, so
        any resend or gap fill the logon triggered is behind us. Orders wait for this."""
        self.session_up = False
        """QuickFIX's own view: logged on, possibly still synchronising."""
        self.logons = 0
        self.probe: str | None = None
        """TestReqID of the post-logon TestRequest still unanswered."""


_MAX_TRACKED_SEQS = 100_000
"""Outgoing sequence numbers remembered to place a late Reject; the oldest are forgotten."""


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
        self._book = _Book()
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
        """Orders of the account seen by this process that are not terminal. (FIX has no
        portable "list my orders" request; a restarted process learns of older orders through
        :meth:`status`.)"""
        with self._book.changed:
            return [
                o.view()
                for o in self._book.orders.values()
                if o.ref.account_id == account_id and o.status not in TERMINAL and not o.unknown
            ]

    # -- sending -------------------------------------------------------------------------------

    def replace(self, client_order_id: str, ticket: OrderTicket) -> BrokerOrder:
        raise ReplaceNotSupported(f"{type(self).__name__} cannot cancel/replace yet")

    def quote(self, account_id: str, symbol: str) -> Quote | None:
        return None

    def positions(self, account_id: str) -> list[BrokerPosition] | None:
        return None

    def account_state(self, account_id: str) -> AccountReading | None:
        return None

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
            order.answered = order.unknown = order.duplicate = False
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

    # -- callbacks (QuickFIX's thread, session mutex held) ---------------------------------------

    def on_logon(self) -> None:
        # Not ready yet: a logon after a gap triggers a resend request, and an order sent
        # before that exchange is over would be resent as a possible duplicate and dropped.
        # The counterparty handles a TestRequest in sequence, after that exchange: its
        # Heartbeat marks the session ready. Sent from a thread of its own (callbacks never
        # send: see the module docstring).
        with self._book.changed:
            self._book.logons += 1
            self._book.session_up = True
            logon = self._book.logons
        log.info("FIX %s logged on; synchronising", self.config.name)
        threading.Thread(target=self._synchronise, args=(logon,), daemon=True).start()

    def _synchronise(self, logon: int) -> None:
        """Send TestRequests until one is answered, the session drops or logs on again. One
        can go unanswered: a TestRequest sent while the peer waits for our resend is covered by
        our gap fill (admin messages are never resent), so a later one is sent."""
        for attempt in range(1, 1000):
            probe = f"teo-ready-{logon}-{attempt}"
            with self._book.changed:
                book = self._book
                if book.logons != logon or book.logged_on or not book.session_up:
                    return
                book.probe = probe
            try:
                fix.Session.sendToTarget(probe_request(probe, self.config), self._session_id)
            except fix.SessionNotFound:
                return
            with self._book.changed:
                self._book.changed.wait_for(
                    lambda: (
                        self._book.logged_on
                        or not self._book.session_up
                        or self._book.logons != logon
                    ),
                    min(self.config.ack_timeout_s, 1.0),
                )

    def on_logout(self) -> None:
        log.info("FIX %s logged out", self.config.name)
        with self._book.changed:
            self._book.logged_on = False
            self._book.session_up = False
            self._book.probe = None
            self._book.changed.notify_all()

    def to_admin(self, message: fix.Message) -> None:
        if header_field(message, MSG_TYPE) != "A":
            return
        if self.config.username:
            message.setField(USERNAME, self.config.username)
        password = self.config.password()
        if password:
            message.setField(PASSWORD, password)

    def to_app(self, message: fix.Message) -> None:
        """Record what each outgoing MsgSeqNum asked; drop resends of orders (gap fill)."""
        msg_type = header_field(message, MSG_TYPE) or ""
        cid = field_of(message, CL_ORD_ID) or ""
        if header_field(message, POSS_DUP) == "Y" and msg_type in {"D", "H"}:
            if msg_type == "D":
                with self._book.changed:
                    order = self._book.orders.get(cid)
                    if order is not None and not order.answered:
                        # The peer asked for it again, so it never got it: forget it, so
                        # status() says unknown and the activity's retry places it afresh.
                        order.unknown = True
                        order.answered = True
                        self._book.changed.notify_all()
                log.warning("FIX %s: not resending order %s (gap fill)", self.config.name, cid)
            raise fix.DoNotSend()
        seq = header_field(message, MSG_SEQ_NUM)
        if seq is not None:
            target = cid
            if msg_type == "F":
                target = field_of(message, ORIG_CL_ORD_ID) or cid
            with self._book.changed:
                self._book.by_seq[int(seq)] = _Request(msg_type, target)
                if len(self._book.by_seq) > _MAX_TRACKED_SEQS:
                    del self._book.by_seq[next(iter(self._book.by_seq))]

    def from_admin(self, message: fix.Message) -> None:
        msg_type = header_field(message, MSG_TYPE)
        if msg_type == "3":
            self._on_reject(message, session_level=True)
        elif msg_type == "0" and field_of(message, TEST_REQ_ID) is not None:
            with self._book.changed:
                if field_of(message, TEST_REQ_ID) == self._book.probe:
                    self._book.probe = None
                    self._book.logged_on = True
                    self._book.changed.notify_all()
                    log.info("FIX %s ready", self.config.name)

    def from_app(self, message: fix.Message) -> None:
        msg_type = header_field(message, MSG_TYPE)
        if msg_type == "8":
            self._on_execution_report(message)
        elif msg_type == "9":
            self._on_cancel_reject(message)
        elif msg_type == "j":
            self._on_reject(message, session_level=False)

    def _on_execution_report(self, message: fix.Message) -> None:
        cid = field_of(message, CL_ORD_ID) or ""
        with self._book.changed:
            known = cid in self._book.orders or cid in self._book.cancel_ids
        if not known:
            # A report for an order this process has not seen: sent to the process before a
            # restart (resent now, or arriving late). The ledger knows it. Looked up outside
            # our lock; QuickFIX's session mutex is held, so this delays only this session.
            ref = self._lookup(field_of(message, ORIG_CL_ORD_ID) or cid)
            if ref is not None:
                with self._book.changed:
                    self._book.orders.setdefault(ref.client_order_id, OrderState(ref))
        with self._book.changed:
            original = self._book.cancel_ids.pop(cid, None)
            if original is None and cid not in self._book.orders:
                original = field_of(message, ORIG_CL_ORD_ID)
            order = self._book.orders.get(original or cid)
            if order is None:
                log.warning("FIX %s: report for unknown order %s", self.config.name, cid)
                return
            apply_execution_report(
                order, message, units_per_lot=self.config.units_per_lot, clock=self._clock
            )
            self._book.changed.notify_all()

    def _on_cancel_reject(self, message: fix.Message) -> None:
        cancel_id = field_of(message, CL_ORD_ID) or ""
        with self._book.changed:
            self._book.cancel_ids.pop(cancel_id, None)
            self._book.changed.notify_all()
        log.info(
            "FIX %s: cancel %s refused: %s", self.config.name, cancel_id, field_of(message, TEXT)
        )

    def _on_reject(self, message: fix.Message, *, session_level: bool) -> None:
        """A session Reject (3) or BusinessMessageReject (j) of one of our messages."""
        rejection = read_rejection(message)
        kind = "session reject" if session_level else "business reject"
        with self._book.changed:
            seq = rejection.ref_seq_num
            request = self._book.by_seq.get(seq) if seq is not None else None
            if request is None and not session_level:
                ref_id = rejection.ref_id
                order = self._book.orders.get(ref_id or "")
                request = _Request("D", ref_id) if order is not None and ref_id else None
            if request is None:
                log.warning(
                    "FIX %s: %s of an unknown message: %s", self.config.name, kind, rejection.text
                )
                return
            order = self._book.orders.get(request.client_order_id)
            if request.msg_type == "D" and order is not None:
                apply_rejection(order, rejection.text)
            elif request.msg_type == "H" and order is not None:
                log.warning("FIX %s: status request refused: %s", self.config.name, rejection.text)
                apply_status_refused(order)
            else:
                for cancel_id, target in list(self._book.cancel_ids.items()):
                    if target == request.client_order_id:
                        del self._book.cancel_ids[cancel_id]
            self._book.changed.notify_all()

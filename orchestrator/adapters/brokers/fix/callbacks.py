"""QuickFIX's callbacks for one session: what arrives updates the book, what leaves is recorded.

These run on QuickFIX's thread while it holds the session's mutex (see :mod:`.execution` for
the threading rules): they take the book's lock, update it, ``notify_all``, and never send,
except :meth:`SessionEvents.on_logon`'s readiness probe, sent from a thread of its own.

- ExecutionReport (8): the order's state and fills (:mod:`.parsing`); the outcome of a cancel
  or replace; one answer to a mass status request (:mod:`.reports`).
- OrderCancelReject (9): a cancel or replace refused; the order stands as it was.
- Reject (3), BusinessMessageReject (j): matched to what we sent by RefSeqNum.
- RequestForPositionsAck (AO), PositionReport (AP), CollateralInquiryAck (BG) and
  CollateralReport (BA): answers to inquiries (:mod:`.reports`).
- Resends (PossDupFlag=Y) of orders, replaces and questions are dropped in ``to_app``: the peer
  gets a gap fill instead of a late order (see :mod:`.execution`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import quickfix as fix

from orchestrator.adapters.brokers.base import BrokerOrder
from orchestrator.adapters.brokers.fix.book import Book, Inquiry, InquiryKind, Request
from orchestrator.adapters.brokers.fix.config import FixSessionConfig
from orchestrator.adapters.brokers.fix.messages import probe_request
from orchestrator.adapters.brokers.fix.parsing import (
    OrderRef,
    OrderState,
    advance,
    apply_execution_report,
    apply_rejection,
    apply_status_refused,
    field_of,
    filled,
    header_field,
    lots,
    read_rejection,
)
from orchestrator.adapters.brokers.fix.reports import (
    apply_collateral_ack,
    apply_collateral_report,
    apply_mass_status_report,
    apply_position_report,
    apply_positions_ack,
)
from orchestrator.adapters.brokers.fix.tags import (
    ACCOUNT,
    CL_ORD_ID,
    COLL_INQUIRY_ID,
    CUM_QTY,
    CXL_REJ_DUPLICATE_CL_ORD_ID,
    CXL_REJ_REASON,
    EXEC_TYPE,
    EXEC_TYPE_PENDING_REPLACE,
    LEAVES_QTY,
    MASS_STATUS_REQ_ID,
    MSG_SEQ_NUM,
    MSG_TYPE,
    ORD_REJ_DUPLICATE_ORDER,
    ORD_REJ_REASON,
    ORD_STATUS,
    ORDER_QTY,
    ORIG_CL_ORD_ID,
    PASSWORD,
    POS_REQ_ID,
    POSS_DUP,
    SIDE,
    SYMBOL,
    TEST_REQ_ID,
    TEXT,
    USERNAME,
)
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.values import Side

log = logging.getLogger(__name__)

OrderLookup = Callable[[str], OrderRef | None]
"""Finds an order we placed by its client order id (the worker reads the ledger). For a
replacement order, the ref's booked quantity includes what the orders it replaced filled."""

NOT_RESENT = frozenset({"D", "G", "H", "AN", "BB", "AF"})
"""Messages never resent late: orders and replaces (the caller retries them afresh) and
questions (their askers have stopped waiting). Cancels are resent: cancelling is always safe."""

INQUIRY_ID_TAG: dict[str, int] = {"AN": POS_REQ_ID, "BB": COLL_INQUIRY_ID, "AF": MASS_STATUS_REQ_ID}


class SessionEvents:
    """The session's callbacks, over the book the broker's callers share."""

    def __init__(
        self,
        config: FixSessionConfig,
        book: Book,
        *,
        lookup: OrderLookup,
        clock: Callable[[], datetime],
    ) -> None:
        self.config = config
        self.session_id: object | None = None
        """Set by the broker before the initiator starts: the readiness probe is sent on it."""
        self._book = book
        self._lookup = lookup
        self._clock = clock

    # -- session ---------------------------------------------------------------------------------

    def on_logon(self) -> None:
        # Not ready yet: a logon after a gap triggers a resend request, and an order sent
        # before that exchange is over would be resent as a possible duplicate and dropped.
        # The counterparty handles a TestRequest in sequence, after that exchange: its
        # Heartbeat marks the session ready. Sent from a thread of its own (callbacks never
        # send).
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
                fix.Session.sendToTarget(probe_request(probe, self.config), self.session_id)
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

    # -- out -------------------------------------------------------------------------------------

    def to_app(self, message: fix.Message) -> None:
        """Record what each outgoing MsgSeqNum asked; drop resends (gap fill) of orders,
        replaces and questions."""
        msg_type = header_field(message, MSG_TYPE) or ""
        cid = field_of(message, CL_ORD_ID) or ""
        target = cid
        if msg_type == "F":
            target = field_of(message, ORIG_CL_ORD_ID) or cid
        elif msg_type in INQUIRY_ID_TAG:
            target = field_of(message, INQUIRY_ID_TAG[msg_type]) or ""
        if header_field(message, POSS_DUP) == "Y" and msg_type in NOT_RESENT:
            self._forget_undelivered(msg_type, target)
            log.warning(
                "FIX %s: not resending %s %s (gap fill)", self.config.name, msg_type, target
            )
            raise fix.DoNotSend()
        seq = header_field(message, MSG_SEQ_NUM)
        if seq is not None:
            with self._book.changed:
                self._book.remember(int(seq), Request(msg_type, target))

    def _forget_undelivered(self, msg_type: str, target: str) -> None:
        """The peer asked for this message again, so it never got it: an order or replace is
        forgotten (status() says unknown, and the caller's retry sends it afresh); a question
        gets no answer."""
        with self._book.changed:
            order = self._book.orders.get(target)
            if msg_type in {"D", "G"} and order is not None and not order.answered:
                order.unknown = True
                order.answered = True
            attempt = self._book.replaces.pop(target, None) if msg_type == "G" else None
            if attempt is not None:
                attempt.outcome = "not_delivered"
            inquiry = self._book.inquiries.get(target) if msg_type in INQUIRY_ID_TAG else None
            if inquiry is not None:
                inquiry.fail("not delivered (gap-filled after a disconnect)")
            self._book.changed.notify_all()

    # -- in --------------------------------------------------------------------------------------

    def from_app(self, message: fix.Message) -> None:
        msg_type = header_field(message, MSG_TYPE)
        if msg_type == "8":
            self._on_execution_report(message)
        elif msg_type == "9":
            self._on_cancel_reject(message)
        elif msg_type == "j":
            self._on_reject(message, session_level=False)
        elif msg_type in {"AO", "AP"}:
            self._on_answer(message, "positions", POS_REQ_ID)
        elif msg_type in {"BG", "BA"}:
            self._on_answer(message, "collateral", COLL_INQUIRY_ID)

    def _on_execution_report(self, message: fix.Message) -> None:
        cid = field_of(message, CL_ORD_ID) or ""
        orig = field_of(message, ORIG_CL_ORD_ID)
        with self._book.changed:
            known = cid in self._book.orders or cid in self._book.cancel_ids
        if not known and cid:
            # A report for an order this process has not seen: sent by the process before a
            # restart (resent now, or arriving late), or a replacement it made. The ledger knows
            # it. Looked up outside our lock; QuickFIX's session mutex is held, so this delays
            # only this session.
            ref = self._lookup(cid) or (self._lookup(orig) if orig else None)
            if ref is not None:
                with self._book.changed:
                    self._book.orders.setdefault(ref.client_order_id, OrderState(ref))
        with self._book.changed:
            original = self._book.cancel_ids.pop(cid, None)
            if original is None and cid not in self._book.orders:
                original = orig
            order = self._book.orders.get(original or cid)
            if cid in self._book.replaces and not self._settle_replace(cid, message):
                self._book.changed.notify_all()
                return
            if order is not None:
                apply_execution_report(
                    order, message, units_per_lot=self.config.units_per_lot, clock=self._clock
                )
            mass_id = field_of(message, MASS_STATUS_REQ_ID)
            inquiry = self._book.inquiries.get(mass_id) if mass_id else None
            if inquiry is not None and inquiry.kind == "mass_status":
                view = order.view() if order is not None else self._foreign_order(message)
                apply_mass_status_report(inquiry, message, view)
            elif order is None:
                log.warning("FIX %s: report for unknown order %s", self.config.name, cid)
            self._book.changed.notify_all()

    def _settle_replace(self, new_id: str, message: fix.Message) -> bool:
        """A report about the replacement ``new_id`` while its replace waits: settle the
        attempt. Whether the report applies to the new order (not for a pending replace or a
        refusal). Book lock held."""
        attempt = self._book.replaces[new_id]
        ord_status = field_of(message, ORD_STATUS)
        if EXEC_TYPE_PENDING_REPLACE in {field_of(message, EXEC_TYPE), ord_status}:
            return False  # not decided yet
        if ord_status == "8":
            duplicate = field_of(message, ORD_REJ_REASON) == ORD_REJ_DUPLICATE_ORDER
            attempt.outcome = "duplicate" if duplicate else "rejected"
            attempt.text = field_of(message, TEXT) or "replace rejected without a reason"
            del self._book.replaces[new_id]
            return False
        # Replaced. The original is done (what it filled stays on it: the replacement's CumQty
        # counts it, so it is carried over as already booked); read at this moment, as the
        # venue reports the original's fills before it answers the replace.
        new, old = self._book.orders.get(new_id), self._book.orders.get(attempt.original)
        if new is not None and old is not None:
            quantity, price = filled(old)
            new.ref = dataclasses.replace(new.ref, booked_quantity=quantity, booked_price=price)
            old.status = advance(old.status, OrderStatus.CANCELLED)
        attempt.outcome = "replaced"
        del self._book.replaces[new_id]
        return True

    def _foreign_order(self, message: fix.Message) -> BrokerOrder | None:
        """An order the venue reports that this process and the ledger do not know."""
        cid = field_of(message, CL_ORD_ID)
        if not cid:
            return None
        units = self.config.units_per_lot
        quantity = lots(field_of(message, ORDER_QTY), units)
        if quantity is None:
            cum = lots(field_of(message, CUM_QTY), units) or Decimal(0)
            quantity = cum + (lots(field_of(message, LEAVES_QTY), units) or Decimal(0))
        ref = OrderRef(
            client_order_id=cid,
            account_id=field_of(message, ACCOUNT) or "",
            symbol=field_of(message, SYMBOL) or "",
            side=Side.BUY if field_of(message, SIDE) == "1" else Side.SELL,
            quantity=quantity,
        )
        state = OrderState(ref)
        apply_execution_report(state, message, units_per_lot=units, clock=self._clock)
        return state.view()

    def _on_cancel_reject(self, message: fix.Message) -> None:
        """A cancel or a replace refused (OrderCancelReject, 9): the order stands as it was."""
        cid = field_of(message, CL_ORD_ID) or ""
        text = field_of(message, TEXT)
        with self._book.changed:
            self._book.cancel_ids.pop(cid, None)
            attempt = self._book.replaces.pop(cid, None)
            if attempt is not None:
                duplicate = field_of(message, CXL_REJ_REASON) == CXL_REJ_DUPLICATE_CL_ORD_ID
                attempt.outcome = "duplicate" if duplicate else "rejected"
                attempt.text = text or "replace refused without a reason"
            self._book.changed.notify_all()
        log.info("FIX %s: cancel/replace %s refused: %s", self.config.name, cid, text)

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
                request = Request("D", ref_id) if order is not None and ref_id else None
            if request is None:
                log.warning(
                    "FIX %s: %s of an unknown message: %s", self.config.name, kind, rejection.text
                )
                return
            order = self._book.orders.get(request.ref_id)
            inquiry = self._book.inquiries.get(request.ref_id)
            if request.msg_type == "D" and order is not None:
                apply_rejection(order, rejection.text)
            elif request.msg_type == "G":
                attempt = self._book.replaces.pop(request.ref_id, None)
                if attempt is not None:
                    unsupported = rejection.unsupported and not session_level
                    attempt.outcome = "unsupported" if unsupported else "rejected"
                    attempt.text = rejection.text
            elif request.msg_type == "H" and order is not None:
                log.warning("FIX %s: status request refused: %s", self.config.name, rejection.text)
                apply_status_refused(order)
            elif request.msg_type in INQUIRY_ID_TAG and inquiry is not None:
                inquiry.fail(f"{kind}: {rejection.text}")
            else:
                for cancel_id, target in list(self._book.cancel_ids.items()):
                    if target == request.ref_id:
                        del self._book.cancel_ids[cancel_id]
            self._book.changed.notify_all()

    def _on_answer(self, message: fix.Message, kind: InquiryKind, id_tag: int) -> None:
        """An answer to a positions request or a collateral inquiry."""
        request_id = field_of(message, id_tag) or ""
        msg_type = header_field(message, MSG_TYPE)
        with self._book.changed:
            inquiry: Inquiry | None = self._book.inquiries.get(request_id)
            if inquiry is None or inquiry.kind != kind or inquiry.done:
                log.info("FIX %s: %s for no waiting request", self.config.name, msg_type)
                return
            if msg_type == "AO":
                apply_positions_ack(inquiry, message)
            elif msg_type == "AP":
                apply_position_report(inquiry, message, self.config.units_per_lot)
            elif msg_type == "BG":
                apply_collateral_ack(inquiry, message)
            else:
                apply_collateral_report(inquiry, message, self._clock)
            self._book.changed.notify_all()

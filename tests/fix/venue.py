"""The test suite's own FIX 4.4 (or 4.2) counterparty: a QuickFIX acceptor with a small book.

For the scenarios QuickFIX's example programs cannot produce. It runs like them, inside its own
network namespace (``tests.fix.netns_peer``; QuickFIX acceptors listen on every interface).
Orders, prices, fills and positions live in :class:`tests.fix.venue_book.VenueBook` (see there
for when orders fill). Over FIX:

- NewOrderSingle (D): a ClOrdID seen before is rejected as a duplicate (OrdRejReason 6), as real
  venues do; otherwise acknowledged (NEW), then filled as the book says: a limit order at once
  in two halves (or rests, see the book), a stop order once the price trades through it, a
  market order at once at the last price (rejected, "No market price", before one is set).
- OrderCancelRequest (F): cancelled (ExecType 4, ClOrdID = the cancel's); an unknown or ended
  order gets an OrderCancelReject (9).
- OrderCancelReplaceRequest (G): replaced (ExecType 5, ClOrdID = the new one, OrigClOrdID = the
  old one, CumQty carried over); refused with an OrderCancelReject (9) when the order is
  unknown or ended, the new ClOrdID exists (CxlRejReason 6) or the quantity is below what filled.
- OrderStatusRequest (H): answered with ExecType I and the order's OrdStatus, CumQty and AvgPx;
  an unknown ClOrdID with OrdStatus 8 and OrdRejReason 5 (unknown order).
- FIX 4.4 only: RequestForPositions (AN) → RequestForPositionsAck (AO) and one PositionReport
  (AP) per symbol, the net of the account's fills (SOD 0, TQ the day's trades); none → AO with
  PosReqResult 2. CollateralInquiry (BB) → CollateralReport (BA) with the values the test set
  (CashOutstanding, TotalNetValue, MarginExcess), else CollateralInquiryAck (BG) rejected.
  OrderMassStatusRequest (AF) → one ExecutionReport (ExecType I) per working order.

The test steers it with lines on stdin (``FixPeer.tell``), each journalled when done:

- ``price SYMBOL PX``: the market trades at PX; resting orders it trades through fill;
- ``collateral ACCOUNT CASH NET_VALUE MARGIN_EXCESS``: what BB answers for the account;
- ``positions unsupported``: AN is answered with PosReqResult 4 (not supported) from now on.

Every application message that arrives, and every control line, is appended to
``journal.jsonl`` (type, ClOrdID, PossDupFlag, what was done), so a test can prove what the
venue received.

    python -m tests.fix.venue CONFIG WORKDIR [FILL_DELAY_S]

With ``FILL_DELAY_S``, limit orders are acknowledged at once and filled that many seconds
later (from a timer thread), so a client can be stopped while its order works.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import quickfix as fix

from tests.fix.venue_book import LIMIT, MARKET, STOP, WORKING, Fill, VenueBook, VenueOrder

Out = list[tuple[fix.Message, fix.SessionID]]
"""Messages to send once the book's lock is released, each with its session."""


def _get(message: fix.FieldMap, tag: int, default: str = "") -> str:
    return str(message.getField(tag)) if message.isSetField(tag) else default


def _decimal(message: fix.FieldMap, tag: int) -> Decimal | None:
    return Decimal(message.getField(tag)) if message.isSetField(tag) else None


class Venue(fix.Application):  # type: ignore[misc]
    def __init__(self, journal: Path, fill_delay_s: float = 0) -> None:
        super().__init__()
        self._fill_delay_s = fill_delay_s
        self._journal = journal.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self._book = VenueBook()
        self._collateral: dict[str, tuple[str, str, str]] = {}
        self._positions_supported = True

    def onCreate(self, session_id: fix.SessionID) -> None:
        return None

    def onLogon(self, session_id: fix.SessionID) -> None:
        return None

    def onLogout(self, session_id: fix.SessionID) -> None:
        return None

    def toAdmin(self, message: fix.Message, session_id: fix.SessionID) -> None:
        return None

    def fromAdmin(self, message: fix.Message, session_id: fix.SessionID) -> None:
        return None

    def toApp(self, message: fix.Message, session_id: fix.SessionID) -> None:
        return None

    def fromApp(self, message: fix.Message, session_id: fix.SessionID) -> None:
        msg_type = _get(message.getHeader(), 35)
        handlers: dict[str, Callable[[fix.Message, fix.SessionID, Out], str]] = {
            "D": self._new_order,
            "F": self._cancel,
            "G": self._replace,
            "H": self._status,
            "AN": self._positions,
            "BB": self._collateral_report,
            "AF": self._mass_status,
        }
        handler = handlers.get(msg_type)
        out: Out = []
        with self._lock:
            result = handler(message, session_id, out) if handler else "ignored"
            # Journal first, answer second: once the client sees the answer, the journal
            # already says what arrived.
            self._write(msg_type, _get(message, 11), _get(message.getHeader(), 43, "N"), result)
        _send(out)

    def control(self, line: str) -> None:
        """A line from the test (see the module docstring)."""
        words = line.split()
        out: Out = []
        with self._lock:
            if words[:1] == ["price"] and len(words) == 3:
                for fill in self._book.set_price(words[1], Decimal(words[2])):
                    self._report_fill(fill, out)
            elif words[:1] == ["collateral"] and len(words) == 5:
                self._collateral[words[1]] = (words[2], words[3], words[4])
            elif words == ["positions", "unsupported"]:
                self._positions_supported = False
        # Sent before journalled: once the test sees the command done, what it caused is on
        # the wire ahead of the answer to anything the test sends next.
        _send(out)
        with self._lock:
            self._write("control", "", "N", line)

    def _write(self, msg_type: str, cid: str, poss_dup: str, result: str) -> None:
        entry = {"type": msg_type, "cl_ord_id": cid, "poss_dup": poss_dup, "result": result}
        self._journal.write(json.dumps(entry) + "\n")
        self._journal.flush()

    # -- orders --------------------------------------------------------------------------------

    def _new_order(self, message: fix.Message, session: fix.SessionID, out: Out) -> str:
        cid = _get(message, 11)
        if cid in self._book.orders:
            existing = self._book.orders[cid]
            self._report(
                existing, out, ord_status="8", exec_type="8", reject_reason="6", to=session
            )
            return "duplicate"
        order = VenueOrder(
            cl_ord_id=cid,
            order_id=self._book.next_id("V"),
            account=_get(message, 1),
            symbol=_get(message, 55),
            side=_get(message, 54),
            ord_type=_get(message, 40),
            qty=Decimal(message.getField(38)),
            price=_decimal(message, 44),
            stop_px=_decimal(message, 99),
            owner=session,
        )
        if order.ord_type == STOP and order.stop_px is None:
            order.status = "8"
            self._report(order, out, ord_status="8", exec_type="8", text="StopPx missing")
            return "rejected"
        if order.ord_type == MARKET and order.symbol not in self._book.prices:
            order.status = "8"
            self._report(order, out, ord_status="8", exec_type="8", text="No market price")
            return "rejected"
        delayed = self._fill_delay_s > 0 and order.ord_type == LIMIT and order.symbol != "REST"
        self._report(order, out, ord_status="0", exec_type="0")
        for fill in self._book.place(order, fill=not delayed):
            self._report_fill(fill, out)
        if delayed:
            timer = threading.Timer(self._fill_delay_s, self._fill_later, (order,))
            timer.daemon = True
            timer.start()
        return "accepted"

    def _fill_later(self, order: VenueOrder) -> None:
        out: Out = []
        with self._lock:
            for fill in self._book.fill_now(order):
                self._report_fill(fill, out)
        _send(out)  # stored and resent after the next logon if the client is away

    def _cancel(self, message: fix.Message, session: fix.SessionID, out: Out) -> str:
        cid, orig = _get(message, 11), _get(message, 41)
        order = self._book.orders.get(orig)
        if order is None or order.status not in WORKING:
            self._cancel_reject(order, cid, orig, response_to="1", session=session, out=out)
            return "cancel refused"
        self._book.cancel(order)
        self._report(order, out, ord_status="4", exec_type="4", cl_ord_id=cid, orig=orig)
        return "cancelled"

    def _replace(self, message: fix.Message, session: fix.SessionID, out: Out) -> str:
        cid, orig = _get(message, 11), _get(message, 41)
        old = self._book.orders.get(orig)
        qty = Decimal(message.getField(38))
        refusal = (
            ("1", "Unknown order")
            if old is None
            else ("6", "Duplicate ClOrdID")
            if cid in self._book.orders
            else ("0", "Too late to replace")
            if old.status not in WORKING
            else ("99", "Quantity must exceed what has filled")
            if qty <= old.cum
            else None
        )
        if old is None or refusal is not None:
            self._cancel_reject(
                old, cid, orig, response_to="2", session=session, out=out, refusal=refusal
            )
            return "replace refused"
        new = self._book.replace(
            old,
            cid,
            ord_type=_get(message, 40),
            qty=qty,
            price=_decimal(message, 44),
            stop=_decimal(message, 99),
        )
        new.owner = session
        self._report(new, out, ord_status=new.status, exec_type="5", orig=orig)
        for fill in self._book.place(new):
            self._report_fill(fill, out)
        return "replaced"

    def _status(self, message: fix.Message, session: fix.SessionID, out: Out) -> str:
        cid = _get(message, 11)
        order = self._book.orders.get(cid)
        if order is None:
            unknown = VenueOrder(cid, "NONE", "", _get(message, 55, "?"), "1", LIMIT, Decimal(0))
            unknown.owner = session
            self._report(
                unknown, out, ord_status="8", exec_type="I", reject_reason="5", text="Unknown order"
            )
            return "unknown"
        self._report(order, out, ord_status=order.status, exec_type="I", to=session)
        return "answered"

    # -- questions about the account (FIX 4.4) -------------------------------------------------

    def _positions(self, message: fix.Message, session: fix.SessionID, out: Out) -> str:
        account, request_id = _get(message, 1), _get(message, 710)
        nets = self._book.positions(account)
        ack = _message(session, "AO")
        for tag, value in ((721, self._book.next_id("PM")), (710, request_id), (1, account)):
            ack.setField(tag, value)
        ack.setField(581, "1")
        if not self._positions_supported:
            ack.setField(728, "4")  # request for positions not supported
            ack.setField(729, "2")  # rejected
            out.append((ack, session))
            return "positions not supported"
        ack.setField(728, "0" if nets else "2")  # valid request / no positions found
        ack.setField(729, "0")
        ack.setField(727, str(len(nets)))
        out.append((ack, session))
        for symbol, net in nets.items():
            report = _message(session, "AP")
            report.setField(721, self._book.next_id("PR"))
            report.setField(710, request_id)
            report.setField(727, str(len(nets)))
            report.setField(728, "0")
            report.setField(715, _get(message, 715))
            report.setField(1, account)
            report.setField(581, "1")
            report.setField(55, symbol)
            price = str(self._book.prices.get(symbol, Decimal(0)))
            report.setField(730, price)
            report.setField(731, "2")  # theoretical: the venue's mark
            report.setField(734, price)
            for pos_type, quantity in (("SOD", Decimal(0)), ("TQ", net)):
                group = fix.Group(702, 703)
                group.setField(703, pos_type)
                group.setField(704, str(max(quantity, Decimal(0))))
                group.setField(705, str(max(-quantity, Decimal(0))))
                report.addGroup(group)
            out.append((report, session))
        return f"{len(nets)} positions"

    def _collateral_report(self, message: fix.Message, session: fix.SessionID, out: Out) -> str:
        account, request_id = _get(message, 1), _get(message, 909)
        values = self._collateral.get(account)
        if values is None:
            ack = _message(session, "BG")
            ack.setField(909, request_id)
            ack.setField(945, "4")  # rejected
            ack.setField(946, "99")
            ack.setField(58, "No collateral for this account")
            out.append((ack, session))
            return "no collateral"
        report = _message(session, "BA")
        report.setField(908, self._book.next_id("CR"))
        report.setField(909, request_id)
        report.setField(910, "3")  # assigned
        report.setField(911, "1")
        report.setField(912, "Y")
        report.setField(1, account)
        for tag, value in zip((901, 900, 899), values, strict=True):
            report.setField(tag, value)
        out.append((report, session))
        return "collateral"

    def _mass_status(self, message: fix.Message, session: fix.SessionID, out: Out) -> str:
        request_id = _get(message, 584)
        orders = self._book.working(_get(message, 1) or None)
        if not orders:
            none = VenueOrder("", "NONE", "", "", "1", LIMIT, Decimal(0), status="8")
            extra = {584: request_id, 911: "0", 912: "Y"}
            self._report(none, out, ord_status="8", exec_type="I", to=session, extra=extra)
        for index, order in enumerate(orders, start=1):
            extra = {584: request_id, 911: str(len(orders))}
            extra[912] = "Y" if index == len(orders) else "N"
            self._report(
                order, out, ord_status=order.status, exec_type="I", to=session, extra=extra
            )
        return f"{len(orders)} orders"

    # -- reports -------------------------------------------------------------------------------

    def _cancel_reject(
        self,
        order: VenueOrder | None,
        cid: str,
        orig: str,
        *,
        response_to: str,
        session: fix.SessionID,
        out: Out,
        refusal: tuple[str, str] | None = None,
    ) -> None:
        reason, text = refusal or (("1", "Unknown order") if order is None else ("0", "Too late"))
        reject = _message(session, "9")
        reject.setField(37, order.order_id if order is not None else "NONE")
        reject.setField(11, cid)
        reject.setField(41, orig)
        reject.setField(39, order.status if order is not None else "8")
        reject.setField(434, response_to)
        reject.setField(102, reason)
        reject.setField(58, text)
        out.append((reject, session))

    def _report_fill(self, fill: Fill, out: Out) -> None:
        order = fill.order
        self._report(
            order,
            out,
            ord_status=fill.status,
            exec_type="F",
            last=(fill.qty, fill.price),
            totals=(fill.cum, fill.avg_px),
        )

    def _report(
        self,
        order: VenueOrder,
        out: Out,
        *,
        ord_status: str,
        exec_type: str,
        last: tuple[Decimal, Decimal] | None = None,
        totals: tuple[Decimal, Decimal] | None = None,
        reject_reason: str | None = None,
        text: str | None = None,
        cl_ord_id: str | None = None,
        orig: str | None = None,
        to: fix.SessionID | None = None,
        extra: dict[int, str] | None = None,
    ) -> None:
        session = to or order.owner
        assert isinstance(session, fix.SessionID)
        report = _message(session, "8")
        fix42 = session.getBeginString().getValue() == "FIX.4.2"
        if fix42:
            # FIX 4.2: ExecTransType, and fills and status answers by their OrdStatus.
            report.setField(20, "3" if exec_type == "I" else "0")
            exec_type = ord_status if exec_type in {"F", "I"} else exec_type
        report.setField(37, order.order_id)
        if cl_ord_id or order.cl_ord_id:
            report.setField(11, cl_ord_id or order.cl_ord_id)
        if orig:
            report.setField(41, orig)
        if order.account:
            report.setField(1, order.account)
        report.setField(17, self._book.next_id("X"))
        report.setField(150, exec_type)
        report.setField(39, ord_status)
        report.setField(55, order.symbol or "NONE")
        report.setField(54, order.side)
        report.setField(38, str(order.qty))
        cum, avg_px = totals or (order.cum, order.avg_px)
        leaves = order.qty - cum if ord_status in WORKING else Decimal(0)
        report.setField(151, str(leaves))
        report.setField(14, str(cum))
        report.setField(6, str(avg_px))
        if order.stop_px is not None:
            report.setField(99, str(order.stop_px))
        if last is not None:
            report.setField(32, str(last[0]))
            report.setField(31, str(last[1]))
        if reject_reason is not None:
            report.setField(103, reject_reason)
            text = text or {"6": "Duplicate ClOrdID", "5": "Unknown order"}.get(reject_reason)
        if text is not None:
            report.setField(58, text)
        for tag, value in (extra or {}).items():
            report.setField(tag, value)
        out.append((report, session))


def _message(session: fix.SessionID, msg_type: str) -> fix.Message:
    message = fix.Message()
    message.getHeader().setField(fix.BeginString(session.getBeginString().getValue()))
    message.getHeader().setField(fix.MsgType(msg_type))
    return message


def _send(out: Out) -> None:
    for message, session in out:
        with contextlib.suppress(fix.SessionNotFound):
            fix.Session.sendToTarget(message, session)


def main() -> None:
    config, workdir = sys.argv[1], Path(sys.argv[2])
    fill_delay_s = float(sys.argv[3]) if len(sys.argv) > 3 else 0
    settings = fix.SessionSettings(config)
    application = Venue(workdir / "journal.jsonl", fill_delay_s)
    acceptor = fix.SocketAcceptor(
        application, fix.FileStoreFactory(settings), settings, fix.ScreenLogFactory(settings)
    )
    acceptor.start()
    try:
        for line in sys.stdin:
            if line.strip() == "#quit":
                break
            if line.strip():
                application.control(line.strip())
    finally:
        acceptor.stop()


if __name__ == "__main__":
    main()

"""The test suite's own FIX 4.4 counterparty: a QuickFIX acceptor with a small Application.

For the scenarios QuickFIX's example programs cannot produce. It runs like them, inside its own
network namespace (``tests.fix.netns_peer``; QuickFIX acceptors listen on every interface):

- NewOrderSingle: a ClOrdID seen before is rejected as a duplicate (OrdRejReason 6), as real
  venues do; otherwise acknowledged (NEW) and, for a limit order, filled at its price in two
  halves (PARTIALLY_FILLED, then FILLED). Symbol ``REST`` is acknowledged and left working.
- OrderStatusRequest: answered with ExecType I and the order's OrdStatus, CumQty and AvgPx;
  an unknown ClOrdID with OrdStatus 8 and OrdRejReason 5 (unknown order).
- Every application message that arrives is appended to ``journal.jsonl`` (type, ClOrdID,
  PossDupFlag, what was done), so a test can prove what the venue received.

    python -m tests.fix.venue CONFIG WORKDIR [FILL_DELAY_S]

With ``FILL_DELAY_S``, limit orders are acknowledged at once and filled that many seconds
later (from a timer thread), so a client can be stopped while its order works.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
from decimal import Decimal
from pathlib import Path

import quickfix as fix


class Venue(fix.Application):  # type: ignore[misc]
    def __init__(self, journal: Path, fill_delay_s: float = 0) -> None:
        super().__init__()
        self._fill_delay_s = fill_delay_s
        self._journal = journal.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self._orders: dict[str, dict[str, str]] = {}
        self._ids = itertools.count(1)

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
        msg_type = message.getHeader().getField(35)
        cid = message.getField(11) if message.isSetField(11) else ""
        header = message.getHeader()
        poss_dup = header.getField(43) if header.isSetField(43) else "N"
        with self._lock:
            reports: list[fix.Message] = []
            if msg_type == "D":
                result = self._new_order(message, cid, session_id, reports)
            elif msg_type == "H":
                result = self._status(cid, session_id, reports)
            else:
                result = "ignored"
            # Journal first, answer second: once the client sees the answer, the journal
            # already says what arrived.
            entry = {"type": msg_type, "cl_ord_id": cid, "poss_dup": poss_dup, "result": result}
            self._journal.write(json.dumps(entry) + "\n")
            self._journal.flush()
        for report in reports:
            fix.Session.sendToTarget(report, session_id)

    def _new_order(
        self, message: fix.Message, cid: str, session_id: fix.SessionID, out: list[fix.Message]
    ) -> str:
        if cid in self._orders:
            self._report(
                out,
                self._orders[cid],
                ord_status="8",
                exec_type="8",
                reject_reason="6",
                text="Duplicate ClOrdID",
            )
            return "duplicate"
        order = {
            "cl_ord_id": cid,
            "order_id": f"V{next(self._ids)}",
            "symbol": message.getField(55),
            "side": message.getField(54),
            "qty": message.getField(38),
            "price": message.getField(44) if message.isSetField(44) else "0",
            "cum": "0",
            "status": "0",
        }
        self._orders[cid] = order
        self._report(out, order, ord_status="0", exec_type="0")
        if order["symbol"] != "REST" and message.getField(40) == "2":
            if self._fill_delay_s > 0:
                timer = threading.Timer(self._fill_delay_s, self._fill_later, (order, session_id))
                timer.daemon = True
                timer.start()
            else:
                self._fill(order, out)
        return "accepted"

    def _fill(self, order: dict[str, str], out: list[fix.Message]) -> None:
        qty = Decimal(order["qty"])
        half = (qty / 2).quantize(Decimal(1)) if qty > 1 else qty
        for last in (half, qty - half):
            if last <= 0:
                continue
            order["cum"] = str(Decimal(order["cum"]) + last)
            order["status"] = "2" if Decimal(order["cum"]) >= qty else "1"
            self._report(out, order, ord_status=order["status"], exec_type="F", last=str(last))

    def _fill_later(self, order: dict[str, str], session_id: fix.SessionID) -> None:
        reports: list[fix.Message] = []
        with self._lock:
            self._fill(order, reports)
        for report in reports:
            # Stored and resent after the next logon if the client is away.
            fix.Session.sendToTarget(report, session_id)

    def _status(self, cid: str, session_id: fix.SessionID, out: list[fix.Message]) -> str:
        order = self._orders.get(cid)
        if order is None:
            unknown = {
                "cl_ord_id": cid,
                "order_id": "NONE",
                "symbol": "?",
                "side": "1",
                "qty": "0",
                "price": "0",
                "cum": "0",
                "status": "8",
            }
            self._report(
                out,
                unknown,
                ord_status="8",
                exec_type="I",
                reject_reason="5",
                text="Unknown order",
            )
            return "unknown"
        self._report(out, order, ord_status=order["status"], exec_type="I")
        return "answered"

    def _report(
        self,
        out: list[fix.Message],
        order: dict[str, str],
        *,
        ord_status: str,
        exec_type: str,
        last: str | None = None,
        reject_reason: str | None = None,
        text: str | None = None,
    ) -> None:
        report = fix.Message()
        report.getHeader().setField(fix.BeginString("FIX.4.4"))
        report.getHeader().setField(fix.MsgType("8"))
        report.setField(37, order["order_id"])
        report.setField(11, order["cl_ord_id"])
        report.setField(17, f"X{next(self._ids)}")
        report.setField(150, exec_type)
        report.setField(39, ord_status)
        report.setField(55, order["symbol"])
        report.setField(54, order["side"])
        report.setField(38, order["qty"])
        cum = Decimal(order["cum"])
        report.setField(151, str(max(Decimal(0), Decimal(order["qty"]) - cum)))
        report.setField(14, order["cum"])
        report.setField(6, order["price"] if cum > 0 else "0")
        if last is not None:
            report.setField(32, last)
            report.setField(31, order["price"])
        if reject_reason is not None:
            report.setField(103, reject_reason)
        if text is not None:
            report.setField(58, text)
        out.append(report)


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
    finally:
        acceptor.stop()


if __name__ == "__main__":
    main()

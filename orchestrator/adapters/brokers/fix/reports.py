"""Answers about an account (FIX 4.4): positions, collateral and mass order status.

Functions of QuickFIX messages and the :class:`~.book.Inquiry` they answer, with no I/O and no
lock (:mod:`.callbacks` holds the book's lock while these run). Each inquiry ends in exactly one
of: complete (possibly empty: a venue that says "no positions" is flat) or failed (no usable
answer: the caller gets ``None``, never "flat").

- Positions, RequestForPositions (AN) → RequestForPositionsAck (AO) and PositionReport (AP):
  PosReqResult 2 ("no positions") is complete and empty; any other result but 0 (4: not
  supported, 1: invalid, 3: not authorised, 99) fails. Complete once TotalNumPosReports
  reports have arrived (announced on the ack or the reports): without that count a partial
  answer cannot be told from a whole one, and the inquiry times out. A report's net quantity is
  LongQty − ShortQty of its FIN (end of day) entry when present, else the sum of its SOD (start
  of day) and TQ (today's trades) entries; a report with none of these fails the inquiry rather
  than be guessed. SettlPrice is a settlement price, not the position's entry price: the
  average price is left unknown.
- Collateral, CollateralInquiry (BB) → CollateralReport (BA), or CollateralInquiryAck (BG)
  refusing it: FIX has no "equity" field. We read CashOutstanding (901) as the balance,
  TotalNetValue (900) as the equity (the collateral's value at current prices) and MarginExcess
  (899) as the free margin (negative: a deficit). A report missing any of them, or several
  reports (one per currency), fails: the caller derives the account's state instead.
- Mass status, OrderMassStatusRequest (AF) → ExecutionReports with ExecType I carrying our
  MassStatusReqID: complete at the report with LastRptRequested=Y or once TotNumReports have
  arrived; TotNumReports 0 (on a report without an order) is an empty answer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import quickfix as fix

from orchestrator.adapters.brokers.base import AccountReading, BrokerOrder, BrokerPosition
from orchestrator.adapters.brokers.fix.book import Inquiry
from orchestrator.adapters.brokers.fix.parsing import field_of, to_decimal
from orchestrator.adapters.brokers.fix.tags import (
    ACCOUNT,
    CASH_OUTSTANDING,
    COLL_INQUIRY_RESULT,
    COLL_INQUIRY_STATUS,
    COLL_INQUIRY_STATUS_REJECTED,
    LAST_RPT_REQUESTED,
    LONG_QTY,
    MARGIN_EXCESS,
    NO_POSITIONS,
    POS_REQ_RESULT,
    POS_REQ_RESULT_NO_POSITIONS,
    POS_REQ_RESULT_VALID,
    POS_REQ_STATUS,
    POS_REQ_STATUS_REJECTED,
    POS_TYPE,
    SHORT_QTY,
    SYMBOL,
    TEXT,
    TOT_NUM_REPORTS,
    TOTAL_NET_VALUE,
    TOTAL_NUM_POS_REPORTS,
)
from orchestrator.domain.values import Side


def apply_positions_ack(inquiry: Inquiry, message: fix.Message) -> None:
    """RequestForPositionsAck (AO): accepted (and how many reports follow), empty, or refused."""
    result = field_of(message, POS_REQ_RESULT)
    if result == POS_REQ_RESULT_NO_POSITIONS:
        inquiry.done = True
        return
    if (
        result != POS_REQ_RESULT_VALID
        or field_of(message, POS_REQ_STATUS) == POS_REQ_STATUS_REJECTED
    ):
        inquiry.fail(_refusal("positions request", "PosReqResult", result, message))
        return
    _expect(inquiry, field_of(message, TOTAL_NUM_POS_REPORTS))


def apply_position_report(inquiry: Inquiry, message: fix.Message, units_per_lot: Decimal) -> None:
    """PositionReport (AP): one symbol's position, or the whole answer's result."""
    result = field_of(message, POS_REQ_RESULT)
    if result == POS_REQ_RESULT_NO_POSITIONS:
        inquiry.done = True
        return
    if result != POS_REQ_RESULT_VALID:
        inquiry.fail(_refusal("positions request", "PosReqResult", result, message))
        return
    symbol = field_of(message, SYMBOL)
    net = _net_units(message)
    if symbol is None or net is None:
        inquiry.fail(f"a position report without a symbol or a FIN/SOD/TQ quantity ({symbol})")
        return
    inquiry.nets[symbol] = inquiry.nets.get(symbol, Decimal(0)) + net / units_per_lot
    _expect(inquiry, field_of(message, TOTAL_NUM_POS_REPORTS))
    inquiry.count()


def positions_of(inquiry: Inquiry) -> list[BrokerPosition]:
    """The account's open positions, one per symbol with a non-zero net, sorted by symbol."""
    return [
        BrokerPosition(
            symbol=symbol,
            side=Side.BUY if net > 0 else Side.SELL,
            quantity=abs(net),
            average_price=None,
        )
        for symbol, net in sorted(inquiry.nets.items())
        if net != 0
    ]


def _net_units(message: fix.Message) -> Decimal | None:
    """LongQty − ShortQty of the report's FIN entry, else of its SOD and TQ entries summed."""
    count = to_decimal(field_of(message, NO_POSITIONS))
    by_type: dict[str, Decimal] = {}
    for index in range(1, int(count or 0) + 1):
        group = fix.Group(NO_POSITIONS, POS_TYPE)
        message.getGroup(index, group)
        pos_type = field_of(group, POS_TYPE) or ""
        long_qty = to_decimal(field_of(group, LONG_QTY)) or Decimal(0)
        short_qty = to_decimal(field_of(group, SHORT_QTY)) or Decimal(0)
        by_type[pos_type] = by_type.get(pos_type, Decimal(0)) + long_qty - short_qty
    if "FIN" in by_type:
        return by_type["FIN"]
    if "SOD" in by_type or "TQ" in by_type:
        return by_type.get("SOD", Decimal(0)) + by_type.get("TQ", Decimal(0))
    return None


def apply_collateral_ack(inquiry: Inquiry, message: fix.Message) -> None:
    """CollateralInquiryAck (BG): a refusal ends the inquiry; an acceptance waits for BA."""
    if field_of(message, COLL_INQUIRY_STATUS) == COLL_INQUIRY_STATUS_REJECTED:
        inquiry.fail(
            _refusal(
                "collateral inquiry",
                "CollInquiryResult",
                field_of(message, COLL_INQUIRY_RESULT),
                message,
            )
        )
    elif field_of(message, TOT_NUM_REPORTS) == "0":
        inquiry.fail("the counterparty has no collateral report for the account")


def apply_collateral_report(
    inquiry: Inquiry, message: fix.Message, clock: Callable[[], datetime]
) -> None:
    """CollateralReport (BA): balance, equity and free margin (see the module docstring)."""
    total = field_of(message, TOT_NUM_REPORTS)
    if total is not None and total.isdigit() and int(total) > 1:
        inquiry.fail(f"{total} collateral reports (one per currency?): not read")
        return
    balance = to_decimal(field_of(message, CASH_OUTSTANDING))
    equity = to_decimal(field_of(message, TOTAL_NET_VALUE))
    free_margin = to_decimal(field_of(message, MARGIN_EXCESS))
    if balance is None or equity is None or free_margin is None:
        inquiry.fail("the collateral report lacks CashOutstanding, TotalNetValue or MarginExcess")
        return
    inquiry.reading = AccountReading(
        balance=balance, equity=equity, free_margin=free_margin, reported=True, at=clock()
    )
    inquiry.done = True


def apply_mass_status_report(
    inquiry: Inquiry, message: fix.Message, order: BrokerOrder | None
) -> None:
    """One ExecutionReport answering our OrderMassStatusRequest; ``order`` is what it says
    about one order (``None`` for a report that carries no order)."""
    total = field_of(message, TOT_NUM_REPORTS)
    account = field_of(message, ACCOUNT)
    if total == "0":
        inquiry.done = True
        return
    if order is not None and (account is None or account == inquiry.account_id):
        inquiry.orders[order.client_order_id] = order
    _expect(inquiry, total)
    inquiry.count()
    if field_of(message, LAST_RPT_REQUESTED) == "Y":
        inquiry.done = True


def _expect(inquiry: Inquiry, total: str | None) -> None:
    if total is not None and total.isdigit():
        inquiry.expected = int(total)
        if inquiry.received >= inquiry.expected:
            inquiry.done = True


def _refusal(what: str, tag_name: str, value: str | None, message: fix.Message) -> str:
    text = field_of(message, TEXT)
    return f"{what} refused ({tag_name} {value})" + (f": {text}" if text else "")

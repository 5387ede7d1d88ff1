"""What the counterparty's messages do to our orders: OrdStatus, fills, rejects.

Functions of QuickFIX messages and the orders they are about, with no I/O, no lock and no
session: :mod:`.callbacks` finds the order a message is about, holds the book's lock while these
update it, and wakes the callers waiting on it. (:mod:`.messages` writes what we send.)

Order states are read from OrdStatus (39), never from ExecType (150): FIX 4.2 reports fills with
ExecType 1/2, FIX 4.4 with F.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import quickfix as fix

from orchestrator.adapters.brokers.base import BrokerOrder, Execution
from orchestrator.adapters.brokers.fix.tags import (
    AVG_PX,
    BUSINESS_REJECT_REASON,
    BUSINESS_REJECT_REF_ID,
    BUSINESS_REJECT_UNSUPPORTED_MESSAGE_TYPE,
    CUM_QTY,
    EXEC_ID,
    EXEC_TRANS_TYPE,
    EXEC_TYPE,
    EXEC_TYPE_ORDER_STATUS,
    LAST_PX,
    LAST_QTY,
    ORD_REJ_DUPLICATE_ORDER,
    ORD_REJ_REASON,
    ORD_REJ_UNKNOWN_ORDER,
    ORD_STATUS,
    ORDER_ID,
    REF_SEQ_NUM,
    TEXT,
)
from orchestrator.domain.errors import InvalidOrderTransition
from orchestrator.domain.orders import OrderStatus, average_price, transition
from orchestrator.domain.values import Side, plain

log = logging.getLogger(__name__)

ORD_STATUS_MAP: dict[str, OrderStatus] = {
    "0": OrderStatus.NEW,
    "1": OrderStatus.PARTIALLY_FILLED,
    "2": OrderStatus.FILLED,
    "3": OrderStatus.EXPIRED,  # done for day: no more fills on this order
    "4": OrderStatus.CANCELLED,
    "6": OrderStatus.PENDING_CANCEL,
    "7": OrderStatus.NEW,  # stopped: still working at a guaranteed price
    "8": OrderStatus.REJECTED,
    "9": OrderStatus.NEW,  # suspended: still at the broker, may resume
    "A": OrderStatus.PENDING_SUBMIT,  # pending new
    "C": OrderStatus.EXPIRED,
    "D": OrderStatus.NEW,  # accepted for bidding
}
"""FIX OrdStatus (39) to our lifecycle. 5 (replaced, FIX 4.2's status of a replacement order),
B (calculated) and E (pending replace) are absent: for them the status is derived from the
cumulative quantity instead (see :func:`status_of`)."""


@dataclass(frozen=True, slots=True)
class OrderRef:
    """What an OrderStatusRequest, OrderCancelRequest or OrderCancelReplaceRequest needs besides
    the ClOrdID."""

    client_order_id: str
    account_id: str
    symbol: str
    side: Side
    quantity: Decimal
    """In lots."""
    booked_quantity: Decimal = Decimal(0)
    """Lots already booked in our ledger (by an earlier process), at ``booked_price``. For a
    replacement order (cancel/replace), also what the orders it replaced filled: FIX's CumQty
    counts the whole chain, and those fills stay booked on the orders that got them."""
    booked_price: Decimal | None = None


@dataclass(slots=True)
class OrderState:
    """One order as the counterparty has reported it to this process."""

    ref: OrderRef
    status: OrderStatus = OrderStatus.PENDING_SUBMIT
    broker_order_id: str | None = None
    executions: list[Execution] = field(default_factory=list)
    execution_ids: set[str] = field(default_factory=set)
    reject_text: str | None = None
    answered: bool = False
    """The counterparty has said something about this order (a report or a reject)."""
    duplicate: bool = False
    """The counterparty refused it as a duplicate ClOrdID: it already has one."""
    unknown: bool = False
    """The counterparty said it does not know this ClOrdID."""
    status_refused: bool = False
    """The counterparty refused our last OrderStatusRequest about it (it answers none)."""

    def view(self) -> BrokerOrder:
        return BrokerOrder(
            client_order_id=self.ref.client_order_id,
            broker_order_id=self.broker_order_id,
            status=self.status,
            quantity=self.ref.quantity,
            executions=tuple(self.executions),
            reject_text=self.reject_text,
            symbol=self.ref.symbol,
            side=self.ref.side,
            open_quantity=max(Decimal(0), self.ref.quantity - filled(self)[0]),
        )


# -- in: what the counterparty says about our orders -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Rejection:
    """A session Reject (3) or BusinessMessageReject (j) of one of our messages."""

    ref_seq_num: int | None
    """The MsgSeqNum of the refused message (RefSeqNum, 45), when given."""
    ref_id: str | None
    """BusinessRejectRefID (379): the refused order's ClOrdID, when given."""
    text: str
    unsupported: bool = False
    """A BusinessMessageReject for an unsupported message type (BusinessRejectReason 3): the
    counterparty does not take this kind of message at all."""


def read_rejection(message: fix.Message) -> Rejection:
    seq = field_of(message, REF_SEQ_NUM)
    reason = field_of(message, BUSINESS_REJECT_REASON)
    return Rejection(
        ref_seq_num=int(seq) if seq and seq.isdigit() else None,
        ref_id=field_of(message, BUSINESS_REJECT_REF_ID),
        text=field_of(message, TEXT) or "rejected without a reason",
        unsupported=reason == BUSINESS_REJECT_UNSUPPORTED_MESSAGE_TYPE,
    )


def apply_execution_report(
    order: OrderState,
    message: fix.Message,
    *,
    units_per_lot: Decimal,
    clock: Callable[[], datetime],
) -> None:
    """What an ExecutionReport (8) about ``order`` says: its status, and each new fill once."""
    ord_status = field_of(message, ORD_STATUS) or ""
    reason = field_of(message, ORD_REJ_REASON)
    if ord_status == "8" and reason == ORD_REJ_DUPLICATE_ORDER:
        order.duplicate = True
        order.answered = True
        return
    if ord_status == "8" and reason == ORD_REJ_UNKNOWN_ORDER:
        order.unknown = True
        order.answered = True
        return
    order.broker_order_id = field_of(message, ORDER_ID) or order.broker_order_id
    # ExecID is unique per session and day only (QuickFIX's examples count from 1 per run):
    # qualified by the ClOrdID, it is unique across restarts and ledgers.
    exec_id = field_of(message, EXEC_ID) or ""
    exec_id = f"{order.ref.client_order_id}/{exec_id}" if exec_id else ""
    execution = _execution_of(message, exec_id, units_per_lot, clock)
    cum_lots = lots(field_of(message, CUM_QTY), units_per_lot)
    if execution is not None and _is_new(order, execution, cum_lots):
        order.execution_ids.add(execution.execution_id)
        order.executions.append(execution)
    _catch_up(order, cum_lots, to_decimal(field_of(message, AVG_PX)), clock)
    order.status = advance(order.status, status_of(ord_status, order, cum_lots))
    if order.status is OrderStatus.REJECTED:
        order.reject_text = field_of(message, TEXT) or "rejected without a reason"
    order.answered = True
    order.unknown = False


def apply_rejection(order: OrderState, text: str) -> None:
    """Our NewOrderSingle for ``order`` was refused by a session or business reject."""
    order.status = advance(order.status, OrderStatus.REJECTED)
    order.reject_text = text
    order.answered = True


def apply_status_refused(order: OrderState) -> None:
    """The counterparty cannot answer status requests: what we know of ``order`` stands."""
    order.answered = True
    order.status_refused = True
    order.unknown = not order.executions and order.broker_order_id is None


def filled(order: OrderState) -> tuple[Decimal, Decimal | None]:
    """Lots ``order`` has filled (booked before and seen since) and their average price."""
    ref = order.ref
    quantity = ref.booked_quantity + sum((e.quantity for e in order.executions), Decimal(0))
    booked = (ref.booked_quantity, ref.booked_price or Decimal(0))
    return quantity, average_price([booked, *((e.quantity, e.price) for e in order.executions)])


def _execution_of(
    message: fix.Message, exec_id: str, units_per_lot: Decimal, clock: Callable[[], datetime]
) -> Execution | None:
    if field_of(message, EXEC_TYPE) == EXEC_TYPE_ORDER_STATUS:
        return None  # a status answer repeats the state; it is not a new fill
    if field_of(message, EXEC_TRANS_TYPE) in {"1", "2"}:
        return None  # FIX 4.2 cancel/correct of an earlier execution: not supported
    quantity = lots(field_of(message, LAST_QTY), units_per_lot)
    price = to_decimal(field_of(message, LAST_PX))
    if not quantity or quantity <= 0 or price is None or not exec_id:
        return None
    return Execution(execution_id=exec_id, quantity=quantity, price=price, executed_at=clock())


def _is_new(order: OrderState, execution: Execution, cum_lots: Decimal | None) -> bool:
    """A fill not seen before, and not already covered by a catch-up (a late or resent report
    whose CumQty is no more than what is known)."""
    if execution.execution_id in order.execution_ids:
        return False
    known = order.ref.booked_quantity + sum((e.quantity for e in order.executions), Decimal(0))
    return cum_lots is None or cum_lots > known


def _catch_up(
    order: OrderState,
    cum_lots: Decimal | None,
    avg_px: Decimal | None,
    clock: Callable[[], datetime],
) -> None:
    """Fills we never saw one by one (a status answer after a restart, a report lost while
    disconnected) become one execution: CumQty minus what is known, priced so that the average
    comes out at AvgPx. Its id is derived from CumQty, so a repeat is a duplicate."""
    ref = order.ref
    known = ref.booked_quantity + sum((e.quantity for e in order.executions), Decimal(0))
    if cum_lots is None or avg_px is None or cum_lots <= known:
        return
    known_value = ref.booked_quantity * (ref.booked_price or Decimal(0)) + sum(
        (e.quantity * e.price for e in order.executions), Decimal(0)
    )
    missing = cum_lots - known
    execution = Execution(
        execution_id=f"{ref.client_order_id}/cum-{plain(cum_lots)}",
        quantity=missing,
        price=(cum_lots * avg_px - known_value) / missing,
        executed_at=clock(),
    )
    if execution.execution_id in order.execution_ids:
        return
    order.execution_ids.add(execution.execution_id)
    order.executions.append(execution)


def status_of(ord_status: str, order: OrderState, cum_lots: Decimal | None) -> OrderStatus:
    """The status an OrdStatus reports for ``order`` (``cum_lots``: its CumQty in lots)."""
    mapped = ORD_STATUS_MAP.get(ord_status)
    if mapped is not None:
        return mapped
    # Replaced / calculated / pending replace: derive from what has filled.
    if cum_lots is not None and cum_lots >= order.ref.quantity:
        return OrderStatus.FILLED
    if cum_lots:
        return OrderStatus.PARTIALLY_FILLED
    return order.status if order.status is not OrderStatus.PENDING_SUBMIT else OrderStatus.NEW


def advance(current: OrderStatus, reported: OrderStatus) -> OrderStatus:
    """Move to the reported status if the lifecycle table allows it. A report that would go
    back (a late or repeated one: delivery is at least once) leaves the status as it is."""
    try:
        return transition(current, reported)
    except InvalidOrderTransition:
        log.debug("ignoring report %s for an order already %s", reported, current)
        return current


def field_of(message: fix.Message, tag: int) -> str | None:
    return str(message.getField(tag)) if message.isSetField(tag) else None


def header_field(message: fix.Message, tag: int) -> str | None:
    header = message.getHeader()
    return str(header.getField(tag)) if header.isSetField(tag) else None


def to_decimal(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None


def lots(value: str | None, units_per_lot: Decimal) -> Decimal | None:
    """A FIX quantity (OrderQty, LastQty, CumQty) in lots."""
    quantity = to_decimal(value)
    return None if quantity is None else quantity / units_per_lot


def utc_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d-%H:%M:%S.%f")[:-3]

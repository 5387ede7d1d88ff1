"""Our commands and questions written as FIX messages (no I/O: :mod:`.execution` sends them).

Orders: NewOrderSingle (D) for market, limit and stop orders, OrderCancelRequest (F),
OrderCancelReplaceRequest (G), OrderStatusRequest (H). Questions about the account (FIX 4.4 only):
RequestForPositions (AN), CollateralInquiry (BB) and OrderMassStatusRequest (AF).
"""

from __future__ import annotations

from datetime import datetime

import quickfix as fix

from orchestrator.adapters.brokers.base import OrderTicket
from orchestrator.adapters.brokers.fix.config import FixSessionConfig
from orchestrator.adapters.brokers.fix.parsing import OrderRef, utc_timestamp
from orchestrator.adapters.brokers.fix.tags import (
    ACCOUNT,
    ACCOUNT_TYPE,
    ACCOUNT_TYPE_CUSTOMER,
    CL_ORD_ID,
    CLEARING_BUSINESS_DATE,
    COLL_INQUIRY_ID,
    HANDL_INST,
    MASS_STATUS_ALL_ORDERS,
    MASS_STATUS_REQ_ID,
    MASS_STATUS_REQ_TYPE,
    ORD_TYPE,
    ORD_TYPE_LIMIT,
    ORD_TYPE_MARKET,
    ORD_TYPE_STOP,
    ORDER_ID,
    ORDER_QTY,
    ORIG_CL_ORD_ID,
    POS_REQ_ID,
    POS_REQ_TYPE,
    POS_REQ_TYPE_POSITIONS,
    PRICE,
    SIDE,
    SNAPSHOT,
    STOP_PX,
    SUBSCRIPTION_REQUEST_TYPE,
    SYMBOL,
    TEST_REQ_ID,
    TIME_IN_FORCE,
    TRANSACT_TIME,
)
from orchestrator.domain.values import OrderType, Side, plain


def new_order_single(ticket: OrderTicket, config: FixSessionConfig, now: datetime) -> fix.Message:
    message = _message(config, "D")
    message.setField(CL_ORD_ID, ticket.client_order_id)
    message.setField(ACCOUNT, ticket.account_id)
    message.setField(HANDL_INST, "1")
    message.setField(SYMBOL, ticket.symbol)
    message.setField(SIDE, side_code(ticket.side))
    message.setField(TRANSACT_TIME, utc_timestamp(now))
    message.setField(ORDER_QTY, plain(ticket.quantity * config.units_per_lot))
    _set_order_type(message, ticket)
    message.setField(TIME_IN_FORCE, "0")
    return message


def replace_request(
    original: OrderRef,
    broker_order_id: str | None,
    ticket: OrderTicket,
    config: FixSessionConfig,
    now: datetime,
) -> fix.Message:
    """OrderCancelReplaceRequest: ``ticket`` (its new ClOrdID, OrderQty, prices) takes the place
    of ``original``. OrderQty is the order's total, what the original already filled included
    (FIX's meaning): unchanged, it moves only the price and leaves the open rest as it was."""
    if (ticket.account_id, ticket.symbol, ticket.side) != (
        original.account_id,
        original.symbol,
        original.side,
    ):
        raise ValueError(
            f"replacing {original.client_order_id}: account, symbol and side cannot change"
        )
    message = _message(config, "G")
    message.setField(ORIG_CL_ORD_ID, original.client_order_id)
    message.setField(CL_ORD_ID, ticket.client_order_id)
    if broker_order_id:
        message.setField(ORDER_ID, broker_order_id)
    message.setField(ACCOUNT, ticket.account_id)
    message.setField(HANDL_INST, "1")
    message.setField(SYMBOL, ticket.symbol)
    message.setField(SIDE, side_code(ticket.side))
    message.setField(TRANSACT_TIME, utc_timestamp(now))
    message.setField(ORDER_QTY, plain(ticket.quantity * config.units_per_lot))
    _set_order_type(message, ticket)
    message.setField(TIME_IN_FORCE, "0")
    return message


def _set_order_type(message: fix.Message, ticket: OrderTicket) -> None:
    """OrdType and its price: Price (44) for a limit, StopPx (99) for a stop."""
    cid = ticket.client_order_id
    if ticket.order_type is OrderType.LIMIT:
        if ticket.limit_price is None:
            raise ValueError(f"limit order {cid} has no limit price")
        message.setField(ORD_TYPE, ORD_TYPE_LIMIT)
        message.setField(PRICE, plain(ticket.limit_price))
    elif ticket.order_type is OrderType.STOP:
        if ticket.stop_price is None:
            raise ValueError(f"stop order {cid} has no stop price")
        message.setField(ORD_TYPE, ORD_TYPE_STOP)
        message.setField(STOP_PX, plain(ticket.stop_price))
    else:
        message.setField(ORD_TYPE, ORD_TYPE_MARKET)


def cancel_request(
    ref: OrderRef, cancel_id: str, config: FixSessionConfig, now: datetime
) -> fix.Message:
    message = _message(config, "F")
    message.setField(ORIG_CL_ORD_ID, ref.client_order_id)
    message.setField(CL_ORD_ID, cancel_id)
    message.setField(ACCOUNT, ref.account_id)
    message.setField(SYMBOL, ref.symbol)
    message.setField(SIDE, side_code(ref.side))
    message.setField(TRANSACT_TIME, utc_timestamp(now))
    message.setField(ORDER_QTY, plain(ref.quantity * config.units_per_lot))
    return message


def status_request(ref: OrderRef, config: FixSessionConfig) -> fix.Message:
    message = _message(config, "H")
    message.setField(CL_ORD_ID, ref.client_order_id)
    message.setField(SYMBOL, ref.symbol)
    message.setField(SIDE, side_code(ref.side))
    return message


def positions_request(
    request_id: str, account_id: str, config: FixSessionConfig, now: datetime
) -> fix.Message:
    """RequestForPositions (AN, FIX 4.4): a snapshot of the account's positions today."""
    message = _message(config, "AN")
    message.setField(POS_REQ_ID, request_id)
    message.setField(POS_REQ_TYPE, POS_REQ_TYPE_POSITIONS)
    message.setField(SUBSCRIPTION_REQUEST_TYPE, SNAPSHOT)
    message.setField(ACCOUNT, account_id)
    message.setField(ACCOUNT_TYPE, ACCOUNT_TYPE_CUSTOMER)
    message.setField(CLEARING_BUSINESS_DATE, now.strftime("%Y%m%d"))
    message.setField(TRANSACT_TIME, utc_timestamp(now))
    return message


def collateral_inquiry(request_id: str, account_id: str, config: FixSessionConfig) -> fix.Message:
    """CollateralInquiry (BB, FIX 4.4): a snapshot of the account's collateral."""
    message = _message(config, "BB")
    message.setField(COLL_INQUIRY_ID, request_id)
    message.setField(SUBSCRIPTION_REQUEST_TYPE, SNAPSHOT)
    message.setField(ACCOUNT, account_id)
    return message


def mass_status_request(request_id: str, account_id: str, config: FixSessionConfig) -> fix.Message:
    """OrderMassStatusRequest (AF, FIX 4.3+): the status of every order of the account."""
    message = _message(config, "AF")
    message.setField(MASS_STATUS_REQ_ID, request_id)
    message.setField(MASS_STATUS_REQ_TYPE, MASS_STATUS_ALL_ORDERS)
    message.setField(ACCOUNT, account_id)
    return message


def probe_request(probe: str, config: FixSessionConfig) -> fix.Message:
    """A TestRequest (1): the Heartbeat answering it carries ``probe`` back."""
    message = _message(config, "1")
    message.setField(TEST_REQ_ID, probe)
    return message


def _message(config: FixSessionConfig, msg_type: str) -> fix.Message:
    message = fix.Message()
    header = message.getHeader()
    header.setField(fix.BeginString(config.begin_string))
    header.setField(fix.MsgType(msg_type))
    return message


def side_code(side: Side) -> str:
    return "1" if side is Side.BUY else "2"

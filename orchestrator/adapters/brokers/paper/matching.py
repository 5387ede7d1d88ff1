"""How the paper market treats an order's price: which orders rest, and the quote that fills a
resting one and at what price. Pure; the paper broker applies it (docs/paper-broker.md)."""

from __future__ import annotations

from decimal import Decimal

from orchestrator.adapters.brokers.base import Quote
from orchestrator.domain.values import OrderType, Side


def marketable(side: Side, limit: Decimal, quote: Quote) -> bool:
    """A limit the current quote already reaches: a buy's at or above the ask, a sell's at or
    below the bid."""
    return limit >= quote.ask if side is Side.BUY else limit <= quote.bid


def rests(
    order_type: OrderType,
    side: Side,
    limit: Decimal | None,
    quote: Quote | None,
    *,
    reduces: bool,
) -> bool:
    """Whether an arriving order rests on the market instead of executing on arrival.

    A STOP always rests. A LIMIT rests when the symbol has a quote and the limit is not
    marketable at it (a take-profit, or a limit entry away from the market); when the symbol
    has no quote at all, a LIMIT rests only if it ``reduces`` the account's position (a
    take-profit waits for a market that has not come), and a LIMIT entry executes on arrival as
    it always has. MARKET orders, and LIMITs the quote already reaches, execute on arrival.
    """
    if order_type is OrderType.STOP:
        return True
    if order_type is OrderType.LIMIT and limit is not None:
        return reduces if quote is None else not marketable(side, limit, quote)
    return False


def fill_price(order_type: OrderType, side: Side, price: Decimal, quote: Quote) -> Decimal | None:
    """The price a resting order fills at on ``quote``, or ``None`` if the quote does not
    reach it. ``price`` is the stop price of a STOP, the limit of a LIMIT.

    - STOP SELL (a long's stop): the bid at or below the stop; fills at that bid, so a gap
      through the stop fills below it (slippage). STOP BUY: the ask at or above the stop, at
      that ask.
    - LIMIT SELL (a long's take-profit): the bid at or above the limit; fills at the limit or
      better (the bid). LIMIT BUY: the ask at or below the limit, at the limit or better.
    """
    if order_type is OrderType.STOP:
        if side is Side.SELL:
            return quote.bid if quote.bid <= price else None
        return quote.ask if quote.ask >= price else None
    if order_type is OrderType.LIMIT:
        if side is Side.SELL:
            return max(price, quote.bid) if quote.bid >= price else None
        return min(price, quote.ask) if quote.ask <= price else None
    raise ValueError(f"a {order_type.value} order does not rest")

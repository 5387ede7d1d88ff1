"""The book of the suite's own venue (:mod:`tests.fix.venue`): orders, prices, fills, positions.

Plain Python, no FIX: the venue turns what happens here into messages. Quantities are in the
units of the wire (OrderQty), prices as sent; everything is ``Decimal``.

- A limit order fills at once at its own price, in two halves, unless the test has set a price
  for its symbol at which it would not trade, or its symbol is ``REST``: then it rests.
- A stop order rests until the price trades through its stop (a sell stop at or below, a buy
  stop at or above), then fills whole at that price, as a market order would.
- A market order is acknowledged and rests (nothing to trade against).
- Setting a price (:meth:`VenueBook.set_price`) fills every resting order it trades through.
- Positions are the net of every fill per account and symbol.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

BUY, SELL = "1", "2"
MARKET, LIMIT, STOP = "1", "2", "3"
WORKING = frozenset({"0", "1"})
"""OrdStatus of an order that can still fill: new, partially filled."""


@dataclass
class VenueOrder:
    cl_ord_id: str
    order_id: str
    account: str
    symbol: str
    side: str
    ord_type: str
    qty: Decimal
    price: Decimal | None = None
    stop_px: Decimal | None = None
    cum: Decimal = Decimal(0)
    value: Decimal = Decimal(0)
    """Σ fill quantity × price, for AvgPx."""
    status: str = "0"
    owner: object = None
    """The FIX session that placed (or last replaced) it: its reports go there."""

    @property
    def leaves(self) -> Decimal:
        return self.qty - self.cum if self.status in WORKING else Decimal(0)

    @property
    def avg_px(self) -> Decimal:
        return self.value / self.cum if self.cum else Decimal(0)


@dataclass(frozen=True)
class Fill:
    """One fill, with the order's totals right after it (its report says those)."""

    order: VenueOrder
    qty: Decimal
    price: Decimal
    cum: Decimal
    avg_px: Decimal
    status: str


@dataclass
class VenueBook:
    orders: dict[str, VenueOrder] = field(default_factory=dict)
    prices: dict[str, Decimal] = field(default_factory=dict)
    """The market price per symbol, set by the test."""
    nets: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    """(account, symbol) → net quantity filled (bought positive)."""
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    def place(self, order: VenueOrder, *, fill: bool = True) -> list[Fill]:
        """Book a new (or replacement) order; the fills it makes at once (none when ``fill`` is
        false: a delayed fill comes from :meth:`fill_now`)."""
        self.orders[order.cl_ord_id] = order
        if not fill:
            return []
        if order.ord_type == LIMIT and order.symbol != "REST" and self._marketable(order):
            return self._fill_in_halves(order)
        if order.ord_type == STOP:
            return self._trigger(order)
        if order.ord_type == MARKET and order.symbol in self.prices:
            return [self._fill(order, order.leaves, self.prices[order.symbol])]
        return []

    def set_price(self, symbol: str, price: Decimal) -> list[Fill]:
        """The market trades at ``price``: every resting order it trades through fills."""
        self.prices[symbol] = price
        fills: list[Fill] = []
        for order in list(self.orders.values()):
            if order.symbol != symbol or order.status not in WORKING:
                continue
            if order.ord_type == STOP:
                fills += self._trigger(order)
            elif order.ord_type == LIMIT and self._marketable(order):
                assert order.price is not None
                fills.append(self._fill(order, order.leaves, order.price))
        return fills

    def fill_now(self, order: VenueOrder) -> list[Fill]:
        """Fill a resting limit order at its price, in two halves (the delayed fill)."""
        return self._fill_in_halves(order) if order.status in WORKING else []

    def cancel(self, order: VenueOrder) -> None:
        order.status = "4"

    def replace(
        self,
        old: VenueOrder,
        new_id: str,
        *,
        ord_type: str,
        qty: Decimal,
        price: Decimal | None,
        stop: Decimal | None,
    ) -> VenueOrder:
        """The order ``old`` continues as ``new_id`` with a new quantity and price; what it
        filled counts towards the new quantity (FIX CumQty spans the chain). :meth:`place` it
        next for the fills the new terms make at once."""
        new = VenueOrder(
            cl_ord_id=new_id,
            order_id=old.order_id,
            account=old.account,
            symbol=old.symbol,
            side=old.side,
            ord_type=ord_type,
            qty=qty,
            price=price,
            stop_px=stop,
            cum=old.cum,
            value=old.value,
            status="1" if old.cum else "0",
            owner=old.owner,
        )
        old.status = "4"  # replaced: no longer working under its old id
        self.orders[new_id] = new
        return new

    def _marketable(self, order: VenueOrder) -> bool:
        market = self.prices.get(order.symbol)
        if market is None or order.price is None:
            return market is None  # no market set: every limit order trades at its own price
        return market <= order.price if order.side == BUY else market >= order.price

    def _trigger(self, order: VenueOrder) -> list[Fill]:
        market = self.prices.get(order.symbol)
        if market is None or order.stop_px is None:
            return []
        through = market >= order.stop_px if order.side == BUY else market <= order.stop_px
        return [self._fill(order, order.leaves, market)] if through else []

    def _fill_in_halves(self, order: VenueOrder) -> list[Fill]:
        assert order.price is not None
        leaves = order.leaves
        half = (leaves / 2).quantize(Decimal(1)) if leaves > 1 else leaves
        return [self._fill(order, q, order.price) for q in (half, leaves - half) if q > 0]

    def _fill(self, order: VenueOrder, qty: Decimal, price: Decimal) -> Fill:
        order.cum += qty
        order.value += qty * price
        order.status = "2" if order.cum >= order.qty else "1"
        key = (order.account, order.symbol)
        self.nets[key] = self.nets.get(key, Decimal(0)) + (qty if order.side == BUY else -qty)
        return Fill(order, qty, price, order.cum, order.avg_px, order.status)

    def positions(self, account: str) -> dict[str, Decimal]:
        """The account's non-zero net positions by symbol."""
        return {s: n for (a, s), n in sorted(self.nets.items()) if a == account and n != 0}

    def working(self, account: str | None) -> list[VenueOrder]:
        return [
            o
            for o in self.orders.values()
            if o.status in WORKING and (account is None or o.account == account)
        ]

"""The broker interface every adapter implements: the paper broker and the FIX adapter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

from orchestrator.domain.errors import OrchestratorError
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.values import OrderType, Side


@dataclass(frozen=True, slots=True)
class OrderTicket:
    """A command to the broker: ``SubmitOrder``."""

    client_order_id: str
    account_id: str
    symbol: str
    """The broker's own symbol name."""
    side: Side
    order_type: OrderType
    quantity: Decimal
    limit_price: Decimal | None
    reference_price: Decimal
    stop_price: Decimal | None = None
    """A STOP order's trigger price (FIX StopPx)."""


@dataclass(frozen=True, slots=True)
class Execution:
    execution_id: str
    """Unique per fill at the broker; consumers deduplicate on it."""
    quantity: Decimal
    price: Decimal
    executed_at: datetime


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """The broker's view of one order: status and every execution so far."""

    client_order_id: str
    broker_order_id: str | None
    status: OrderStatus
    quantity: Decimal
    executions: tuple[Execution, ...]
    reject_text: str | None = None
    symbol: str | None = None
    """The broker's symbol, where the adapter knows it (reconciliation records an order
    opened outside the system with it)."""
    side: Side | None = None
    order_type: OrderType | None = None
    open_quantity: Decimal | None = None
    """What it still works, where the adapter counts it otherwise than ``quantity`` less its
    executions (FIX: a replacement's OrderQty includes what the orders it replaced filled)."""

    @property
    def filled_quantity(self) -> Decimal:
        return sum((e.quantity for e in self.executions), Decimal(0))

    @property
    def working_quantity(self) -> Decimal:
        """What is left of it at the broker."""
        if self.open_quantity is not None:
            return self.open_quantity
        return max(Decimal(0), self.quantity - self.filled_quantity)


@dataclass(frozen=True, slots=True)
class KnownOrder:
    """An order the ledger has as working, as reconciliation asks a broker about it when the
    broker cannot list an account's orders (FIX 4.2: one OrderStatusRequest per order)."""

    client_order_id: str
    account_id: str
    symbol: str
    side: Side
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class AccountView:
    """Everything the account sync asks a broker about one account; ``None`` parts: no
    answer (unknown, never "flat" or "no orders")."""

    reading: AccountReading | None
    positions: list[BrokerPosition] | None
    orders: list[BrokerOrder] | None
    """The account's working orders at the broker."""


@dataclass(frozen=True, slots=True)
class Quote:
    """The broker's current prices for one symbol."""

    bid: Decimal
    ask: Decimal
    at: datetime


@dataclass(frozen=True, slots=True)
class BrokerPosition:
    """A position as the broker reports it: net, per account and symbol."""

    symbol: str
    side: Side
    quantity: Decimal
    average_price: Decimal | None


@dataclass(frozen=True, slots=True)
class AccountReading:
    """An account's money as the broker reports it (or as derived from our fills and the
    broker's prices, when it reports none)."""

    balance: Decimal
    equity: Decimal
    free_margin: Decimal
    reported: bool
    """The broker said so (``False``: derived)."""
    at: datetime


class ReplaceNotSupported(OrchestratorError):
    """The broker cannot cancel/replace an order: cancel it and submit a new one instead."""


class ReplaceRejected(OrchestratorError):
    """The broker refused this replace (FIX OrderCancelReject): the old order stands as it was,
    or has ended meanwhile (filled, cancelled).

    Attributes:
        client_order_id: The order that was to be replaced.
        text: The broker's words, verbatim (ours when the refusal is local: the order has
            already ended, or the broker does not know it).
        order: That order as now known (``None`` if the broker does not know it): its status
            and fills say whether it still works.
    """

    def __init__(self, client_order_id: str, text: str, order: BrokerOrder | None) -> None:
        self.client_order_id = client_order_id
        self.text = text
        self.order = order
        state = f"; it is {order.status}" if order is not None else ""
        super().__init__(f"replace of {client_order_id} refused: {text}{state}")


class Broker(Protocol):
    """Blocking broker calls, used from activities running on a thread pool.

    Transient faults raise :class:`~orchestrator.domain.errors.BrokerUnavailable`; they are retried
    with the same client order id, which every method treats as the order's identity.
    """

    def submit(self, ticket: OrderTicket) -> BrokerOrder:
        """Send the order. Idempotent: a client order id the broker already has returns that
        order unchanged instead of a second one."""
        ...

    def status(self, client_order_id: str) -> BrokerOrder | None:
        """The order's current state, or ``None`` if the broker never received it."""
        ...

    def cancel(self, client_order_id: str) -> BrokerOrder | None:
        """Cancel what is left of a working order; a terminal order is returned as it is."""
        ...

    def open_orders(self, account_id: str) -> list[BrokerOrder]:
        """Orders of the account that are not yet terminal."""
        ...

    def working_orders(
        self, account_id: str, known: Sequence[KnownOrder]
    ) -> list[BrokerOrder] | None:
        """The account's working orders as the broker itself reports them, for reconciliation
        (including orders placed outside the system, where the broker can list them; a broker
        that can only be asked per order is asked about each of ``known``). ``None`` when it
        does not answer: unknown, never "no orders"."""
        ...

    def replace(self, client_order_id: str, ticket: OrderTicket) -> BrokerOrder:
        """Cancel/replace a working order (FIX OrderCancelReplaceRequest): the ticket's new
        client order id, quantity and price take the old order's place at once, with no moment
        where neither works. Returns the new order; a fill the old one got first stays on it.
        ``ticket.quantity`` is what the new order is to work (FIX adapters add what the old
        order filled to OrderQty, which counts it). Idempotent on the new id.
        :class:`ReplaceNotSupported` if the venue cannot; :class:`ReplaceRejected` if it
        refused this one (the old order stands, or has ended)."""
        ...

    def quote(self, account_id: str, symbol: str) -> Quote | None:
        """The current bid and ask of ``symbol`` for the account; ``None`` when unknown."""
        ...

    def positions(self, account_id: str) -> list[BrokerPosition] | None:
        """The account's open positions as the broker reports them; ``None`` when it does not
        answer (a missing answer is not "flat")."""
        ...

    def account_state(self, account_id: str) -> AccountReading | None:
        """The account's balance, equity and free margin as the broker reports them; ``None``
        when it does not (the caller derives them)."""
        ...


@runtime_checkable
class AccountViews(Protocol):
    """A broker that answers everything the account sync asks about many accounts at once (the
    paper broker, whose book is our database: one transaction and a few statements for a page
    of accounts, instead of three transactions per account). An account it does not hold is
    left out of the answer."""

    def account_views(self, account_ids: Sequence[str]) -> dict[str, AccountView]: ...

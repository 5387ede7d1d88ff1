"""The broker interface every adapter implements: the paper broker and the FIX adapter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

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


class ReplaceRefused(OrchestratorError):
    """The broker refused a cancel/replace (FIX OrderCancelReject): nothing was replaced and no
    order under the new client order id exists. Typically the old order is no longer working
    (it filled first: its fills are on ``order``), or the broker never had it.

    Attributes:
        client_order_id: The order that was to be replaced.
        order: Its state as the broker knows it, every execution included; ``None`` when the
            broker does not know it.
        reason: Why, in the broker's words.
    """

    def __init__(self, client_order_id: str, order: BrokerOrder | None, reason: str) -> None:
        self.client_order_id = client_order_id
        self.order = order
        self.reason = reason
        super().__init__(f"cannot replace order {client_order_id}: {reason}")


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

    def replace(self, client_order_id: str, ticket: OrderTicket) -> BrokerOrder:
        """Cancel/replace a working order (FIX OrderCancelReplaceRequest): the ticket's new
        client order id, quantity and price take the old order's place at once, with no moment
        where neither works. Returns the new order; a fill the old one got first stays on it.
        Idempotent on the new id. :class:`ReplaceRefused` when the old order is no longer
        working (it filled or ended meanwhile: the error carries it, fills included) or is
        unknown; :class:`ReplaceNotSupported` if the venue cannot."""
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

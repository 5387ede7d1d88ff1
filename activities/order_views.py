"""Broker order states as the position keeper sees them: the fills of an order, news of it,
the protective order it is, or one the broker never had."""

from __future__ import annotations

from decimal import Decimal

from orchestrator.adapters.brokers.base import BrokerOrder
from orchestrator.domain.contracts.positions import BrokerFill, OrderNews
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.positions import ProtectionKind, ProtectiveOrder

NOT_AT_BROKER = "the broker does not know this order"


def filled(state: BrokerOrder) -> Decimal:
    return sum((e.quantity for e in state.executions), Decimal(0))


def fills(state: BrokerOrder) -> list[BrokerFill]:
    return [
        BrokerFill(
            execution_id=e.execution_id, quantity=e.quantity, price=e.price, at=e.executed_at
        )
        for e in state.executions
    ]


def news(account_id: str, kind: ProtectionKind, state: BrokerOrder) -> OrderNews:
    return OrderNews(
        account_id=account_id,
        client_order_id=state.client_order_id,
        kind=kind,
        status=state.status,
        executions=fills(state),
        reject_text=state.reject_text,
    )


def protective(
    kind: ProtectionKind, state: BrokerOrder, price: Decimal, quantity: Decimal | None = None
) -> ProtectiveOrder:
    """The order as the keeper holds it: ``quantity`` is what it was sent to work (a
    replacement's OrderQty also counts what the order it replaced filled)."""
    return ProtectiveOrder(
        kind=kind,
        client_order_id=state.client_order_id,
        price=price,
        quantity=state.quantity if quantity is None else quantity,
        status=state.status,
        filled=filled(state),
        reject_text=state.reject_text,
    )


def gone(order: ProtectiveOrder) -> BrokerOrder:
    """An order the broker never had, taken as cancelled: nothing of it can fill."""
    return BrokerOrder(
        client_order_id=order.client_order_id,
        broker_order_id=None,
        status=OrderStatus.CANCELLED,
        quantity=order.quantity,
        executions=(),
        reject_text=NOT_AT_BROKER,
    )

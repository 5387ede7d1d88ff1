"""The position keeper's activities: protective orders placed, resized and cancelled at the
broker, closing orders followed to their end, and the ledger's record of positions.

Blocking (database and broker), on the worker's thread pool. Each is safe to retry, with the
entries' ambiguity rule: every order has a client order id derived from its position and
generation (never from an attempt), it is in the ledger before the broker sees it, and a retry
asks the broker by that id before sending anything again.

Neither the kill switch nor an account's pause holds these orders back: they only ever reduce
a position, and a halt that kept a stop from the broker would leave the position's risk
unbounded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import order_views as views
from activities.keeper_orders import (
    KeeperOrders,
    NewOrder,
    Reports,
    closing_order,
    protective_order,
)
from activities.order_steps import Pace, Pulse
from orchestrator.adapters.brokers.base import (
    Broker,
    BrokerOrder,
    OrderTicket,
    ReplaceNotSupported,
    ReplaceRejected,
)
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.domain import ids
from orchestrator.domain.contracts.actions import QuoteAnswer, QuoteRequest
from orchestrator.domain.contracts.activities import Positions
from orchestrator.domain.contracts.payloads import ErrorType
from orchestrator.domain.contracts.positions import (
    CloseOutcome,
    CloseRequest,
    EntryFillsRequest,
    OrderNews,
    PositionFill,
    PositionsRecord,
    ProtectionOutcome,
    ProtectionRequest,
    ProtectionTarget,
    WatchedOrder,
    WatchRequest,
)
from orchestrator.domain.errors import BrokerUnavailable
from orchestrator.domain.orders import TERMINAL, OrderStatus
from orchestrator.domain.positions import Contract, ProtectionKind, ProtectiveOrder


class PositionActivities(Positions):
    """The keeper's activities (see :class:`~orchestrator.domain.contracts.activities.Positions`)
    on the ledger and a broker."""

    def __init__(
        self,
        db: Database,
        broker: Broker,
        *,
        poll_interval_s: float = 0.2,
        clock: Callable[[], datetime] | None = None,
        pace: Pace | None = None,
    ) -> None:
        self._db = db
        self._broker = broker
        self._pace = pace or Pace(0)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._orders = KeeperOrders(db, broker, self._pace, self._clock, poll_interval_s)

    # ----------------------------------------------------------------------------------------
    # Protection

    @activity.defn
    def protect(self, request: ProtectionRequest) -> list[ProtectionOutcome]:
        """Each target's stop and take-profit made exactly what it says (heartbeats between
        broker steps, whenever one is due). Positions without a working protective order (new
        ones, the usual) get theirs together: every stop, then every take-profit, each kind
        placed as one batch (:class:`~activities.keeper_orders.KeeperOrders`); the others one
        position after the other, what the broker says of their orders booked together at
        the end."""
        pulse = Pulse()
        try:
            with self._orders.booked(pulse) as reports:
                outcomes = self._protect_new(
                    [t for t in request.targets if not _has_working_order(t)], reports
                )
                for target in request.targets:
                    if target.account_id not in outcomes:
                        outcomes[target.account_id] = self._protect(target, reports)
                        pulse.beat(target.account_id)
        except BrokerUnavailable as exc:
            raise ApplicationError(str(exc), type=ErrorType.BROKER_UNAVAILABLE) from exc
        return [outcomes[target.account_id] for target in request.targets]

    def _protect_new(
        self, targets: list[ProtectionTarget], reports: Reports
    ) -> dict[str, ProtectionOutcome]:
        """:meth:`_protect` for positions without a working protective order: the same orders,
        ids and outcomes, each kind placed for all of them at once. A stop that fills as it is
        placed leaves the take-profit to cover only what is still open."""
        left = {t.account_id: t.quantity for t in targets}
        placed: dict[str, dict[ProtectionKind, ProtectiveOrder | None]] = {
            t.account_id: {} for t in targets
        }
        fresh: dict[str, list[tuple[ProtectionKind, BrokerOrder]]] = {
            t.account_id: [] for t in targets
        }
        refused: dict[str, str] = {}
        for kind in (ProtectionKind.STOP, ProtectionKind.TAKE_PROFIT):
            batch: list[tuple[ProtectionTarget, Decimal, NewOrder]] = []
            for target in targets:
                price = _wanted(target)[kind]
                if price is None or left[target.account_id] <= 0:
                    placed[target.account_id][kind] = None
                    if price is not None:  # else never written ahead, in any attempt
                        reports.never_sent(_order_id(target, kind))
                    continue
                order = protective_order(
                    target, kind, price, left[target.account_id], self._clock()
                )
                batch.append((target, price, order))
            states = self._orders.place([order for _, _, order in batch], reports.pulse)
            for target, price, order in batch:
                state = states[order.ticket.client_order_id]
                account_id = target.account_id
                placed[account_id][kind] = views.protective(kind, state, price)
                fresh[account_id].append((kind, state))
                left[account_id] = max(Decimal(0), left[account_id] - views.filled(state))
                if kind is ProtectionKind.STOP and state.status is OrderStatus.REJECTED:
                    refused[account_id] = state.reject_text or "rejected without a reason"
        return {
            t.account_id: ProtectionOutcome(
                account_id=t.account_id,
                stop=placed[t.account_id][ProtectionKind.STOP],
                take_profit=placed[t.account_id][ProtectionKind.TAKE_PROFIT],
                stop_refused=refused.get(t.account_id),
                superseded=[
                    views.news(t.account_id, kind, state)
                    for kind, state in fresh[t.account_id]
                    if state.executions
                ],
            )
            for t in targets
        }

    def _protect(self, target: ProtectionTarget, reports: Reports) -> ProtectionOutcome:
        """First what the broker says of the position's current orders (a fill the keeper has
        not seen yet reduces what is to be covered); then, per kind, the order kept when it is
        already right, else replaced (cancel/replace where the broker can), or cancelled and
        submitted anew under the target's generation; nothing once the position is flat."""
        current = {
            ProtectionKind.STOP: target.current_stop,
            ProtectionKind.TAKE_PROFIT: target.current_take_profit,
        }
        news: list[OrderNews] = []
        states: dict[ProtectionKind, BrokerOrder] = {}
        unseen = Decimal(0)
        for kind, order in current.items():
            if order is None or not order.working:
                continue
            state = self._broker.status(order.client_order_id) or views.gone(order)
            reports.add(state)
            news.append(views.news(target.account_id, kind, state))
            unseen += max(Decimal(0), views.filled(state) - order.filled)
            states[kind] = state
        quantity = max(Decimal(0), target.quantity - unseen)
        wanted = _wanted(target)
        # Orders that must go and cannot be replaced are cancelled before anything new is
        # sent, so a fill they get meanwhile shrinks what the new orders cover.
        placed: dict[ProtectionKind, ProtectiveOrder | None] = {}
        fresh: list[tuple[ProtectionKind, BrokerOrder]] = []
        for kind, order in current.items():
            working = states.get(kind)
            if order is None or working is None or working.status in TERMINAL:
                continue
            price = wanted[kind] if quantity > 0 else None
            if (
                price is not None
                and order.price == price
                and order.quantity - views.filled(working) == quantity
            ):
                placed[kind] = views.protective(kind, working, order.price, order.quantity)
                continue
            ended: BrokerOrder | None = None
            if price is not None:
                try:
                    replacement = self._replace(
                        working,
                        protective_order(target, kind, price, quantity, self._clock()),
                        reports,
                    )
                except ReplaceRejected as error:  # a new order follows
                    replacement, ended = None, error.order or views.gone(order)
                    if ended.status not in TERMINAL:  # refused, yet it stands: cancel it
                        ended = self._broker.cancel(working.client_order_id) or ended
                if replacement is not None:
                    placed[kind] = views.protective(kind, replacement, price, quantity)
                    fresh.append((kind, replacement))
                    quantity = max(Decimal(0), quantity - views.filled(replacement))
                    # Its fills up to the replace are news too (the next round resizes).
                    old = self._broker.status(working.client_order_id) or working
                    if old.status not in TERMINAL:
                        # Replaced: it works no more, whatever a late report still says.
                        old = dataclasses.replace(old, status=OrderStatus.CANCELLED)
                    reports.add(old)
                    news.append(views.news(target.account_id, kind, old))
                    continue
            if ended is None:
                ended = self._broker.cancel(working.client_order_id) or working
            reports.add(ended)
            news.append(views.news(target.account_id, kind, ended))
            quantity = max(Decimal(0), quantity - (views.filled(ended) - views.filled(working)))
        refused = None
        for kind, price in wanted.items():
            if kind in placed:
                continue
            if price is None or quantity <= 0:
                placed[kind] = None
                if price is not None:  # else never written ahead, in any attempt
                    reports.never_sent(_order_id(target, kind))
                continue
            state = self._submit(target, kind, price, quantity, reports.pulse)
            placed[kind] = views.protective(kind, state, price)
            fresh.append((kind, state))
            # Filled as it was placed (the market through its price): the other covers less.
            quantity = max(Decimal(0), quantity - views.filled(state))
            if kind is ProtectionKind.STOP and state.status is OrderStatus.REJECTED:
                refused = state.reject_text or "rejected without a reason"
        # A new order can fill as it is placed (the market gapped through its price while the
        # position was being protected): its executions are news like any other.
        news.extend(
            views.news(target.account_id, kind, state) for kind, state in fresh if state.executions
        )
        return ProtectionOutcome(
            account_id=target.account_id,
            stop=placed.get(ProtectionKind.STOP),
            take_profit=placed.get(ProtectionKind.TAKE_PROFIT),
            stop_refused=refused,
            superseded=news,
        )

    def _replace(
        self,
        working: BrokerOrder,
        order: NewOrder,
        reports: Reports,
    ) -> BrokerOrder | None:
        """The working order cancel/replaced by ``order``; ``None`` when the broker cannot
        (a venue without 35=G), and the caller cancels and submits anew."""
        ticket = order.ticket
        try:
            state = self._existing(ticket)
            if state is None:
                with self._db.transaction() as session:
                    repository.record_position_orders(session, [order.row])
                # OrderQty in FIX's meaning: the order's total, what the old one filled
                # included; the new order works the ticket's quantity.
                total = dataclasses.replace(
                    ticket, quantity=ticket.quantity + views.filled(working)
                )
                self._pace.wait()
                state = self._broker.replace(working.client_order_id, total)
        except ReplaceNotSupported:
            return None
        reports.add(state)
        return state

    def _submit(
        self,
        target: ProtectionTarget,
        kind: ProtectionKind,
        price: Decimal,
        quantity: Decimal,
        pulse: Pulse,
    ) -> BrokerOrder:
        order = protective_order(target, kind, price, quantity, self._clock())
        return self._orders.place([order], pulse)[order.ticket.client_order_id]

    def _existing(self, ticket: OrderTicket) -> BrokerOrder | None:
        """On a retry, the order the broker already has under the ticket's id."""
        if activity.info().attempt <= 1:
            return None
        return self._broker.status(ticket.client_order_id)

    # ----------------------------------------------------------------------------------------
    # Watching

    @activity.defn
    def check_orders(self, request: WatchRequest) -> list[OrderNews]:
        """Each watched order as the broker has it now; news for those that filled more than
        the keeper knows, or ended. Every report is booked, all in one transaction."""
        news = []
        try:
            with self._orders.booked(Pulse()) as reports:
                for watched in request.orders:
                    item = self._check(watched, reports)
                    if item is not None:
                        news.append(item)
        except BrokerUnavailable as exc:
            raise ApplicationError(str(exc), type=ErrorType.BROKER_UNAVAILABLE) from exc
        return news

    def _check(self, watched: WatchedOrder, reports: Reports) -> OrderNews | None:
        state = self._broker.status(watched.client_order_id)
        if state is None:
            state = BrokerOrder(
                client_order_id=watched.client_order_id,
                broker_order_id=None,
                status=OrderStatus.CANCELLED,
                quantity=Decimal(0),
                executions=(),
                reject_text=views.NOT_AT_BROKER,
            )
        reports.add(state)
        if state.status not in TERMINAL and views.filled(state) <= watched.filled:
            return None
        return views.news(watched.account_id, watched.kind, state)

    # ----------------------------------------------------------------------------------------
    # Closing

    @activity.defn
    def close_positions(self, request: CloseRequest) -> list[CloseOutcome]:
        """Each closing order written ahead, sent (or found, on a retry) and followed until
        it ends; the orders are placed together first (one batch,
        :class:`~activities.keeper_orders.KeeperOrders`), then followed together."""
        try:
            placed = self._orders.place(
                [closing_order(order, self._clock()) for order in request.orders], Pulse()
            )
            states = self._orders.follow(placed)
        except BrokerUnavailable as exc:
            raise ApplicationError(str(exc), type=ErrorType.BROKER_UNAVAILABLE) from exc
        outcomes = []
        for order in request.orders:
            state = states[order.client_order_id]
            outcomes.append(
                CloseOutcome(
                    account_id=order.account_id,
                    client_order_id=order.client_order_id,
                    status=state.status,
                    executions=views.fills(state),
                    reject_text=state.reject_text,
                )
            )
        return outcomes

    # ----------------------------------------------------------------------------------------
    # The ledger

    @activity.defn
    def entry_fills(self, request: EntryFillsRequest) -> list[PositionFill]:
        with self._db.transaction() as session:
            rows = repository.entry_fills(session, request.signal_id, request.account_ids)
        return [
            PositionFill(
                account_id=row.account_id,
                broker=row.broker,
                broker_symbol=row.broker_symbol,
                contract=Contract(
                    tick_size=row.tick_size,
                    tick_value=row.tick_value,
                    lot_step=row.lot_step,
                    min_lot=row.min_lot,
                ),
                entry_quantity=row.quantity,
                average_entry=row.average_price,
                final=True,
            )
            for row in rows
        ]

    @activity.defn
    def record_positions(self, record: PositionsRecord) -> None:
        with self._db.transaction() as session:
            repository.record_positions(
                session, record.keeper_workflow_id, record.positions, self._clock()
            )

    @activity.defn
    def quotes(self, request: QuoteRequest) -> list[QuoteAnswer]:
        """The broker's bid and ask for each position's symbol, where it gives one (the paper
        market does; FIX venues here do not)."""
        answers = []
        try:
            for position in request.positions:
                quote = self._broker.quote(position.account_id, position.broker_symbol)
                if quote is not None:
                    answers.append(
                        QuoteAnswer(
                            account_id=position.account_id,
                            broker_symbol=position.broker_symbol,
                            bid=quote.bid,
                            ask=quote.ask,
                        )
                    )
        except BrokerUnavailable as exc:
            raise ApplicationError(str(exc), type=ErrorType.BROKER_UNAVAILABLE) from exc
        return answers

    def all(self) -> list[Callable[..., object]]:
        return [
            self.protect,
            self.check_orders,
            self.close_positions,
            self.entry_fills,
            self.quotes,
            self.record_positions,
        ]


def _has_working_order(target: ProtectionTarget) -> bool:
    return any(
        order is not None and order.working
        for order in (target.current_stop, target.current_take_profit)
    )


def _wanted(target: ProtectionTarget) -> dict[ProtectionKind, Decimal | None]:
    """The price each protective order of the target is to have; ``None``: none."""
    return {
        ProtectionKind.STOP: None if target.skip_stop else target.stop,
        ProtectionKind.TAKE_PROFIT: target.take_profit,
    }


def _order_id(target: ProtectionTarget, kind: ProtectionKind) -> str:
    """The client order id of the target's ``kind`` of order at its generation."""
    return ids.protective_client_order_id(
        target.signal_id, target.account_id, kind.code, target.generation
    )

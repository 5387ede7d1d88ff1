"""The position keeper's new orders (stops, take-profits, closes), many at a time, as an entry
slice places its legs' orders: the ledger's work is a constant number of statements however
many orders go out.

1. On a retry, the broker is asked about every client order id first: what it holds was sent
   by the attempt before and is booked, never sent again.
2. Every other order is written ahead in one transaction.
3. Each is sent, at the broker's pace (the one this worker's entries share), with its own
   client order id.
4. The broker's answers are booked in one transaction — also when a send fails without an
   answer, for those sent before it, so that the retry finds the ledger as the broker is.

Closing orders are then followed together until each ends (one status poll each per interval,
what changed booked together). What the broker says of orders already working (a check, a
cancel, a replace) is collected over the attempt and booked in one transaction at its end
(:meth:`KeeperOrders.booked`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from temporalio import activity

from activities.order_steps import Pace, Pulse, report_of
from orchestrator.adapters.brokers.base import Broker, BrokerOrder, OrderTicket
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.domain import ids, positions
from orchestrator.domain.contracts.positions import CloseOrder, ProtectionTarget
from orchestrator.domain.errors import BrokerUnavailable
from orchestrator.domain.orders import TERMINAL, OrderPurpose
from orchestrator.domain.positions import ProtectionKind
from orchestrator.domain.values import OrderType

NOT_SENT = "not sent: the position it was to protect was closed first"
"""Why an order written ahead is ended in the ledger: the broker never had it."""


@dataclass(frozen=True)
class NewOrder:
    """One order to place: what the broker is sent, and its ledger row written ahead
    (:func:`~orchestrator.adapters.db.repository.pending_order_values`)."""

    ticket: OrderTicket
    row: dict[str, object]


def protective_order(
    target: ProtectionTarget,
    kind: ProtectionKind,
    price: Decimal,
    quantity: Decimal,
    now: datetime,
) -> NewOrder:
    """A stop (at ``price``) or a take-profit (a limit at ``price``) for ``quantity`` of the
    target's position, under the id of its kind and the target's generation."""
    stop = kind is ProtectionKind.STOP
    ticket = OrderTicket(
        client_order_id=ids.protective_client_order_id(
            target.signal_id, target.account_id, kind.code, target.generation
        ),
        account_id=target.account_id,
        symbol=target.broker_symbol,
        side=positions.closing_side(target.position_side),
        order_type=OrderType.STOP if stop else OrderType.LIMIT,
        quantity=quantity,
        limit_price=None if stop else price,
        reference_price=price,
        stop_price=price if stop else None,
    )
    return NewOrder(
        ticket,
        _row(
            ticket,
            signal_id=target.signal_id,
            purpose=kind.purpose,
            sequence=target.generation,
            broker=target.broker,
            now=now,
        ),
    )


def closing_order(order: CloseOrder, now: datetime) -> NewOrder:
    """A closing order at market."""
    ticket = OrderTicket(
        client_order_id=order.client_order_id,
        account_id=order.account_id,
        symbol=order.broker_symbol,
        side=order.side,
        order_type=OrderType.MARKET,
        quantity=order.quantity,
        limit_price=None,
        reference_price=order.reference_price,
    )
    return NewOrder(
        ticket,
        _row(
            ticket,
            signal_id=order.signal_id,
            purpose=OrderPurpose.CLOSE,
            sequence=order.number,
            broker=order.broker,
            now=now,
        ),
    )


def _row(
    ticket: OrderTicket,
    *,
    signal_id: str,
    purpose: OrderPurpose,
    sequence: int,
    broker: str,
    now: datetime,
) -> dict[str, object]:
    return repository.pending_order_values(
        client_order_id=ticket.client_order_id,
        signal_id=signal_id,
        account_id=ticket.account_id,
        business_sequence=sequence,
        purpose=purpose,
        broker=broker,
        broker_symbol=ticket.symbol,
        side=ticket.side,
        order_type=ticket.order_type,
        quantity=ticket.quantity,
        limit_price=ticket.limit_price,
        stop_price=ticket.stop_price,
        now=now,
    )


class Reports:
    """The broker's reports of orders an attempt has had, to be booked together
    (:meth:`KeeperOrders.booked`), and the orders it will never send; a heartbeat with each
    report, if one is due."""

    def __init__(self, pulse: Pulse) -> None:
        self.pulse = pulse
        self.states: list[BrokerOrder] = []
        self.unsent: list[str] = []

    def add(self, state: BrokerOrder) -> None:
        self.states.append(state)
        self.pulse.beat(state.client_order_id)

    def never_sent(self, client_order_id: str) -> None:
        """An order written ahead (by an earlier attempt, or for a replace the broker refused)
        and not needed after all: to be ended in the ledger, never sent."""
        self.unsent.append(client_order_id)


class KeeperOrders:
    """Places, books and follows the keeper's orders on one broker and the ledger."""

    def __init__(
        self,
        db: Database,
        broker: Broker,
        pace: Pace,
        clock: Callable[[], datetime],
        poll_interval_s: float,
    ) -> None:
        self._db = db
        self._broker = broker
        self._pace = pace
        self._clock = clock
        self._poll_interval_s = poll_interval_s

    def place(self, orders: Sequence[NewOrder], pulse: Pulse) -> dict[str, BrokerOrder]:
        """Each order as the broker has it once placed (see the module's docstring), by client
        order id. Raises :class:`BrokerUnavailable` when a send fails without an answer."""
        states: dict[str, BrokerOrder] = {}
        if activity.info().attempt > 1:
            for order in orders:
                state = self._broker.status(order.ticket.client_order_id)
                if state is not None:
                    states[state.client_order_id] = state
        unsent = [o for o in orders if o.ticket.client_order_id not in states]
        if unsent:
            with self._db.transaction() as session:
                repository.record_position_orders(session, [o.row for o in unsent])
        try:
            for order in unsent:
                self._pace.wait()
                states[order.ticket.client_order_id] = self._broker.submit(order.ticket)
                pulse.beat(order.ticket.client_order_id)
        except BrokerUnavailable:
            self.book(states.values(), pulse)
            raise
        self.book(states.values(), pulse)
        return states

    def book(
        self,
        states: Iterable[BrokerOrder],
        pulse: Pulse | None = None,
        *,
        unsent: Sequence[str] = (),
    ) -> None:
        """The broker's word on these orders, in the ledger, in one transaction; with it, the
        orders never sent ended (:data:`NOT_SENT`)."""
        reports = [(state.client_order_id, report_of(state)) for state in states]
        if not reports and not unsent:
            return
        with self._db.transaction() as session:
            repository.apply_broker_reports(session, reports, self._clock())
            repository.end_unsent_orders(session, unsent, NOT_SENT, self._clock())
        if pulse is not None:
            pulse.beat(f"booked {len(reports)}")

    @contextlib.contextmanager
    def booked(self, pulse: Pulse) -> Iterator[Reports]:
        """Reports collected in the block, booked in one transaction when it ends; also when
        it raises (what the broker said is in the ledger before the retry asks again), unless
        that booking fails too."""
        reports = Reports(pulse)
        try:
            yield reports
        except BaseException:
            with contextlib.suppress(Exception):
                self.book(reports.states, unsent=reports.unsent)
            raise
        self.book(reports.states, pulse, unsent=reports.unsent)

    def follow(self, states: dict[str, BrokerOrder]) -> dict[str, BrokerOrder]:
        """Each order followed until it ends; a heartbeat each round. Raises
        :class:`BrokerUnavailable` for an order the broker no longer knows (asked again on the
        retry)."""
        states = dict(states)
        while working := [cid for cid, s in states.items() if s.status not in TERMINAL]:
            activity.heartbeat(f"{len(states) - len(working)} of {len(states)} ended")
            activity.wait_for_cancelled_sync(self._poll_interval_s)
            changed = []
            for cid in working:
                current = self._broker.status(cid)
                if current is None:
                    raise BrokerUnavailable(f"broker lost track of {cid}; will ask again")
                if current != states[cid]:
                    states[cid] = current
                    changed.append(current)
            self.book(changed)
        return states

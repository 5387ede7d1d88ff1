"""Account sync: the trading day, reconciliation of the broker's positions and working orders
with the ledger's, and the limits a synced state is checked against. Pure rules; the activity
(``activities/sync.py``) reads the broker and writes the state."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from orchestrator.domain.orders import OrderPurpose, OrderStatus
from orchestrator.domain.planning.eligibility import fall_from_peak, percent
from orchestrator.domain.values import Model, OrderType, Side, plain

SYSTEM = "system"
"""Who the sync's reduce-only and operator-action records name."""


class StateSource(StrEnum):
    BOOK = "book"
    """From the book file (``accounts load``), not yet synced."""
    REPORTED = "reported"
    """The broker reported balance, equity and free margin."""
    DERIVED = "derived"
    """Last known balance plus our open positions marked at the broker's prices."""


class ReduceOnlyCause(StrEnum):
    """What holds a system reduce-only; each is lifted its own way."""

    RECONCILIATION = "reconciliation"
    """A mismatch: lifted when the operator accepts the broker's view (``reconcile --accept``)
    or the two agree again, and nothing else holds it."""
    DAILY_LOSS = "daily_loss"
    """Today's loss reached the budget: lifted by the sync at the next trading day."""
    DRAWDOWN = "drawdown"
    """The drawdown reached its maximum: lifted only by an operator (``allow-entries``)."""


class MismatchKind(StrEnum):
    UNKNOWN_TO_LEDGER = "UNKNOWN_TO_LEDGER"
    """The broker holds a position the ledger does not (opened outside the system)."""
    MISSING_AT_BROKER = "MISSING_AT_BROKER"
    """The ledger holds a position the broker reports no longer."""
    QUANTITY_DIFFERS = "QUANTITY_DIFFERS"
    UNKNOWN = "UNKNOWN"
    """The ledger holds a position and the broker did not answer: unknown, never flat."""


class Mismatch(Model):
    """One broker symbol of one account where the broker's net and the ledger's differ.
    Quantities are signed lots (positive long)."""

    account_id: str
    broker_symbol: str
    kind: MismatchKind
    broker_quantity: Decimal | None
    broker_average_price: Decimal | None = None
    ledger_quantity: Decimal

    @property
    def acts(self) -> bool:
        """A real difference (the account goes reduce-only); an unknown is only flagged."""
        return self.kind is not MismatchKind.UNKNOWN

    def describe(self) -> str:
        broker = "no answer" if self.broker_quantity is None else plain(self.broker_quantity)
        return (
            f"{self.broker_symbol} {self.kind.value}: broker {broker}, "
            f"ledger {plain(self.ledger_quantity)} lots (signed, + long)"
        )


class OrderMismatch(Model):
    """One order where the broker's working orders and the ledger's differ (kinds as for
    positions: UNKNOWN_TO_LEDGER, the broker works an order the ledger does not; MISSING_AT_BROKER,
    the ledger has an order working that the broker does not report, whose fate is unknown,
    never taken for cancelled; QUANTITY_DIFFERS; UNKNOWN, the broker did not answer)."""

    account_id: str
    client_order_id: str
    kind: MismatchKind
    broker_symbol: str | None
    side: Side | None
    broker_quantity: Decimal | None
    """What the order still works at the broker (lots; ``None``: it does not report it)."""
    broker_filled: Decimal | None = None
    broker_order_id: str | None = None
    order_type: OrderType | None = None
    ledger_quantity: Decimal | None
    """What the ledger has it still work (its quantity less its fills; ``None``: the ledger
    has no working order of that id)."""
    ledger_status: OrderStatus | None = None
    """What the ledger says of an order the broker works and the ledger does not (``None``:
    the ledger never had it; else the state it ended in)."""

    @property
    def acts(self) -> bool:
        return self.kind is not MismatchKind.UNKNOWN

    def describe(self) -> str:
        broker = "not reported" if self.broker_quantity is None else plain(self.broker_quantity)
        if self.kind is MismatchKind.UNKNOWN:
            broker = "no answer"
        ledger = (
            plain(self.ledger_quantity)
            if self.ledger_quantity is not None
            else (f"ended {self.ledger_status}" if self.ledger_status else "none")
        )
        return (
            f"order {self.client_order_id} ({self.broker_symbol or '?'} "
            f"{self.side.value if self.side else '?'}) {self.kind.value}: broker {broker}, "
            f"ledger {ledger} lots"
        )


class LedgerOrder(Model):
    """An order of the ledger as order reconciliation compares it."""

    client_order_id: str
    broker_symbol: str
    side: Side
    quantity: Decimal
    filled: Decimal = Decimal(0)
    status: OrderStatus
    purpose: OrderPurpose
    written_at: datetime | None = None
    """When the ledger wrote it (ahead of its submission)."""

    @property
    def working(self) -> Decimal:
        return max(Decimal(0), self.quantity - self.filled)


class BrokerWorking(Model):
    """An order the broker reports as working."""

    client_order_id: str
    broker_symbol: str | None = None
    side: Side | None = None
    quantity: Decimal
    """What it still works (lots)."""
    filled: Decimal = Decimal(0)
    broker_order_id: str | None = None
    order_type: OrderType | None = None


SENT_UNCONFIRMED = OrderStatus.PENDING_SUBMIT
"""A ledger order written ahead of its submission: the broker may or may not have it yet."""

WRITTEN_AHEAD_MARGIN = timedelta(minutes=5)
"""How much longer than an entry order's whole schedule-to-close an order may stay written ahead
(``PENDING_SUBMIT``) before the broker is expected to have it (see
:func:`written_ahead_grace`)."""


def written_ahead_grace(order_schedule_to_close_s: float) -> timedelta:
    """How long an order may stay written ahead before the broker is expected to have it:
    longer than an order activity's attempts take to send it or give up (an entry's
    schedule-to-close, a keeper's two-minute step), by ``WRITTEN_AHEAD_MARGIN``. One still
    unconfirmed after this, and not at the broker, is ``MISSING_AT_BROKER``: a stop stuck there
    would leave its position without protection, unseen."""
    return timedelta(seconds=order_schedule_to_close_s) + WRITTEN_AHEAD_MARGIN


def expected_at_broker(order: LedgerOrder, written_before: datetime | None) -> bool:
    """The broker should have this order by now: it was sent, or written ahead at or before
    ``written_before`` (it is not a write-ahead still in flight)."""
    if order.status != SENT_UNCONFIRMED:
        return True
    return (
        written_before is not None
        and order.written_at is not None
        and order.written_at <= written_before
    )


def reconcile_orders(
    account_id: str,
    broker: Sequence[BrokerWorking] | None,
    working: Mapping[str, LedgerOrder],
    ended: Mapping[str, OrderStatus],
    written_before: datetime | None = None,
) -> list[OrderMismatch]:
    """The differences between the broker's working orders (``None``: it did not answer) and
    the ledger's ``working`` ones (entries and protective orders, by client order id), in what
    each still works (quantity less fills: a replaced order's total counts fills that stay on
    the order it replaced, and a fill not yet recorded shows once, in flight); an
    order the broker works that the ledger has ended is named with its ``ended`` status. An
    order written ahead of its submission (PENDING_SUBMIT) is expected at the broker only if it
    was written at or before ``written_before`` (see :func:`written_ahead_grace`). In client
    order id order."""

    def unseen(cid: str, order: LedgerOrder, kind: MismatchKind) -> OrderMismatch:
        """The ledger's order, of which the broker says nothing."""
        return OrderMismatch(
            account_id=account_id,
            client_order_id=cid,
            kind=kind,
            broker_symbol=order.broker_symbol,
            side=order.side,
            broker_quantity=None,
            ledger_quantity=order.working,
        )

    if broker is None:
        return [
            unseen(cid, order, MismatchKind.UNKNOWN)
            for cid, order in sorted(working.items())
            if expected_at_broker(order, written_before)
        ]
    theirs = {o.client_order_id: o for o in broker}
    found = []
    for cid in sorted(set(theirs) | set(working)):
        at_broker, ours = theirs.get(cid), working.get(cid)
        if at_broker is None and ours is not None:
            if not expected_at_broker(ours, written_before):
                continue
            found.append(unseen(cid, ours, MismatchKind.MISSING_AT_BROKER))
            continue
        assert at_broker is not None
        if ours is not None and ours.working == at_broker.quantity:
            continue
        found.append(
            OrderMismatch(
                account_id=account_id,
                client_order_id=cid,
                kind=MismatchKind.UNKNOWN_TO_LEDGER
                if ours is None
                else MismatchKind.QUANTITY_DIFFERS,
                broker_symbol=at_broker.broker_symbol or (ours.broker_symbol if ours else None),
                side=at_broker.side or (ours.side if ours else None),
                broker_quantity=at_broker.quantity,
                broker_filled=at_broker.filled,
                broker_order_id=at_broker.broker_order_id,
                order_type=at_broker.order_type,
                ledger_quantity=ours.working if ours is not None else None,
                ledger_status=ended.get(cid) if ours is None else None,
            )
        )
    return found


def trading_day_start(now: datetime, boundary: time, zone: str) -> datetime:
    """The latest trading-day boundary at or before ``now``: ``boundary`` on the wall clock of
    ``zone`` (17:00 America/New_York: the FX day, which follows New York's daylight saving)."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    start = datetime.combine(local.date(), boundary, tzinfo=tz)
    if start > local:
        start = datetime.combine(local.date() - timedelta(days=1), boundary, tzinfo=tz)
    return start


def signed(side: Side | str, quantity: Decimal) -> Decimal:
    return quantity if Side(side) is Side.BUY else -quantity


def net_by_symbol(positions: Iterable[tuple[str, Side | str, Decimal]]) -> dict[str, Decimal]:
    """Signed net lots per symbol of ``(symbol, side, quantity)``; flat symbols left out."""
    net: dict[str, Decimal] = {}
    for symbol, side, quantity in positions:
        net[symbol] = net.get(symbol, Decimal(0)) + signed(side, quantity)
    return {symbol: q for symbol, q in net.items() if q != 0}


def reconcile(
    account_id: str,
    broker: Mapping[str, Decimal] | None,
    ledger: Mapping[str, Decimal],
    *,
    broker_prices: Mapping[str, Decimal | None] | None = None,
) -> list[Mismatch]:
    """The differences between the broker's net positions (``None``: it did not answer) and
    the ledger's, per symbol, in symbol order."""
    if broker is None:
        return [
            Mismatch(
                account_id=account_id,
                broker_symbol=symbol,
                kind=MismatchKind.UNKNOWN,
                broker_quantity=None,
                ledger_quantity=quantity,
            )
            for symbol, quantity in sorted(ledger.items())
        ]
    prices = broker_prices or {}
    found = []
    for symbol in sorted(set(broker) | set(ledger)):
        theirs = broker.get(symbol, Decimal(0))
        ours = ledger.get(symbol, Decimal(0))
        if theirs == ours:
            continue
        kind = (
            MismatchKind.UNKNOWN_TO_LEDGER
            if ours == 0
            else MismatchKind.MISSING_AT_BROKER
            if theirs == 0
            else MismatchKind.QUANTITY_DIFFERS
        )
        found.append(
            Mismatch(
                account_id=account_id,
                broker_symbol=symbol,
                kind=kind,
                broker_quantity=theirs,
                broker_average_price=prices.get(symbol),
                ledger_quantity=ours,
            )
        )
    return found


class Breach(Model):
    """A limit the synced state reached."""

    cause: ReduceOnlyCause
    reason: str
    """The figures that triggered it."""


def breaches(
    *,
    currency: str,
    balance: Decimal,
    equity: Decimal,
    peak_equity: Decimal,
    realized_loss_today: Decimal,
    daily_loss_budget: Decimal,
    max_drawdown: Decimal,
) -> list[Breach]:
    """The limits the state reaches: today's loss (realized today plus the unrealized loss at
    ``equity``) at the daily budget, the fall from ``peak_equity`` at the maximum drawdown."""
    found = []
    unrealized_loss = max(Decimal(0), balance - equity)
    loss = realized_loss_today + unrealized_loss
    if daily_loss_budget >= 0 and loss >= daily_loss_budget and loss > 0:
        found.append(
            Breach(
                cause=ReduceOnlyCause.DAILY_LOSS,
                reason=(
                    f"today's loss {plain(loss)} {currency} (realized "
                    f"{plain(realized_loss_today)}, unrealized {plain(unrealized_loss)}) reached "
                    f"the daily budget {plain(daily_loss_budget)} {currency}"
                ),
            )
        )
    if peak_equity > 0:  # without a peak no fall is measured here (planning denies the account)
        drawdown = fall_from_peak(peak_equity, equity)
        if drawdown >= max_drawdown:
            found.append(
                Breach(
                    cause=ReduceOnlyCause.DRAWDOWN,
                    reason=(
                        f"drawdown {percent(drawdown)} (equity {plain(equity)}, peak "
                        f"{plain(peak_equity)} {currency}) reached the limit "
                        f"{percent(max_drawdown)}"
                    ),
                )
            )
    return found

"""The audit of a signal's positions: the keeper's story in plain words (entry fills, protective
orders placed, resized and cancelled, their fills, closes), and its value check, which
re-derives from the fills the history recorded the quantity every protective order had to cover,
and compares it with what the keeper asked for.

What the keeper saw, in history order: the legs' entry totals (``position_filled`` and
``positions_filled`` signals, one fill or the fills of one workflow task of the legs, and
the ledger's entry fills once the legs were done) and every execution of its protective and
closing orders (the results of ``protect``, ``check_orders`` and ``close_positions``,
deduplicated by execution id). At each ``protect``, a position's target quantity must be its
entries' total less what closed, and no order it placed may cover more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from orchestrator.domain.actions import AccountOutcome, ActionKind, TradeAction
from orchestrator.domain.contracts.positions import (
    BrokerFill,
    ClosedAtBroker,
    CloseOutcome,
    CloseRequest,
    EntriesDone,
    EntryFillsRequest,
    KeeperAction,
    OrderNews,
    PositionFill,
    PositionFills,
    PositionsInput,
    PositionsRecord,
    PositionsResult,
    ProtectionOutcome,
    ProtectionRequest,
    WatchRequest,
)
from orchestrator.domain.positions import (
    Position,
    PositionStatus,
    ProtectionKind,
    ProtectiveOrder,
)
from orchestrator.domain.values import plain
from orchestrator.services.audit.document import (
    Activity,
    Difference,
    PositionAudit,
    PositionsCheck,
    Read,
)
from workflows.positions import PositionsWorkflow


def handler_name(handler: Callable[..., object]) -> str:
    """The name a workflow's signal or update handler is sent by: its method's (no handler of
    ours overrides it), as its history records it."""
    return handler.__name__


KEEPER_SIGNALS: dict[str, type[Any]] = {
    handler_name(PositionsWorkflow.position_filled): PositionFill,
    handler_name(PositionsWorkflow.positions_filled): PositionFills,
    handler_name(PositionsWorkflow.entries_done): EntriesDone,
    handler_name(PositionsWorkflow.closed_at_broker): ClosedAtBroker,
}
"""The keeper's own signals (sent by the legs, and by ``reconcile --accept`` for a close at the
broker), by name."""
KEEPER_ACTION = handler_name(PositionsWorkflow.act)
"""The keeper's update through which an action (MODIFY, CLOSE) reaches it."""


# --------------------------------------------------------------------------------------------
# The trail


def describe_keeper_input(value: PositionsInput) -> str:
    s = value.signal
    carried = f"; carried over: {len(value.positions)} position(s)" if value.positions else ""
    return (
        f"keeper of the positions of signal {s.signal_id} ({s.side} {s.symbol}, stop {s.stop}"
        + (f", take-profit {s.take_profit}" if s.take_profit else "")
        + f"; a refused stop: {value.execution.on_refused_stop}){carried}"
    )


def describe_action(action: TradeAction | KeeperAction) -> str:
    """An action in plain words: "CLOSE 50% of s-42 (a, b)", "MODIFY s-42: stop 1.0835"."""
    kind = action.action if isinstance(action, TradeAction) else action.kind
    own = f"{action.action_id}: " if isinstance(action, KeeperAction) else ""
    target = getattr(action, "signal_id", None)
    scope = "every account" if action.accounts is None else ", ".join(action.accounts)
    if kind is ActionKind.MODIFY:
        levels = ", ".join(
            f"{name} {plain(value)}"
            for name, value in (("stop", action.stop), ("take-profit", action.take_profit))
            if value is not None
        )
        what = f"MODIFY {levels}"
    elif kind is ActionKind.CLOSE:
        what = f"CLOSE {plain(action.fraction * 100)}%"
    else:
        symbol = getattr(action, "symbol", None)
        what = f"FLATTEN {symbol or 'every symbol'}"
    return f"{own}{what}" + (f" of {target}" if target else "") + f" ({scope})"


def describe_action_outcome(action_id: str, outcome: list[AccountOutcome]) -> str:
    done = "; ".join(f"{o.account_id} {o.done}" for o in outcome) or "no open position"
    return f"action {action_id} done: {done}"


def describe_keeper_result(value: PositionsResult) -> str:
    return (
        f"every position closed ({len(value.positions)}); realized P&L {value.realized_pnl}: "
        + ", ".join(f"{p.account_id} {p.realized_pnl}" for p in value.positions)
    )


def describe_keeper_signal(name: str, value: Any) -> tuple[str, str, str | None]:
    if isinstance(value, PositionFill):
        return (
            "position",
            f"entries of {value.account_id} filled {value.entry_quantity} {value.broker_symbol} "
            f"in all @ {value.average_entry}" + (" (final)" if value.final else ""),
            value.account_id,
        )
    if isinstance(value, EntriesDone):
        return "position", f"the legs are done: {len(value.accounts)} account(s) filled", None
    if isinstance(value, ClosedAtBroker):
        price = f"@ {value.price}" if value.price is not None else "at an unknown price"
        return (
            "exit",
            f"CLOSED_AT_BROKER: the broker no longer holds {value.quantity} of "
            f"{value.account_id}'s position, {price} (accepted by {value.operator}: "
            f"{value.reason})",
            value.account_id,
        )
    return "position", f"{name}", None


def describe_keeper_activity(activity: Activity) -> list[tuple[str, str, str | None]] | None:
    """Trail lines for a keeper activity that completed; ``None`` for another activity."""
    value, result = activity.input, activity.result
    if isinstance(value, ProtectionRequest) and isinstance(result, list):
        lines = []
        targets = {t.account_id: t for t in value.targets}
        for outcome in result:
            target = targets.get(outcome.account_id)
            lines += [_news_line(n) for n in outcome.superseded if n.executions or _ended(n)]
            wanted = f"cover {target.quantity} (generation {target.generation})" if target else ""
            text = f"protection of {outcome.account_id} to {wanted}: " + "; ".join(
                [
                    _order_text("stop", outcome.stop),
                    _order_text("take-profit", outcome.take_profit),
                ]
            )
            if outcome.stop_refused is not None:
                text += f"; STOP REFUSED by the broker: {outcome.stop_refused}"
            lines.append(("protection", text, outcome.account_id))
        return lines
    if isinstance(value, WatchRequest) and isinstance(result, list):
        return [_news_line(n) for n in result]
    if isinstance(value, CloseRequest) and isinstance(result, list):
        causes = {o.client_order_id: o for o in value.orders}
        lines = []
        for close in result:
            order = causes.get(close.client_order_id)
            why = f" ({order.cause}, {order.quantity} lots)" if order else ""
            lines.append(
                (
                    "exit",
                    f"close at market {close.client_order_id}{why}: {close.status}, "
                    + _fills_text(close.executions)
                    + (f"; rejected: {close.reject_text}" if close.reject_text else ""),
                    close.account_id,
                )
            )
        return lines
    if isinstance(value, EntryFillsRequest) and isinstance(result, list):
        return [
            (
                "position",
                "the ledger's entry fills: "
                + (
                    ", ".join(
                        f"{f.account_id} {f.entry_quantity} @ {f.average_entry}" for f in result
                    )
                    or "none"
                ),
                None,
            )
        ]
    if isinstance(value, PositionsRecord):
        return [
            (
                "position",
                f"recorded {p.account_id}: {p.status}, open {p.open_quantity} of "
                f"{p.entry_quantity}, realized {p.realized_pnl}"
                + (f" ({p.note})" if p.note else ""),
                p.account_id,
            )
            for p in value.positions
        ]
    return None


def _ended(news: OrderNews) -> bool:
    return news.status.value in ("FILLED", "CANCELLED", "REJECTED", "EXPIRED")


def _news_line(news: OrderNews) -> tuple[str, str, str | None]:
    kind = "stop" if news.kind is ProtectionKind.STOP else "take-profit"
    text = f"{kind} {news.client_order_id}: {news.status}, " + _fills_text(news.executions)
    if news.reject_text:
        text += f" ({news.reject_text})"
    return "protection", text, news.account_id


def _fills_text(fills: Iterable[BrokerFill]) -> str:
    listed = [f"{f.quantity} @ {f.price}" for f in fills]
    return ("filled " + ", ".join(listed)) if listed else "nothing filled"


def _order_text(label: str, order: ProtectiveOrder | None) -> str:
    if order is None:
        return f"no {label}"
    text = f"{label} {order.client_order_id} {order.quantity} @ {order.price} {order.status}"
    return text + (f" ({order.reject_text})" if order.reject_text else "")


# --------------------------------------------------------------------------------------------
# The value check


class _Derived:
    """What the keeper knew of each account, from the fills recorded so far."""

    def __init__(self) -> None:
        self.entries: dict[str, Decimal] = {}
        self.closed: dict[str, Decimal] = {}
        self.seen: set[str] = set()
        self.pending: list[ClosedAtBroker] = []

    def entry(self, fill: PositionFill) -> None:
        known = self.entries.get(fill.account_id, Decimal(0))
        self.entries[fill.account_id] = max(known, fill.entry_quantity)

    def executions(self, account_id: str, fills: Iterable[BrokerFill]) -> None:
        for fill in fills:
            if fill.execution_id in self.seen:
                continue
            self.seen.add(fill.execution_id)
            open_now = self.open(account_id)
            self.closed[account_id] = self.closed.get(account_id, Decimal(0)) + min(
                fill.quantity, open_now
            )

    def at_broker(self) -> None:
        """The closes at the broker signalled so far: the keeper applies them before its next
        protect or record, as here."""
        for news in self.pending:
            if news.execution_id in self.seen:
                continue
            self.seen.add(news.execution_id)
            if news.account_id in self.entries:
                self.closed[news.account_id] = self.closed.get(news.account_id, Decimal(0)) + min(
                    news.quantity, self.open(news.account_id)
                )
        self.pending.clear()

    def open(self, account_id: str) -> Decimal:
        entered = self.entries.get(account_id, Decimal(0))
        return max(Decimal(0), entered - self.closed.get(account_id, Decimal(0)))


def verify_positions(keepers: list[Read]) -> PositionsCheck | None:
    """The check over every keeper history of the signal (each batch has its own keeper; a
    keeper's runs across continue-as-new in order). ``None`` when the signal opened none."""
    if not keepers:
        return None
    differences: list[Difference] = []
    compared = 0
    final: dict[str, Position] = {}
    for read in keepers:
        derived = _Derived()
        if isinstance(read.input, PositionsInput):
            for position in read.input.positions:
                derived.entries[position.account_id] = position.entry_quantity
                derived.closed[position.account_id] = (
                    position.entry_quantity - position.open_quantity
                )
            derived.seen = set(read.input.seen_executions)
            derived.pending = list(read.input.at_broker)
        where = read.history.workflow_id
        for step, value in read.steps:
            if step == "fill":
                derived.entry(value)
            elif step == "at_broker":
                derived.pending.append(value)
            elif step == "entry_fills":
                for fill in value:
                    derived.entry(fill)
            elif step == "protect":
                derived.at_broker()
                for target in value.targets:
                    compared += 1
                    expected = derived.open(target.account_id)
                    # What a signal's close is taking off is not covered: the rest is.
                    if target.quantity + target.closing != expected:
                        differences.append(
                            Difference(
                                account_id=target.account_id,
                                field=f"protected quantity (generation {target.generation})",
                                where=where,
                                recorded=str(target.quantity),
                                derived=str(expected),
                            )
                        )
            elif step == "protected":
                for outcome in value:
                    _protected(derived, outcome, where, differences)
            elif step == "news":
                for news in value:
                    derived.executions(news.account_id, news.executions)
            elif step == "closed":
                for close in value:
                    derived.executions(close.account_id, close.executions)
            elif step == "record":
                derived.at_broker()
                for position in value.positions:
                    final[position.account_id] = position
    return PositionsCheck(
        compared=compared,
        differences=differences,
        positions=[_position_audit(p) for _, p in sorted(final.items())],
    )


def _protected(
    derived: _Derived, outcome: ProtectionOutcome, where: str, differences: list[Difference]
) -> None:
    for news in outcome.superseded:
        derived.executions(news.account_id, news.executions)
    open_now = derived.open(outcome.account_id)
    for order in (outcome.stop, outcome.take_profit):
        if order is not None and order.working and order.quantity - order.filled > open_now:
            differences.append(
                Difference(
                    account_id=outcome.account_id,
                    field=f"{order.kind} {order.client_order_id} working quantity",
                    where=where,
                    recorded=str(order.quantity - order.filled),
                    derived=f"at most {open_now}",
                )
            )


def _position_audit(position: Position) -> PositionAudit:
    working = [
        o for o in (position.stop_order, position.take_profit_order) if o is not None and o.working
    ]
    problems = []
    if position.open_quantity <= 0 and working:
        problems.append(
            "working on a flat position: " + ", ".join(o.client_order_id for o in working)
        )
    for order in working:
        if order.remaining > position.open_quantity:
            problems.append(
                f"{order.client_order_id} covers {order.remaining}, open {position.open_quantity}"
            )
    if position.status is PositionStatus.OPEN and position.open_quantity > 0:
        stop = position.stop_order
        if stop is None or not stop.working:
            problems.append("open without a working stop and not marked UNPROTECTED")
    return PositionAudit(
        account_id=position.account_id,
        status=position.status,
        entry_quantity=position.entry_quantity,
        open_quantity=position.open_quantity,
        realized_pnl=position.realized_pnl,
        closes=[
            f"{c.cause} {plain(c.quantity)} @ {plain(c.price)} ({plain(c.pnl)})"
            for c in position.closes
        ],
        note=position.note,
        problems=problems,
    )


def keeper_step(activity: Activity) -> tuple[str, Any] | None:
    """The step of the value check a keeper activity's scheduling or result is."""
    value, result = activity.input, activity.result
    if isinstance(value, ProtectionRequest):
        return ("protected", result) if activity.completed else ("protect", value)
    if not activity.completed:
        return None
    if isinstance(value, WatchRequest):
        return "news", result
    if isinstance(value, CloseRequest):
        return "closed", [c for c in result if isinstance(c, CloseOutcome)]
    if isinstance(value, EntryFillsRequest):
        return "entry_fills", result
    if isinstance(value, PositionsRecord):
        return "record", value
    return None

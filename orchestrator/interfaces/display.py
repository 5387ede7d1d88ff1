"""Terminal rendering for the starter: plans, live progress, execution reports, and the tables
of accounts, signals, orders and positions (rich)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestrator.domain import search_attributes as sa
from orchestrator.domain.actions import ActionKind, ActionReport, ActionStatus
from orchestrator.domain.orders import OrderPurpose, OrderStatus
from orchestrator.domain.planning.decisions import Plan, SizeRationale
from orchestrator.domain.positions import Position
from orchestrator.domain.progress import SignalProgress
from orchestrator.domain.report import AccountReport, LegStatus, SignalReport
from orchestrator.domain.values import plain

if TYPE_CHECKING:
    from temporalio.client import WorkflowExecution

    from orchestrator.adapters.db.repository import LedgerOrder, PositionView
    from orchestrator.adapters.db.schema import AccountRow, AccountStateRow

STATUS_STYLE = {
    LegStatus.FILLED: "green",
    LegStatus.PARTIALLY_FILLED: "yellow",
    LegStatus.REJECTED: "red",
    LegStatus.DENIED: "magenta",
    LegStatus.FAILED: "bold red",
    LegStatus.CANCELLED: "red",
    LegStatus.SKIPPED_PAUSED: "magenta",
    LegStatus.HALTED: "bold magenta",
    LegStatus.WAITING: "cyan",
    LegStatus.WORKING: "blue",
}


def _fmt(value: Decimal | None, places: str = "0.01") -> str:
    return "" if value is None else str(value.quantize(Decimal(places)))


def plan_table(plan: Plan) -> Table:
    table = Table(
        title=f"Plan for {plan.signal_id} (version {plan.plan_version}, seed {plan.seed})"
    )
    for column in ("#", "account", "lots", "delay s", "why this size", "client order id"):
        table.add_column(column)
    for leg in plan.legs:
        why = explain_size(leg.size)
        table.add_row(
            str(leg.sequence),
            leg.account_id,
            str(leg.quantity),
            f"{leg.delay_ms / 1000:.1f}",
            why,
            leg.client_order_id,
        )
    for denial in plan.denials:
        table.add_row(
            "-",
            denial.account_id,
            "[magenta]denied[/]",
            "",
            f"{denial.reason}: {denial.detail}",
            "",
        )
    return table


def progress_table(progress: SignalProgress, now: datetime | None = None) -> Table:
    now = now or datetime.now(UTC)
    table = Table(title=f"{progress.signal_id}: {progress.phase}")
    for column in ("account", "status", "lots", "timer left s", "order id", "filled", "note"):
        table.add_column(column)
    for leg in sorted(progress.legs, key=lambda item: item.due_at):
        left = (leg.due_at - now).total_seconds() if leg.status is LegStatus.WAITING else None
        style = STATUS_STYLE.get(leg.status, "")
        table.add_row(
            leg.account_id,
            f"[{style}]{leg.status}[/]" if style else leg.status,
            str(leg.quantity),
            "" if left is None else f"{max(left, 0):.1f}",
            leg.client_order_id,
            str(leg.filled),
            leg.reason or "",
        )
    if progress.denied:
        table.caption = f"{progress.denied} account(s) denied at planning"
    return table


def progress_line(progress: SignalProgress) -> str:
    counts: dict[str, int] = {}
    for leg in progress.legs:
        counts[leg.status] = counts.get(leg.status, 0) + 1
    parts = ", ".join(f"{n} {status.lower()}" for status, n in sorted(counts.items()))
    return (
        f"{progress.signal_id}: {progress.phase} — {parts or 'planning'}; {progress.denied} denied"
    )


def report_table(report: SignalReport, live: Mapping[str, PositionView] | None = None) -> Table:
    """One row per account: its leg, and its position — as the ledger holds it now when
    ``live`` (by account) is given, else as it stood when the report was written."""
    table = Table(
        title=(
            f"Execution report {report.signal_id}: {report.side} {report.symbol} "
            f"@ {report.reference_price} — filled {report.filled_total} of "
            f"{report.requested_total} lots"
        )
    )
    for column in (
        "account",
        "status",
        "requested",
        "filled",
        "avg price",
        "slip ticks",
        "delay s",
        "latency s",
        "position",
        "stop / take-profit",
        "realized P&L",
    ):
        table.add_column(column, no_wrap=True)
    for line in report.accounts:
        style = STATUS_STYLE.get(line.status, "")
        position: Position | PositionView | None = (live or {}).get(line.account_id, line.position)
        table.add_row(
            line.account_id,
            f"[{style}]{line.status}[/]" if style else line.status,
            str(line.requested),
            str(line.filled),
            "" if line.average_price is None else plain(line.average_price),
            _fmt(line.slippage_ticks, "0.1"),
            "" if line.delay_ms is None else f"{line.delay_ms / 1000:.1f}",
            "" if line.latency_ms is None else f"{line.latency_ms / 1000:.1f}",
            *_position_cells(position),
        )
    return table


def _position_cells(position: Position | PositionView | None) -> tuple[Text, str, str]:
    if position is None:
        return Text(""), "", ""
    status = Text(position.status, style=POSITION_STATUS_STYLE.get(position.status, ""))
    target = "" if position.take_profit is None else f" / {plain(position.take_profit)}"
    return (
        status + Text(f" {plain(position.open_quantity)}"),
        f"{plain(position.stop)}{target}",
        _fmt(position.realized_pnl),
    )


def report_reasons(report: SignalReport) -> list[str]:
    """One line per account: why it got what it got."""
    return [f"  {line.account_id}: {_explain(line)}" for line in report.accounts]


def _explain(line: AccountReport) -> str:
    if line.denial is not None:
        return f"{line.denial}: {line.reason}"
    parts: list[str] = []
    if line.reason:
        parts.append(line.reason)
    if line.size is not None:
        parts.append(explain_size(line.size))
    if line.completion is not None:
        done = line.completion
        parts.append(
            f"completion: {done.attempts} order(s), filled {done.filled}, "
            f"{done.stopped.lower()}" + (f", dust {done.dust}" if done.dust else "")
        )
    if line.reroute is not None:
        moved = line.reroute
        chain = " → ".join(f"{h.to_account} ({h.outcome})" for h in moved.hops)
        parts.append(
            f"rerouted: {chain or 'no reserve account'} ⇒ {moved.outcome}, risk "
            f"{_fmt(moved.risk_placed)} of {_fmt(moved.risk_original)} found a home "
            f"({_fmt(moved.placed_share * 100, '0.1')} %)"
        )
    return "; ".join(parts)


def explain_size(size: SizeRationale) -> str:
    """One line: the risk-based base size, each factor applied, and the binding cap."""
    return (
        f"risk {_fmt(size.risk_amount)} / {_fmt(size.per_lot_risk)} per lot = "
        f"{_fmt(size.base_lots, '0.001')} × dd {_fmt(size.drawdown_factor, '0.001')}"
        f" × corr {_fmt(size.correlation_factor, '0.001')} (group of {size.correlated_accounts})"
        f" × var {_fmt(size.variance_factor, '0.001')}"
        + (
            f"; at most the carried risk {_fmt(size.carried_risk)}"
            f" = {_fmt(size.carried_cap_lots, '0.001')} lots"
            if size.carried_risk is not None
            else ""
        )
        + f"; bound by {size.binding}"
    )


ORDER_STATUS_STYLE = {
    OrderStatus.FILLED: "green",
    OrderStatus.PARTIALLY_FILLED: "yellow",
    OrderStatus.REJECTED: "red",
    OrderStatus.CANCELLED: "red",
    OrderStatus.EXPIRED: "red",
    OrderStatus.NEW: "blue",
    OrderStatus.PENDING_SUBMIT: "cyan",
    OrderStatus.PENDING_CANCEL: "cyan",
}


def orders_table(orders: list[LedgerOrder], title: str = "") -> Table:
    """The ledger's orders, oldest first, two lines a row: when (created, last updated), which
    (client and broker order ids; signal and account; broker and symbol), what was asked,
    what filled and at what average price, the status and the broker's reject text, verbatim.
    """
    table = Table(title=f"{len(orders)} order(s) {title}".rstrip(), show_lines=True)
    table.add_column("created\nupdated", no_wrap=True)
    table.add_column("client order id\nbroker order id", overflow="fold")
    table.add_column("signal, account\nbroker, symbol", overflow="fold")
    table.add_column("order", no_wrap=True)
    table.add_column("filled\naverage price", no_wrap=True)
    table.add_column("status\nreject text")
    for order in orders:
        style = ORDER_STATUS_STYLE.get(OrderStatus(order.status), "")
        asked = f"{order.side} {plain(order.quantity)} {order.order_type}"
        if order.purpose is not OrderPurpose.ENTRY:
            asked = f"{order.purpose}: {asked}"
        if order.limit_price is not None:
            asked += f"\nlimit {plain(order.limit_price)}"
        if order.stop_price is not None:
            asked += f"\nstop {plain(order.stop_price)}"
        fills = len(order.fills)
        filled = plain(order.filled)
        if fills:
            filled += f" in {fills} fill{'' if fills == 1 else 's'}"
        if order.average_price is not None:
            filled += f"\n@ {plain(order.average_price)}"
        status = f"[{style}]{order.status}[/]" if style else order.status
        table.add_row(
            f"{order.created_at:%Y-%m-%d %H:%M:%S}\n{order.updated_at:%Y-%m-%d %H:%M:%S}",
            Text(f"{order.client_order_id}\n{order.broker_order_id or ''}"),
            Text(f"{order.signal_id}, {order.account_id}\n{order.broker}, {order.symbol}"),
            asked,
            filled,
            Text.from_markup(status) + Text(f"\n{order.reject_text}" if order.reject_text else ""),
        )
    return table


def accounts_table(
    rows: Sequence[tuple[AccountRow, AccountStateRow]], now: datetime | None = None
) -> Table:
    """The book's accounts and their live state, one row each: the state's source (book,
    reported, derived) and age; positions as open/maximum; reduce-only with who set it and
    why."""
    now = now or datetime.now(UTC)
    table = Table(title=f"{len(rows)} accounts")
    columns = ("account", "broker", "status", "state", "equity", "peak", "free margin")
    for column in (*columns, "positions", "reduce-only"):
        table.add_column(column)
    for a, s in rows:
        table.add_row(
            a.account_id,
            a.broker,
            a.status,
            f"{s.source}, {state_age(now, s.as_of)} old",
            str(s.equity),
            str(s.peak_equity),
            str(s.free_margin),
            f"{s.open_positions}/{a.max_open_positions}",
            reduce_only_text(a),
        )
    return table


def state_age(now: datetime, as_of: datetime) -> str:
    """How old a state is, to the second: ``42s``, ``3m05s``, ``2h10m``, ``4d3h``."""
    seconds = max(0, int((now - as_of).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600}h"


def reduce_only_text(account: AccountRow) -> str:
    """``by …: reason (since …)`` for an account in reduce-only; empty otherwise."""
    if not account.reduce_only:
        return ""
    since = f" (since {account.reduce_only_at:%Y-%m-%d %H:%M:%S})" if account.reduce_only_at else ""
    return f"by {account.reduce_only_by or 'unknown'}: {account.reduce_only_reason or ''}{since}"


def signals_table(rows: Sequence[WorkflowExecution], query: str) -> Table:
    """Signals found in Temporal visibility by ``query`` (named in the title), one row each with
    its one state (:func:`signal_state`)."""
    table = Table(title=f"{len(rows)} signal(s)  ({query})")
    for column in ("workflow id", "symbol", "side", "state", "started"):
        table.add_column(column)
    for w in rows:
        attrs = w.typed_search_attributes
        table.add_row(
            w.id,
            attrs.get(sa.SYMBOL) or "",
            attrs.get(sa.SIDE) or "",
            signal_state(w.status.name if w.status else None, attrs.get(sa.SIGNAL_STATUS)),
            f"{w.start_time:%Y-%m-%d %H:%M:%S}",
        )
    return table


def signal_state(execution_status: str | None, phase: str | None) -> str:
    """One state for a signal: its own phase (``SignalStatus``: PLANNING, EXECUTING, COMPLETED,
    CANCELLED) while Temporal says it runs or completed, Temporal's status otherwise. A run
    ended by Terminate (or failed, or timed out) could not update its phase, so its phase
    would still say EXECUTING: Temporal's word is the true one then."""
    if execution_status in (None, "RUNNING", "COMPLETED"):
        return phase or execution_status or "UNKNOWN"
    return f"{execution_status} (Temporal)"


def console() -> Console:
    """A console that stays readable when piped: wide lines instead of crushed columns."""
    probe = Console()
    return probe if probe.is_terminal else Console(width=140)


POSITION_STATUS_STYLE = {"OPEN": "green", "UNPROTECTED": "bold red", "CLOSED": "dim"}


def positions_table(positions: Sequence[PositionView], title: str = "") -> Table:
    """The ledger's positions, one row each: which (signal, account, broker symbol), the side
    and open of entry quantity at the average entry, the stop and take-profit with their
    working orders, the status (UNPROTECTED in bold, with the broker's text) and the realized
    P&L with each closing fill and its cause."""
    table = Table(title=f"{len(positions)} position(s) {title}".rstrip(), show_lines=True)
    table.add_column("signal, account\nbroker symbol", overflow="fold")
    table.add_column("open / entry\n@ average", no_wrap=True)
    table.add_column("stop\ntake-profit", overflow="fold")
    table.add_column("status")
    table.add_column("realized P&L\nclosing fills", overflow="fold")
    for p in positions:
        style = POSITION_STATUS_STYLE.get(p.status, "")
        status = Text(p.status, style=style) + Text(f"\n{p.note}" if p.note else "")
        closes = "\n".join(
            f"{fill.cause} {plain(fill.quantity)} @ {plain(fill.price)}"
            f"{_past_the_stop(p.slippage.get(fill.execution_id))} ({_fmt(fill.pnl)})"
            for fill in p.closes
        )
        protection = f"{plain(p.stop)} {p.stop_client_order_id or '(no order)'}"
        if p.take_profit is not None:
            target = p.take_profit_client_order_id or "(no order)"
            protection += f"\n{plain(p.take_profit)} {target}"
        table.add_row(
            Text(f"{p.signal_id}, {p.account_id}\n{p.broker} {p.broker_symbol}"),
            f"{p.side} {plain(p.open_quantity)} / {plain(p.entry_quantity)}\n"
            f"@ {plain(p.average_entry)}",
            Text(protection),
            status,
            Text(f"{_fmt(p.realized_pnl)}\n{closes}".rstrip()),
        )
    return table


def _past_the_stop(slippage: Decimal | None) -> str:
    """A stop fill's slippage, when it filled past its stop (a gap)."""
    return f", {plain(slippage)} past the stop" if slippage else ""


def action_table(report: ActionReport) -> Table:
    """An action's result: per position what it did, what is left open and what it realized."""
    target = f" of {report.signal_id}" if report.signal_id else ""
    title = f"{report.action} {report.action_id}{target}: {report.status} — {report.message}"
    if report.action is not ActionKind.MODIFY and report.status is ActionStatus.COMPLETED:
        title += f"; {report.positions_closed} closed"
        if report.positions_reduced:
            title += f", {report.positions_reduced} partly closed"
    table = Table(title=title)
    for column in ("signal", "account", "done", "closed", "left open", "realized P&L"):
        table.add_column(column, overflow="fold")
    for line in report.accounts:
        table.add_row(
            line.signal_id,
            line.account_id,
            Text(line.done, style="red" if line.refused else ""),
            plain(line.closed),
            plain(line.open_quantity),
            _fmt(line.realized_pnl),
        )
    return table

"""A signal's execution report: its per-account lines, joined and summed.

Workflow code builds the report here (pure, deterministic); clients call
:func:`orchestrator.services.reports.full_report` to get every line of a large signal, whose lines
stay in its batch children's results.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from orchestrator.domain import limits, paging
from orchestrator.domain.planning.decisions import Denial, LegOrder, PlannedLeg
from orchestrator.domain.report import AccountReport, LegStatus, SignalReport, SignalStatus
from orchestrator.domain.signal import Signal


def denial_line(denial: Denial) -> AccountReport:
    """The report line of an account the plan did not trade."""
    return AccountReport(
        account_id=denial.account_id,
        status=LegStatus.DENIED,
        requested=Decimal(0),
        filled=Decimal(0),
        denial=denial.reason,
        reason=denial.detail,
    )


def stopped_line(leg: LegOrder, status: LegStatus, reason: str) -> AccountReport:
    """The report line of a leg stopped before it sent anything (cancelled, halted)."""
    return AccountReport(
        account_id=leg.account_id,
        status=status,
        requested=leg.quantity,
        filled=Decimal(0),
        delay_ms=leg.delay_ms,
        client_order_id=leg.client_order_id,
        reason=reason,
        size=leg.size if isinstance(leg, PlannedLeg) else None,
        delay=leg.delay if isinstance(leg, PlannedLeg) else None,
    )


def _plan_denial(line: AccountReport) -> bool:
    return (
        line.status is LegStatus.DENIED
        and line.client_order_id is None
        and line.rerouted_from is None
    )


def merge_lines(lines: Sequence[AccountReport]) -> list[AccountReport]:
    """Every line, by account; a reserve account a reroute used reports its fill, not the
    plan's denial of it."""
    traded = {line.account_id for line in lines if not _plan_denial(line)}
    kept = [line for line in lines if not (_plan_denial(line) and line.account_id in traded)]
    return sorted(kept, key=lambda r: r.account_id)


def build(
    signal: Signal,
    *,
    plan_version: int,
    status: SignalStatus,
    started_at: datetime,
    finished_at: datetime,
    lines: Sequence[AccountReport],
    batches: Sequence[str] = (),
) -> SignalReport:
    """The report of a finished signal. With batches, lines over :data:`limits.REPORT_BYTES` stay in
    the batches' results and this report carries the totals and counts only."""
    accounts = merge_lines(lines)
    in_batches = bool(batches) and sum(map(paging.json_size, accounts)) > limits.REPORT_BYTES
    return SignalReport(
        signal_id=signal.signal_id,
        symbol=signal.symbol,
        side=signal.side,
        reference_price=signal.entry,
        plan_version=plan_version,
        status=status,
        started_at=started_at,
        finished_at=finished_at,
        accounts=[] if in_batches else accounts,
        requested_total=sum((r.requested for r in accounts), Decimal(0)),
        filled_total=sum((r.filled for r in accounts), Decimal(0)),
        by_status=dict(sorted(Counter(a.status.value for a in accounts).items())),
        batches=list(batches),
        accounts_in_batches=in_batches,
    )

"""A 5,000-account signal within Temporal's limits, by construction (no server, no timing).

Every payload the signal workflow and its batches exchange is built here as the workflow would
build it, encoded by the project's data converter, and measured: the snapshot and correlation
pages, each batch child's input and (a report of every leg filled) result, and the signal's own
summary; the batches are checked against the pending-item and history-event bounds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from orchestrator.adapters.temporal import data_converter
from orchestrator.config import Settings
from orchestrator.domain import limits, paging, planning, reports
from orchestrator.domain.book import (
    AccountLimits,
    AccountSnapshot,
    AccountStatus,
    BookSnapshot,
    Mandate,
    spec_key,
)
from orchestrator.domain.contracts.payloads import (
    LegBatchInput,
    LegBatchResult,
    SignalWorkflowInput,
)
from orchestrator.domain.correlation import AccountCorrelation, CorrelationResult
from orchestrator.domain.planning.decisions import Denial
from orchestrator.domain.report import AccountReport, LegStatus, SignalStatus
from orchestrator.domain.values import DenialReason
from tests.support import EURUSD_ALPHA, signal
from tests.unit.builders import execution_settings, plan_settings

ACCOUNTS = 5_000
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
MAX_PENDING = 1_000
MAX_HISTORY_BYTES = 10 * 1024 * 1024


CONVERTER = data_converter(Settings())


def encoded_size(value: object) -> int:
    """Bytes of ``value`` as Temporal stores it: one payload, the project's converter (large
    payloads compressed)."""
    (payload,) = asyncio.run(CONVERTER.encode([value]))
    return payload.ByteSize()


def plain_size(value: object) -> int:
    """Bytes of ``value`` before the codec: the bound that holds whatever compression gives."""
    (payload,) = CONVERTER.payload_converter.to_payloads([value])
    return payload.ByteSize()


def account_id(n: int, width: int) -> str:
    """Ids of the given length: 64 is the longest an id may be."""
    return f"acct-{n:05d}".ljust(width, "x")


def snapshot(ids: Sequence[str]) -> BookSnapshot:
    limits = AccountLimits(
        risk_per_trade=Decimal("0.01"),
        daily_loss_budget=Decimal(5000),
        max_drawdown=Decimal("0.10"),
        max_open_positions=10,
        max_lots=Decimal(20),
    )
    return BookSnapshot(
        symbol="EURUSD",
        taken_at=NOW,
        accounts=[
            AccountSnapshot(
                account_id=a,
                broker="alpha",
                currency="USD",
                status=AccountStatus.ACTIVE,
                limits=limits,
                mandate=Mandate(allowed_symbols=["EURUSD", "GBPUSD"]),
                broker_symbol="EURUSD",
                balance=Decimal("50000.25") + n,
                equity=Decimal("49000.75") + n,
                peak_equity=Decimal("51000.50") + n,
                free_margin=Decimal("48000.10") + n,
                open_positions=n % 3,
                realized_loss_today=Decimal("12.34"),
                risk_committed_today=Decimal("56.78"),
                as_of=NOW - timedelta(seconds=30),
            )
            for n, a in enumerate(ids)
        ],
        specs={spec_key("alpha", "EURUSD"): EURUSD_ALPHA},
    )


def correlation(ids: Sequence[str]) -> CorrelationResult:
    """Groups of 100 correlated accounts, each with the full 10 peers (the largest result)."""
    return CorrelationResult(
        threshold=Decimal("0.7"),
        accounts=[
            AccountCorrelation(
                account_id=a,
                group=f"G-{ids[n - n % 100]}",
                max_correlation=Decimal("0.9876"),
                peers=[ids[(n - n % 100) + k] for k in range(10) if (n - n % 100) + k != n][:10],
                observations=250,
                insufficient_history=False,
            )
            for n, a in enumerate(ids)
        ],
    )


def filled_line(leg_id: str, quantity: Decimal, delay_ms: int) -> AccountReport:
    """A report line with every field a filled leg fills in."""
    return AccountReport(
        account_id=leg_id,
        status=LegStatus.FILLED,
        requested=quantity,
        filled=quantity,
        average_price=Decimal("1.0850312345"),
        slippage=Decimal("0.0000312345"),
        slippage_ticks=Decimal("3.12345"),
        delay_ms=delay_ms,
        latency_ms=delay_ms + 1234,
        client_order_id=f"signal-with-a-long-identifier:{leg_id}:1",
    )


@pytest.mark.parametrize("width", [10, 64])
def test_a_5000_account_signal_stays_within_temporals_limits(width: int) -> None:
    ids = [account_id(n, width) for n in range(ACCOUNTS)]
    book, correlated = snapshot(ids), correlation(ids)
    settings = plan_settings(delay_min_ms=0, delay_max_ms=30_000)
    sig = signal("signal-with-a-long-identifier")
    history_bytes = encoded_size(SignalWorkflowInput(signal=sig, settings=settings))

    # The snapshot and the correlation arrive in pages, each far under the payload limit, and
    # the pages join back to what was read.
    pages = paging.snapshot_pages(book)
    corr_pages = paging.correlation_pages(correlated)
    assert len(pages) > 1 and len(corr_pages) > 1
    for n, page in enumerate([*pages, *corr_pages]):
        assert plain_size(page) < limits.PAYLOAD_LIMIT, n
        history_bytes += encoded_size(page)
    assert paging.join_snapshot(pages).accounts == book.accounts
    assert paging.join_correlation(corr_pages).accounts == correlated.accounts
    # The first page of each is requested alone, the rest at once: pending activities.
    assert max(len(pages), len(corr_pages)) - 1 < MAX_PENDING

    plan = planning.plan_signal(sig, book, correlated, settings, NOW)
    assert len(plan.legs) == ACCOUNTS, plan.denials[:3]
    assert paging.needs_batches(plan.legs, plan.denials, settings.batch_size)

    slices = paging.batches(plan.legs, plan.denials, batch_size=settings.batch_size)
    assert [leg.account_id for s in slices for leg in s.legs] == [
        leg.account_id for leg in plan.legs
    ]
    assert len(slices) < MAX_PENDING  # children pending in the signal's workflow at once
    lines: list[AccountReport] = []
    for part in slices:
        # Pending in the batch: a timer or an activity per leg, at most.
        assert len(part.legs) <= limits.MAX_BATCH_LEGS < MAX_PENDING
        assert len(part.legs) * limits.EVENTS_PER_LEG + 20 < limits.HISTORY_EVENTS
        batch_input = LegBatchInput(
            signal=sig,
            settings=settings,
            execution=execution_settings(),
            legs=part.legs,
            reserve=plan.reserve,
            started_at=NOW,
            denials=part.denials,
        )
        result = LegBatchResult(
            accounts=[filled_line(leg.account_id, leg.quantity, leg.delay_ms) for leg in part.legs]
        )
        assert plain_size(batch_input) < limits.PAYLOAD_LIMIT
        assert plain_size(result) < limits.PAYLOAD_LIMIT
        input_size, result_size = encoded_size(batch_input), encoded_size(result)
        # The batch's own history holds its input and result once more.
        assert input_size + result_size < MAX_HISTORY_BYTES
        history_bytes += input_size + result_size
        lines += result.accounts

    summary = reports.build(
        sig,
        plan_version=plan.plan_version,
        status=SignalStatus.COMPLETED,
        started_at=NOW,
        finished_at=NOW,
        lines=lines,
        batches=[f"signal-x/batch-{n}" for n in range(1, len(slices) + 1)],
    )
    assert summary.accounts_in_batches and summary.accounts == []
    assert summary.by_status == {"FILLED": ACCOUNTS}
    assert summary.filled_total == sum(leg.quantity for leg in plan.legs)
    history_bytes += encoded_size(summary)
    assert plain_size(summary) < limits.PAYLOAD_LIMIT
    # The signal's own history: its input, every page, every batch's input and result, its
    # summary, as stored (compressed). Events add a few dozen bytes each, for a few hundred
    # events: a quarter of the limit is left for them many times over.
    assert history_bytes < MAX_HISTORY_BYTES * 0.75, history_bytes


def test_batches_keep_every_leg_and_denial_in_plan_order() -> None:
    ids = [account_id(n, 10) for n in range(40)]
    book = snapshot(ids)
    disabled = {ids[3], ids[17]}
    book = book.model_copy(
        update={
            "accounts": [
                a.model_copy(update={"status": AccountStatus.DISABLED})
                if a.account_id in disabled
                else a
                for a in book.accounts
            ]
        }
    )
    plan = planning.plan_signal(
        signal("s"),
        book,
        CorrelationResult(threshold=Decimal("0.7"), accounts=[]),
        plan_settings(),
        NOW,
    )
    slices = paging.batches(plan.legs, plan.denials, batch_size=7, budget=2_500)
    assert all(len(s.legs) <= 7 for s in slices)
    assert [leg.account_id for s in slices for leg in s.legs] == [
        leg.account_id for leg in plan.legs
    ]
    assert {d.account_id for s in slices for d in s.denials} == disabled
    assert all(
        leg.model_dump().keys().isdisjoint({"size", "delay"}) for s in slices for leg in s.legs
    )


def test_a_reserve_account_a_reroute_used_reports_its_fill_not_its_denial() -> None:
    denied = reports.denial_line(
        Denial(account_id="reserve-1", reason=DenialReason.NOT_SELECTED, detail="reserve account")
    )
    moved = filled_line("reserve-1", Decimal(1), 0).model_copy(update={"rerouted_from": "a"})
    own_denial = AccountReport(
        account_id="b",
        status=LegStatus.DENIED,
        requested=Decimal(1),
        filled=Decimal(0),
        client_order_id="s:b:1",
        denial="MAX_POSITIONS",
    )
    assert reports.merge_lines([denied, moved, own_denial]) == [own_denial, moved]

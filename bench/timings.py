"""In-process timings beside the table: the replay of the largest signal, planning and
correlation for 5,000 accounts, peak RSS."""

from __future__ import annotations

import importlib
import logging
import statistics
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import Replayer

from bench.book import BROKER, SPEC, SYMBOL, bench_account
from bench.runs import bench_signal
from orchestrator.config import Settings
from orchestrator.domain.book import AccountSnapshot, AccountStatus, BookSnapshot, Mandate, spec_key
from orchestrator.domain.correlation import AccountCorrelation, CorrelationResult
from orchestrator.domain.planning import plan_signal
from orchestrator.domain.signal import Signal
from orchestrator.services.history import fetch_with_children
from workflows.registry import WORKFLOWS

PLANNING_ACCOUNTS = 5000
CORRELATION_ACCOUNTS = 5000
CORRELATION_DAYS = 250
CORRELATION_SEED = 8


async def time_replay(
    client: Client, workflow_id: str, legs: int, converter: DataConverter
) -> dict[str, Any]:
    """Fetch the run and all its children, then time their replay with the project's
    workflows and data converter (fetching not timed)."""
    histories = await fetch_with_children(client, workflow_id)

    async def feed() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    replayer = Replayer(workflows=WORKFLOWS, data_converter=converter)
    started = time.perf_counter()
    results = await replayer.replay_workflows(feed(), raise_on_replay_failure=False)
    seconds = time.perf_counter() - started
    failures = {run: f"{type(e).__name__}: {e}"[:300] for run, e in results.replay_failures.items()}
    if failures:
        logging.warning("replay of %s: %d histories failed", workflow_id, len(failures))
    return {
        "workflow_id": workflow_id,
        "legs": legs,
        "histories": len(histories),
        "events": sum(len(h.events) for h in histories),
        "seconds": seconds,
        "ms_per_leg": seconds * 1000 / legs,
        "failures": failures,
    }


def planning_inputs(accounts: int) -> tuple[Signal, BookSnapshot, CorrelationResult]:
    """A snapshot of ``accounts`` eligible accounts, and a correlation result with a fifth of
    them in groups of 5 (the rest uncorrelated)."""
    now = datetime.now(UTC)
    equity = Decimal(50000)
    ids = [f"plan-{i:05d}" for i in range(accounts)]
    snapshot = BookSnapshot(
        symbol=SYMBOL,
        taken_at=now,
        accounts=[
            AccountSnapshot(
                account_id=account_id,
                broker=BROKER,
                currency="USD",
                status=AccountStatus.ACTIVE,
                limits=bench_account(account_id).limits,
                mandate=Mandate(),
                broker_symbol=SYMBOL,
                balance=equity,
                equity=equity,
                peak_equity=equity,
                free_margin=equity,
                open_positions=0,
                realized_loss_today=Decimal(0),
                risk_committed_today=Decimal(0),
                as_of=now,
            )
            for account_id in ids
        ],
        specs={spec_key(BROKER, SYMBOL): SPEC},
    )
    grouped = accounts // 5
    correlation = CorrelationResult(
        threshold=Decimal("0.7"),
        accounts=[
            AccountCorrelation(
                account_id=account_id,
                group=f"g{i // 5}" if i < grouped else None,
                max_correlation=Decimal("0.85") if i < grouped else Decimal("0.2"),
                peers=(
                    [ids[j] for j in range(i // 5 * 5, i // 5 * 5 + 5) if j != i]
                    if i < grouped
                    else []
                ),
                observations=60,
                insufficient_history=False,
            )
            for i, account_id in enumerate(ids)
        ],
    )
    return bench_signal("bench-planning", None), snapshot, correlation


def time_planning(accounts: int, repeats: int = 3) -> dict[str, Any]:
    """``plan_signal`` on ``accounts`` accounts with the realistic and an empty correlation."""
    signal, snapshot, correlation = planning_inputs(accounts)
    empty = CorrelationResult(threshold=correlation.threshold, accounts=[])
    settings = Settings().plan_settings()
    out: dict[str, Any] = {"accounts": accounts, "settings": "the default settings"}
    for name, result in (("correlated", correlation), ("empty_correlation", empty)):
        runs: list[float] = []
        legs = denials = 0
        for _ in range(repeats):
            started = time.perf_counter()
            plan = plan_signal(signal, snapshot, result, settings, datetime.now(UTC))
            runs.append(time.perf_counter() - started)
            legs, denials = len(plan.legs), len(plan.denials)
        out[name] = {"median_s": statistics.median(runs), "runs_s": runs}
        out[name] |= {"legs": legs, "denials": denials}
    out["correlation_input"] = f"{accounts // 5} accounts in groups of 5, the rest uncorrelated"
    return out


def time_correlation_or_missing() -> dict[str, Any]:
    try:
        module = importlib.import_module("bench.correlation_timing")
        timer: Callable[..., dict[str, Any]] = module.time_correlation
    except (ImportError, AttributeError) as err:
        return {"missing": f"bench.correlation_timing.time_correlation: {err}"}
    result = timer(accounts=CORRELATION_ACCOUNTS, days=CORRELATION_DAYS, seed=CORRELATION_SEED)
    return dict(result)


def guarded(name: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one of the in-process timings; a failure is reported, not fatal (the per-N figures
    are already measured by then)."""
    try:
        return work()
    except Exception as err:
        logging.exception("%s failed", name)
        return {"error": f"{type(err).__name__}: {err}"}

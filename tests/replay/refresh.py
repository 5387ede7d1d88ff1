"""Regenerate the checked-in histories that ``tests/replay`` replays against the current code.

    .venv/bin/python -m tests.replay.refresh            # every scenario
    .venv/bin/python -m tests.replay.refresh halted     # only the named ones

Starts a throwaway Temporal dev server (the ``temporal`` CLI of this environment, in memory),
and for each scenario a fresh SQLite database with a small book and the project's real worker
(``worker.build_worker``/``build_activities``, paper broker). It runs one signal, checks that
the report shows what the scenario is named for (a scenario that did not happen is an error,
not a history), then exports the signal's workflow and all its children with
``orchestrator.services.history.export_signals`` into ``tests/replay/histories/<scenario>/``, with
``manifest.json``. Takes about half a minute.

When to run it: after a deliberate, *compatible* change whose new histories should be covered
too, or when a scenario is added. Never to make a failing replay pass: a replay failure means
the current code would break the runs that are in flight when it is deployed. Such a change
needs ``workflow.patched`` (or a new workflow type) instead, and the old histories stay. (The
histories checked in are the 1.0.0 baseline, recorded again when the pre-1.0 patches were
retired: see the CHANGELOG.)
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from orchestrator.adapters.book_file import AccountRecord
from orchestrator.adapters.brokers.paper import PaperMarket
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.temporal import data_converter, temporal_binary
from orchestrator.config import Settings
from orchestrator.domain import ids, search_attributes
from orchestrator.domain.actions import ActionKind, TradeAction
from orchestrator.domain.book import Mandate
from orchestrator.domain.contracts.operators import HaltRequest, PauseAccount
from orchestrator.domain.progress import SignalProgress
from orchestrator.domain.report import LegStatus, SignalReport
from orchestrator.domain.values import DenialReason
from orchestrator.services import history
from orchestrator.services.actions import submit_action
from orchestrator.services.submit import submit_signal
from tests.support import account, book, load, poll_until, signal
from worker import build_activities, build_worker
from workflows.signal import SignalExecutionWorkflow

HISTORIES = Path(__file__).resolve().parent / "histories"
TEST_ONLY_KEYS = Path(__file__).resolve().parent / "test-only-codec.keys"
"""The key of the checked-in encrypted history. A test fixture: never a real key."""

Handle = WorkflowHandle[Any, SignalReport]
Action = Callable[[Handle], Awaitable[None]]
Check = Callable[[dict[str, Any]], None]
After = Callable[[Client, Database, Settings, Handle], Awaitable[None]]

SHORT = {"delay_min_s": Decimal("0.1"), "delay_max_s": Decimal("0.4")}
"""Short delays: every leg still has its durable timer in the history."""
WAITING = {"delay_min_s": Decimal(3), "delay_max_s": Decimal(3)}
"""Long enough to act on the legs while they wait (polled, not timed)."""


@dataclass
class Scenario:
    name: str
    accounts: list[AccountRecord]
    expect: dict[str, LegStatus]
    """Every report line's status, by account."""
    settings: dict[str, Any] = field(default_factory=lambda: dict(SHORT))
    action: Action | None = None
    """What an operator does while the legs wait."""
    check: Check | None = None
    """Further checks on the report lines, by account."""
    encrypted: bool = False
    """Run with the payload codec keyed by ``TEST_ONLY_KEYS``."""
    signal: dict[str, Any] = field(default_factory=dict)
    """The signal's fields beyond the default (a take-profit)."""
    after: After | None = None
    """What happens once the entries are done, before the histories are exported (the market
    moves: the positions close)."""
    prepare: Callable[[Database], None] | None = None
    """What is done to the database after the signal is submitted, before it is planned."""


async def legs_waiting(handle: Handle, count: int) -> None:
    async def all_waiting() -> bool:
        progress: SignalProgress = await handle.query(SignalExecutionWorkflow.progress)
        return len(progress.legs) == count and all(
            leg.status is LegStatus.WAITING for leg in progress.legs
        )

    await poll_until(all_waiting, timeout_s=30, interval_s=0.05)


async def pause_one(handle: Handle) -> None:
    await legs_waiting(handle, 2)
    await handle.signal(
        SignalExecutionWorkflow.pause_account,
        PauseAccount(account_id="paused", operator="refresh", reason="replay fixture"),
    )


async def halt_all(handle: Handle) -> None:
    await legs_waiting(handle, 2)
    await handle.execute_update(
        SignalExecutionWorkflow.halt, HaltRequest(operator="refresh", reason="replay fixture")
    )


async def cancel_in_temporal(handle: Handle) -> None:
    """The Web UI's Request Cancellation: Temporal's own cancellation request."""
    await legs_waiting(handle, 2)
    await handle.cancel()


def completed_partial(lines: dict[str, Any]) -> None:
    completion = lines["partial"].completion
    assert completion is not None and completion.stopped == "COMPLETED", completion


def rerouted(lines: dict[str, Any]) -> None:
    assert lines["rejects"].reroute is not None
    assert [r.account_id for r in lines["rejects"].reroute.reports] == ["spare"]
    assert lines["spare"].rerouted_from == "rejects"


PLANNING_DENIALS = {
    "paused": DenialReason.PAUSED,
    "disabled": DenialReason.ACCOUNT_DISABLED,
    "stale": DenialReason.STALE_ACCOUNT_DATA,
    "gold-only": DenialReason.MANDATE_FORBIDS,
    "unmapped": DenialReason.SYMBOL_NOT_TRADABLE,
    "full": DenialReason.MAX_POSITIONS,
    "drawdown": DenialReason.DRAWDOWN_LIMIT,
    "budget-used": DenialReason.RISK_BUDGET_EXHAUSTED,
    "no-margin": DenialReason.INSUFFICIENT_MARGIN,
    "tiny": DenialReason.SIZE_BELOW_MIN_LOT,
    "reserve": DenialReason.NOT_SELECTED,
}
"""Every reason a plan can deny an account for, one account each (HALTED has its own
scenario: a halt denies every account)."""


def sliced(lines: dict[str, Any]) -> None:
    """Every leg took its own path after the slice: a completion, a reroute, a fill followed
    by its leg after the slice (``slow``: still working when the slice returned)."""
    completed_partial(lines)
    rerouted(lines)


def denied_for_each_reason(lines: dict[str, Any]) -> None:
    assert {a: line.denial for a, line in lines.items() if a != "trades"} == PLANNING_DENIALS


def denied_halted(lines: dict[str, Any]) -> None:
    assert {line.denial for line in lines.values()} == {DenialReason.HALTED}


def halt_the_book(db: Database) -> None:
    with db.transaction() as session:
        repository.set_halt(
            session, halted=True, operator="refresh", reason="replay fixture", now=datetime.now(UTC)
        )


def market_moves_to(bid: str) -> After:
    """The paper market's bid moves to ``bid``; the keeper is waited for until every position
    it holds is closed."""

    async def move(client: Client, db: Database, _: Settings, handle: Handle) -> None:
        PaperMarket(db).set_quote("EURUSD", Decimal(bid), Decimal(bid) + Decimal("0.00002"))
        await client.get_workflow_handle(ids.positions_workflow_id(handle.id)).result()

    return move


async def closed_by_signal(
    client: Client, db: Database, settings: Settings, handle: Handle
) -> None:
    """Half of each position closed by a CLOSE signal, then the rest by another; the keeper
    ends with the second."""
    signal_id = handle.id.removeprefix("signal-")
    for number, fraction in ((1, Decimal("0.5")), (2, Decimal(1))):
        action = TradeAction(
            action_id=f"{signal_id}-close-{number}",
            action=ActionKind.CLOSE,
            signal_id=signal_id,
            fraction=fraction,
        )
        await (await submit_action(client, db, settings, action)).result()
    await client.get_workflow_handle(ids.positions_workflow_id(handle.id)).result()


def with_state(record: AccountRecord, **changes: Any) -> AccountRecord:
    return record.model_copy(update={"state": record.state.model_copy(update=changes)})


PARTIAL = {"fill": "partial", "partial_ratio": "0.5", "partial_orders": 1}
SLOW_FILL = {"latency_ms": 600, "slices": 2}
"""Fills slow enough that legs due together overlap (SHORT's delays are at most 0.3 s apart)."""

SCENARIOS = [
    Scenario(
        "stopped_out",  # the market gaps through the stop: every position closes, P&L booked
        [account("one"), account("two")],
        {"one": LegStatus.FILLED, "two": LegStatus.FILLED},
        signal={"take_profit": Decimal("1.09100")},
        after=market_moves_to("1.08150"),
    ),
    Scenario(
        "take_profit_hit",  # the take-profit fills, its stop is cancelled
        [account("one")],
        {"one": LegStatus.FILLED},
        signal={"take_profit": Decimal("1.09100")},
        after=market_moves_to("1.09120"),
    ),
    Scenario(
        "closed_by_signal",  # CLOSE 50 %, then CLOSE the rest: the keeper's act update twice
        [account("one"), account("two")],
        {"one": LegStatus.FILLED, "two": LegStatus.FILLED},
        after=closed_by_signal,
    ),
    Scenario(
        "all_filled",
        [account("one"), account("two")],
        {"one": LegStatus.FILLED, "two": LegStatus.FILLED},
    ),
    Scenario(
        "partial_fill_completed",
        [account("partial", paper=PARTIAL), account("full")],
        {"partial": LegStatus.FILLED, "full": LegStatus.FILLED},
        check=completed_partial,
    ),
    Scenario(
        "reroute",
        [
            account("rejects", paper={"fill": "reject", "reject_text": "Not enough money [10019]"}),
            account("spare", reserve_only=True),
        ],
        {"rejects": LegStatus.REJECTED, "spare": LegStatus.FILLED},
        check=rerouted,
    ),
    Scenario(
        "paused_during_delay",
        [account("paused"), account("stays")],
        {"paused": LegStatus.SKIPPED_PAUSED, "stays": LegStatus.FILLED},
        settings=dict(WAITING),
        action=pause_one,
    ),
    Scenario(
        "halted",
        [account("one"), account("two")],
        {"one": LegStatus.HALTED, "two": LegStatus.HALTED},
        settings=dict(WAITING),
        action=halt_all,
    ),
    Scenario(
        "cancelled_in_temporal",  # Request Cancellation, handled like cancel_signal
        [account("one"), account("two")],
        {"one": LegStatus.CANCELLED, "two": LegStatus.CANCELLED},
        settings=dict(WAITING),
        action=cancel_in_temporal,
    ),
    Scenario(
        "denied",
        [
            account("trades"),
            account("paused", status="PAUSED"),
            account("disabled", status="DISABLED"),
            account("stale", as_of=datetime(2026, 1, 5, 9, tzinfo=UTC)),
            account("gold-only", mandate=Mandate(allowed_symbols=["XAUUSD"])),
            account("unmapped").model_copy(update={"symbol_map": {"EURUSD": None}}),
            account("full", open_positions=10),
            with_state(account("drawdown"), peak_equity=Decimal(60000)),
            account("budget-used", realized_loss_today=Decimal(5000)),
            account("no-margin", free_margin="8"),
            account("tiny", equity="100"),
            account("reserve", reserve_only=True),
        ],
        {"trades": LegStatus.FILLED, **dict.fromkeys(PLANNING_DENIALS, LegStatus.DENIED)},
        check=denied_for_each_reason,
    ),
    Scenario(
        "denied_halted",
        [account("one"), account("two")],
        dict.fromkeys(["one", "two"], LegStatus.DENIED),
        prepare=halt_the_book,
        check=denied_halted,
    ),
    Scenario(
        "reroute_completed",  # the reroute target fills partly: a completion under the reroute
        [
            account("rejects", paper={"fill": "reject", "reject_text": "Not enough money [10019]"}),
            account("spare", reserve_only=True, paper=PARTIAL),
        ],
        {"rejects": LegStatus.REJECTED, "spare": LegStatus.FILLED},
        check=rerouted,
    ),
    Scenario(
        "encrypted",  # payloads encrypted by the codec
        [account("partial", paper=PARTIAL), account("full")],
        {"partial": LegStatus.FILLED, "full": LegStatus.FILLED},
        encrypted=True,
        check=completed_partial,
    ),
    Scenario(
        "batched",  # batch children, and a completion grandchild under one of them
        [account("partial", paper=PARTIAL), account("full")],
        {"partial": LegStatus.FILLED, "full": LegStatus.FILLED},
        settings={**SHORT, "batch_size": 1},
        check=completed_partial,
    ),
    Scenario(
        "orders_in_flight",  # one order slot: legs due together wait their turn for it
        [account(name, paper=SLOW_FILL) for name in ("one", "two", "three")],
        dict.fromkeys(["one", "two", "three"], LegStatus.FILLED),
        settings={**SHORT, "max_orders_in_flight": 1},
    ),
    Scenario(
        "sliced",  # zero delays: the legs' first orders in one slice, then each on its own path
        [
            account("fills"),
            account("partial", paper=PARTIAL),
            account("rejects", paper={"fill": "reject", "reject_text": "Not enough money [10019]"}),
            account("slow", paper={"latency_ms": 3000, "slices": 2}),
            account("spare", reserve_only=True),
        ],
        {
            "fills": LegStatus.FILLED,
            "partial": LegStatus.FILLED,
            "rejects": LegStatus.REJECTED,
            "slow": LegStatus.FILLED,
            "spare": LegStatus.FILLED,
        },
        settings={"delay_min_s": Decimal(0), "delay_max_s": Decimal(0)},
        check=sliced,
    ),
    Scenario(
        "orders_in_flight_batched",  # the signal's two slots shared out: one per batch
        [account(name, paper=SLOW_FILL) for name in ("one", "two", "three", "four")],
        dict.fromkeys(["one", "two", "three", "four"], LegStatus.FILLED),
        settings={**SHORT, "batch_size": 2, "max_orders_in_flight": 2},
    ),
    Scenario(
        "orders_shared_by_legs",  # five slots among batches of 2, 2 and 1 legs: 2, 2 and 1
        [account(name, paper=SLOW_FILL) for name in ("one", "two", "three", "four", "five")],
        dict.fromkeys(["one", "two", "three", "four", "five"], LegStatus.FILLED),
        settings={**SHORT, "batch_size": 2, "max_orders_in_flight": 5},
    ),
    Scenario(
        "keeper_told_once",  # a whole fill tells its keeper once; a partial one twice
        [account("full"), account("partial", paper=PARTIAL)],
        {"full": LegStatus.FILLED, "partial": LegStatus.FILLED},
        check=completed_partial,
    ),
    Scenario(
        "keeper_told_together",  # the legs one slice ends tell their keeper in one signal
        [account("one"), account("two"), account("partial", paper=PARTIAL)],
        {"one": LegStatus.FILLED, "two": LegStatus.FILLED, "partial": LegStatus.FILLED},
        settings={"delay_min_s": Decimal(0), "delay_max_s": Decimal(0)},
        check=completed_partial,
    ),
]


async def run_scenario(
    env: WorkflowEnvironment, scenario: Scenario, workdir: Path, executor: ThreadPoolExecutor
) -> list[history.Exported]:
    db = Database(f"sqlite:///{workdir / (scenario.name + '.db')}")
    db.migrate()
    load(db, book(*scenario.accounts))
    settings = Settings.model_validate(
        {
            "temporal_address": env.client.service_client.config.target_host,
            "task_queue": f"refresh-{scenario.name}",
            "database_url": db.url,
            "correlated_min_gap_s": Decimal(0),
            "order_poll_interval_s": 0.05,
            "max_concurrent_activities": 16,
            **scenario.settings,
            **({"codec_key_file": TEST_ONLY_KEYS} if scenario.encrypted else {}),
        }
    )
    client = await Client.connect(
        env.client.service_client.config.target_host,
        namespace=env.client.namespace,
        data_converter=data_converter(settings),
    )
    try:
        # Submitted before a worker polls its task queue, so `prepare` lands before planning.
        PaperMarket(db).set_quote("EURUSD", Decimal("1.08500"), Decimal("1.08502"))
        handle = await submit_signal(
            client,
            db,
            settings,
            signal(f"replay-{scenario.name.replace('_', '-')}", **scenario.signal),
        )
        if scenario.prepare is not None:
            scenario.prepare(db)
        async with build_worker(client, settings, build_activities(db, settings), executor):
            if scenario.action is not None:
                await scenario.action(handle)
            report = await handle.result()
            if scenario.after is not None:
                await scenario.after(client, db, settings, handle)
    finally:
        db.dispose()
    lines = {line.account_id: line for line in report.accounts}
    statuses = {a: line.status for a, line in lines.items()}
    if statuses != scenario.expect:
        raise AssertionError(f"{scenario.name}: expected {scenario.expect}, got {statuses}")
    if scenario.check is not None:
        scenario.check(lines)
    target = HISTORIES / scenario.name
    shutil.rmtree(target, ignore_errors=True)
    exported, _ = await history.export_signals(client, [handle.id], target)
    return exported


async def refresh(names: list[str]) -> None:
    unknown = set(names) - {s.name for s in SCENARIOS}
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    chosen = [s for s in SCENARIOS if not names or s.name in names]
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=temporal_binary(),
        search_attributes=search_attributes.ALL,
        ip="127.0.0.1",
        dev_server_log_level="error",
    )
    try:
        with (
            tempfile.TemporaryDirectory() as tmp,
            ThreadPoolExecutor(max_workers=16) as executor,
        ):
            for scenario in chosen:
                for item in await run_scenario(env, scenario, Path(tmp), executor):
                    size = item.path.stat().st_size
                    print(
                        f"{item.path.relative_to(HISTORIES.parent)}: "
                        f"{len(item.history.events)} events, {size} bytes"
                    )
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(refresh(sys.argv[1:]))

"""Partial-fill completion and rerouting, one test per path, on the time-skipping server with
the real activities, SQLite and the paper broker (behind a faulty front where a path needs
broker faults)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from orchestrator.adapters.brokers.paper import PaperBroker
from orchestrator.adapters.db.engine import Database
from orchestrator.config import Settings
from orchestrator.domain.book import SymbolSpec
from orchestrator.domain.contracts.operators import CancelSignalRequest
from orchestrator.domain.report import (
    AccountReport,
    CompletionStop,
    LegStatus,
    RerouteOutcome,
    SignalReport,
)
from orchestrator.domain.signal import Signal
from orchestrator.services import audit
from orchestrator.services.audit import ValueVerdict
from orchestrator.services.history import fetch_with_children
from orchestrator.services.submit import submit_signal
from tests.support import (
    FaultyBroker,
    account,
    book,
    broker_orders,
    load,
    paper_orders,
    poll_until,
    reservations,
    signal,
)
from workflows.signal import SignalExecutionWorkflow

HALF_ONCE = {"fill": "partial", "partial_ratio": "0.5", "partial_orders": 1}


@pytest.fixture
def settings(test_settings: Settings) -> Settings:
    return test_settings.model_copy(
        update={
            "delay_min_s": Decimal(1),
            "delay_max_s": Decimal(5),
            "size_variance": Decimal(0),
            "completion_deadline_s": 60,
        }
    )


async def run_signal(
    client: Client,
    db: Database,
    settings: Settings,
    harness_factory,
    signal_id: str,
    *,
    broker=None,
) -> dict[str, AccountReport]:
    async with harness_factory(client, db, settings, broker).running():
        handle = await submit_signal(client, db, settings, signal(signal_id))
        report = await handle.result()
    return {line.account_id: line for line in report.accounts}


# --------------------------------------------------------------------------------------------
# Partial-fill completion


async def test_partial_fill_completed_in_one_attempt(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    load(sqlite_db, book(account("thin", paper=HALF_ONCE)))
    lines = await run_signal(ts_client, sqlite_db, settings, harness_factory, "c-one")

    line = lines["thin"]
    assert line.status is LegStatus.FILLED
    assert line.filled == line.requested
    assert line.completion is not None
    assert (line.completion.attempts, line.completion.stopped) == (1, CompletionStop.COMPLETED)
    assert line.completion.client_order_ids == ["c-one:thin:2"]
    assert set(paper_orders(sqlite_db)) == {"c-one:thin:1", "c-one:thin:2"}
    assert [r.status for r in reservations(sqlite_db)] == ["SETTLED"]


async def test_partial_fill_completed_in_several_attempts(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    three_partials = {"fill": "partial", "partial_ratio": "0.5", "partial_orders": 3}
    load(sqlite_db, book(account("thin", paper=three_partials)))
    lines = await run_signal(ts_client, sqlite_db, settings, harness_factory, "c-several")

    line = lines["thin"]
    assert line.completion is not None
    assert line.completion.attempts == 3
    assert line.completion.stopped is CompletionStop.COMPLETED
    assert line.filled == line.requested
    assert broker_orders(sqlite_db) == {"thin": 4}


async def test_remainder_below_min_lot_is_recorded_as_dust_never_rounded_up(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    coarse = SymbolSpec(
        broker="gamma",
        symbol="EURUSD",
        tick_size=Decimal("0.00001"),
        tick_value=Decimal(1),
        contract_size=Decimal(100000),
        min_lot=Decimal("0.1"),
        lot_step=Decimal("0.01"),
        max_lot=Decimal(50),
        margin_per_lot=Decimal(1000),
    )
    nearly_all = {"fill": "partial", "partial_ratio": "0.97", "partial_orders": 1}
    load(sqlite_db, book(account("coarse", broker="gamma", paper=nearly_all), symbols=[coarse]))
    lines = await run_signal(ts_client, sqlite_db, settings, harness_factory, "c-dust")

    line = lines["coarse"]
    assert line.completion is not None
    assert line.completion.stopped is CompletionStop.DUST
    assert line.completion.attempts == 0
    assert 0 < line.completion.dust == line.completion.unfilled < Decimal("0.1")
    assert line.filled + line.completion.dust == line.requested
    assert line.status is LegStatus.PARTIALLY_FILLED
    assert broker_orders(sqlite_db) == {"coarse": 1}


async def test_completion_deadline_cancels_the_working_order_at_the_broker(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    stalls = {**HALF_ONCE, "stall_after": 1}
    load(sqlite_db, book(account("dry", paper=stalls)))
    short = settings.model_copy(update={"completion_deadline_s": 5})
    lines = await run_signal(ts_client, sqlite_db, short, harness_factory, "c-deadline")

    line = lines["dry"]
    assert line.completion is not None
    assert line.completion.stopped is CompletionStop.DEADLINE
    assert line.status is LegStatus.PARTIALLY_FILLED
    assert paper_orders(sqlite_db)["c-deadline:dry:2"].status == "CANCELLED"
    assert [r.status for r in reservations(sqlite_db)] == ["SETTLED"]


# --------------------------------------------------------------------------------------------
# Rerouting


async def test_rejection_is_rerouted_to_a_reserve_account_at_95_percent(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    load(
        sqlite_db,
        book(
            account("rejects", paper={"fill": "reject", "reject_text": "Trade disabled"}),
            account("spare", reserve_only=True),
        ),
    )
    lines = await run_signal(ts_client, sqlite_db, settings, harness_factory, "r-fill")

    failed, target = lines["rejects"], lines["spare"]
    assert failed.status is LegStatus.REJECTED
    assert failed.reason == "Trade disabled"
    assert failed.reroute is not None
    assert failed.reroute.outcome is RerouteOutcome.PLACED
    assert [line.account_id for line in failed.reroute.reports] == ["spare"]
    assert [h.to_account for h in failed.reroute.hops] == ["spare"]
    assert target.status is LegStatus.FILLED
    assert target.rerouted_from == "rejects"
    expected = (failed.requested * Decimal("0.95")).quantize(Decimal("0.01"), "ROUND_FLOOR")
    assert target.requested == target.filled == expected
    assert broker_orders(sqlite_db) == {"rejects": 1, "spare": 1}


async def test_rerouted_order_rejected_moves_on_to_the_next_reserve(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    load(
        sqlite_db,
        book(
            account("rejects", paper={"fill": "reject", "reject_text": "No money"}),
            account("spare-1", reserve_only=True, paper={"fill": "reject", "reject_text": "Off"}),
            account("spare-2", reserve_only=True),
        ),
    )
    lines = await run_signal(ts_client, sqlite_db, settings, harness_factory, "r-next")

    reroute = lines["rejects"].reroute
    assert reroute is not None
    assert [(h.to_account, h.outcome, h.reason) for h in reroute.hops][:1] == [
        ("spare-1", "REJECTED", "Off")
    ]
    assert [(h.to_account, h.outcome) for h in reroute.hops] == [
        ("spare-1", "REJECTED"),
        ("spare-2", "FILLED"),
    ]
    assert [line.account_id for line in reroute.reports] == ["spare-2"]
    assert lines["spare-2"].status is LegStatus.FILLED
    assert broker_orders(sqlite_db) == {"rejects": 1, "spare-1": 1, "spare-2": 1}


async def test_reroute_with_no_alternative_left_ends_no_alternative_account(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    load(
        sqlite_db,
        book(
            account("rejects", paper={"fill": "reject", "reject_text": "No money"}),
            account("fills"),
        ),
    )
    lines = await run_signal(ts_client, sqlite_db, settings, harness_factory, "r-none")

    reroute = lines["rejects"].reroute
    assert reroute is not None
    assert reroute.outcome is RerouteOutcome.NO_ALTERNATIVE_ACCOUNT
    assert reroute.hops == []
    # The account that already took part in the signal was never used as a target.
    assert broker_orders(sqlite_db) == {"rejects": 1, "fills": 1}


async def test_reroute_target_partially_filled_is_completed(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    load(
        sqlite_db,
        book(
            account("rejects", paper={"fill": "reject", "reject_text": "No money"}),
            account("spare", reserve_only=True, paper=HALF_ONCE),
        ),
    )
    lines = await run_signal(ts_client, sqlite_db, settings, harness_factory, "r-partial")

    target = lines["spare"]
    assert target.completion is not None
    assert target.completion.stopped is CompletionStop.COMPLETED
    assert target.status is LegStatus.FILLED
    assert target.filled == target.requested
    assert broker_orders(sqlite_db) == {"rejects": 1, "spare": 2}


# --------------------------------------------------------------------------------------------
# Failure classification


async def test_transient_broker_errors_twice_then_success_place_exactly_one_order(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    load(sqlite_db, book(account("acc")))
    broker = FaultyBroker(PaperBroker(sqlite_db), busy=2)
    lines = await run_signal(
        ts_client, sqlite_db, settings, harness_factory, "f-busy", broker=broker
    )

    assert lines["acc"].status is LegStatus.FILLED
    assert broker.submit_calls == 3
    assert broker_orders(sqlite_db) == {"acc": 1}


async def test_ambiguous_timeout_is_resolved_by_lookup_with_exactly_one_order(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    load(sqlite_db, book(account("acc")))
    broker = FaultyBroker(PaperBroker(sqlite_db), ambiguous=1)
    lines = await run_signal(
        ts_client, sqlite_db, settings, harness_factory, "f-ambig", broker=broker
    )

    assert lines["acc"].status is LegStatus.FILLED
    # The retry asked the broker first, found the order and never submitted again.
    assert broker.submit_calls == 1
    assert broker_orders(sqlite_db) == {"acc": 1}


@pytest.mark.parametrize("how", ["cancel_signal", "temporal_cancellation"])
async def test_parent_cancelled_while_completion_works_cancels_the_order_at_the_broker(
    time_skipping_env: WorkflowEnvironment,
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    harness_factory,
    *,
    how: str,
) -> None:
    """The signal cancelled (``cancel_signal``, or the Web UI's Request Cancellation) while a
    completion child works: the child cancels its order at the broker and ends cancelled; the
    signal completes with its report, status CANCELLED (it used to fail, or end CANCELED with
    no report)."""
    load(sqlite_db, book(account("dry", paper={**HALF_ONCE, "stall_after": 1})))
    long = settings.model_copy(update={"completion_deadline_s": 3600})
    async with harness_factory(ts_client, sqlite_db, long).running():
        handle = await submit_signal(ts_client, sqlite_db, long, signal("x-cancel"))
        with time_skipping_env.auto_time_skipping_disabled():
            await poll_until(lambda: "x-cancel:dry:2" in paper_orders(sqlite_db), timeout_s=60)
            if how == "cancel_signal":
                await handle.execute_update(
                    SignalExecutionWorkflow.cancel_signal,
                    CancelSignalRequest(operator="jane", reason="client asked"),
                )
            else:
                await handle.cancel()
        report: SignalReport = await handle.result()
        description = await handle.describe()
        completion = ts_client.get_workflow_handle("signal-x-cancel/leg-1/completion")
        with pytest.raises(WorkflowFailureError):
            await completion.result()
        # Its id names the leg only; its summary (what the Web UI shows) names the account.
        summary = await (await completion.describe()).static_summary()

    assert summary is not None
    assert re.fullmatch(r"completion of dry's [0-9.]+ lots \(signal x-cancel\)", summary), summary
    assert report.status == "CANCELLED"
    [line] = report.accounts
    assert (line.account_id, line.status) == ("dry", LegStatus.CANCELLED)
    attributes = description.typed_search_attributes
    assert [v for k, v in attributes if k.name == "SignalStatus"] == ["CANCELLED"]
    assert paper_orders(sqlite_db)["x-cancel:dry:2"].status == "CANCELLED"
    assert [r.status for r in reservations(sqlite_db)] == ["SETTLED"]


# --------------------------------------------------------------------------------------------
# Rerouting moves risk, not lots

US500_ONE = SymbolSpec(
    broker="alpha",
    symbol="US500",
    tick_size=Decimal("0.1"),
    tick_value=Decimal("0.1"),
    contract_size=Decimal(1),
    min_lot=Decimal("0.1"),
    lot_step=Decimal("0.1"),
    max_lot=Decimal(500),
    margin_per_lot=Decimal(50),
)
"""The index at broker alpha: a lot is worth 1 USD a point."""
US500_TEN = US500_ONE.model_copy(
    update={
        "broker": "beta",
        "tick_value": Decimal(1),
        "lot_step": Decimal("0.01"),
        "min_lot": Decimal("0.01"),
        "margin_per_lot": Decimal(500),
    }
)
"""The same index at broker beta: a lot is worth 10 USD a point, ten times alpha's."""


def index_signal(signal_id: str) -> Signal:
    return signal(
        signal_id, symbol="US500", entry=Decimal("5000.0"), stop=Decimal("4980.0")
    )  # 20 points at the stop


async def test_reroute_to_a_tenfold_contract_carries_95_percent_of_the_risk_not_the_lots(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    load(
        sqlite_db,
        book(
            account("rejects", equity="30000", paper={"fill": "reject", "reject_text": "Closed"}),
            account("spare", equity="30000", broker="beta", reserve_only=True),
            symbols=[US500_ONE, US500_TEN],
        ),
    )
    async with harness_factory(ts_client, sqlite_db, settings).running():
        handle = await submit_signal(ts_client, sqlite_db, settings, index_signal("r-index"))
        report = await handle.result()
        loaded = await fetch_with_children(ts_client, handle.id)
    lines = {line.account_id: line for line in report.accounts}

    failed, target = lines["rejects"], lines["spare"]
    assert failed.size is not None and target.size is not None
    # 300 USD at risk (1 % of 30,000): 15 lots at alpha, 20 points × 1 USD a lot each.
    assert failed.requested == Decimal(15)
    original_risk = failed.requested * 20 * 1
    assert failed.reroute is not None
    assert failed.reroute.risk_original == original_risk
    # At beta one lot risks 200 USD at the stop: 95 % of 300 USD is 1.425 lots, rounded down
    # to 1.42; 95 % of the lots (14.25) would have risked 2,850 USD.
    assert target.requested == Decimal("1.42")
    target_risk = target.requested * 20 * 10
    assert target_risk <= Decimal("0.95") * original_risk
    # Within the target's own risk per trade (1 % of 30,000) and every other limit.
    assert target_risk <= Decimal(300)
    assert target.size.binding == "carried_risk"
    assert failed.reroute.outcome is RerouteOutcome.PLACED
    assert failed.reroute.risk_placed == target_risk

    # The audit re-derives the reroute's size from its history and finds it as recorded.
    result = await audit.audit_histories(loaded)
    assert result.values.verdict is ValueVerdict.MATCH, result.values.differences
    assert any(
        "reroute" in entry.workflow_id and "risk 284.000000 of 300" in entry.text
        for entry in result.trail
    ), [e.text for e in result.trail]


US500_COARSE = US500_TEN.model_copy(
    update={"broker": "gamma", "lot_step": Decimal(1), "min_lot": Decimal(1)}
)
"""The index at broker gamma: beta's contract, in whole lots only."""


async def reroute_of(
    client: Client, db: Database, settings: Settings, harness_factory, signal_id: str
) -> tuple[dict[str, AccountReport], list[WorkflowHistory]]:
    async with harness_factory(client, db, settings).running():
        handle = await submit_signal(client, db, settings, index_signal(signal_id))
        report = await handle.result()
        loaded = await fetch_with_children(client, handle.id)
    return {line.account_id: line for line in report.accounts}, loaded


async def test_what_a_coarse_lot_step_leaves_over_moves_on_to_the_next_reserve_account(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    load(
        sqlite_db,
        book(
            account("rejects", equity="30000", paper={"fill": "reject", "reject_text": "Closed"}),
            account("spare-1", equity="30000", broker="gamma", reserve_only=True),
            account("spare-2", equity="30000", broker="beta", reserve_only=True),
            symbols=[US500_ONE, US500_TEN, US500_COARSE],
        ),
    )
    lines, loaded = await reroute_of(ts_client, sqlite_db, settings, harness_factory, "r-coarse")

    reroute = lines["rejects"].reroute
    assert reroute is not None
    # 95 % of 300 USD is 285 to carry; at gamma a whole lot risks 200 USD (20 points at 10 USD
    # a point), so spare-1 takes 1 lot and 85 USD is left over: it moves on to beta, where
    # 0.01-lot steps take 0.42 lots (84 USD).
    assert [h.to_account for h in reroute.hops] == ["spare-1", "spare-2"]
    assert lines["spare-1"].requested == Decimal(1)
    assert lines["spare-2"].requested == Decimal("0.42")
    assert reroute.risk_carried == Decimal(285)
    assert reroute.risk_placed == Decimal(284)
    assert reroute.outcome is RerouteOutcome.PLACED
    result = await audit.audit_histories(loaded)
    assert result.values.verdict is ValueVerdict.MATCH, result.values.differences


async def test_a_reroute_skips_a_reserve_account_in_another_currency(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    # Risk carried in USD cannot cap risk in JPY without an exchange rate: the JPY account is
    # passed over, saying why, and the next one in USD takes it.
    in_yen = account("spare-1", equity="4500000", broker="gamma", reserve_only=True)
    load(
        sqlite_db,
        book(
            account("rejects", equity="30000", paper={"fill": "reject", "reject_text": "Closed"}),
            in_yen.model_copy(
                update={
                    "currency": "JPY",
                    "limits": in_yen.limits.model_copy(
                        update={"daily_loss_budget": Decimal(750_000)}
                    ),
                }
            ),
            account("spare-2", equity="30000", broker="beta", reserve_only=True),
            symbols=[
                US500_ONE,
                US500_TEN,
                US500_COARSE.model_copy(update={"tick_value": Decimal(150)}),  # JPY a tick
            ],
        ),
    )
    lines, loaded = await reroute_of(ts_client, sqlite_db, settings, harness_factory, "r-yen")

    reroute = lines["rejects"].reroute
    assert reroute is not None
    skipped, placed = reroute.hops
    assert (skipped.to_account, skipped.outcome) == ("spare-1", LegStatus.DENIED)
    assert skipped.reason.startswith("CURRENCY_DIFFERS: the risk to carry is in USD"), skipped
    assert "spare-1" not in lines or lines["spare-1"].filled == 0
    assert (placed.to_account, placed.outcome) == ("spare-2", LegStatus.FILLED)
    assert lines["spare-2"].requested == Decimal("1.42")
    result = await audit.audit_histories(loaded)
    assert result.values.verdict is ValueVerdict.MATCH, result.values.differences


async def test_what_a_target_cannot_take_moves_on_to_the_next_reserve_account(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    small_budget = account("spare-1", reserve_only=True)
    small_budget = small_budget.model_copy(
        update={"limits": small_budget.limits.model_copy(update={"daily_loss_budget": Decimal(90)})}
    )
    load(
        sqlite_db,
        book(
            account("rejects", paper={"fill": "reject", "reject_text": "No money"}),
            small_budget,
            account("spare-2", reserve_only=True),
        ),
    )
    lines = await run_signal(ts_client, sqlite_db, settings, harness_factory, "r-spread")

    failed = lines["rejects"]
    reroute = failed.reroute
    assert reroute is not None
    # spare-1 had 90 USD of budget left: it took 0.30 lots (300 USD a lot at the stop) ...
    assert lines["spare-1"].requested == Decimal("0.30")
    assert lines["spare-1"].size is not None
    assert lines["spare-1"].size.binding == "daily_risk_budget"
    # ... and the rest of the 95 % moved on to "spare-2", bound by what was left to carry.
    assert [h.to_account for h in reroute.hops] == ["spare-1", "spare-2"]
    carried = Decimal("0.95") * failed.requested * 300
    assert lines["spare-2"].size is not None
    assert lines["spare-2"].size.carried_risk == carried - 90
    assert lines["spare-2"].size.binding == "carried_risk"
    assert reroute.outcome is RerouteOutcome.PLACED
    placed = (lines["spare-1"].filled + lines["spare-2"].filled) * 300
    assert reroute.risk_placed == placed <= carried
    assert carried - placed < Decimal("0.01") * 300  # less than one lot step was left over
    assert broker_orders(sqlite_db) == {"rejects": 1, "spare-1": 1, "spare-2": 1}


async def test_a_reroute_never_exceeds_the_tries_even_with_risk_left(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    tiny = account("spare-1", reserve_only=True)
    tiny = tiny.model_copy(
        update={"limits": tiny.limits.model_copy(update={"daily_loss_budget": Decimal(30)})}
    )
    load(
        sqlite_db,
        book(
            account("rejects", paper={"fill": "reject", "reject_text": "No money"}),
            tiny,
            account("spare-2", reserve_only=True),
        ),
    )
    one_try = settings.model_copy(update={"reroute_max_accounts": 1})
    lines = await run_signal(ts_client, sqlite_db, one_try, harness_factory, "r-tries")

    reroute = lines["rejects"].reroute
    assert reroute is not None
    assert [h.to_account for h in reroute.hops] == ["spare-1"]
    assert reroute.outcome is RerouteOutcome.PARTLY_PLACED
    assert reroute.risk_placed == lines["spare-1"].filled * 300 == Decimal(30)
    assert "spare-2" not in broker_orders(sqlite_db)

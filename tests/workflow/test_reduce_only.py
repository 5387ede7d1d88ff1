"""Reduce-only accounts on the time-skipping server with the real activities, SQLite and the
paper broker: a new signal's leg denied while the others trade, a waiting leg refused at its
reservation, allow-entries restoring trading, and the position keeper still protecting an open
position of an account in reduce-only."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.execution import ExecutionActivities
from orchestrator.adapters.brokers.paper import PaperBroker
from orchestrator.adapters.db.engine import Database
from orchestrator.config import Settings
from orchestrator.domain.contracts.payloads import PlaceOrderRequest
from orchestrator.domain.orders import OrderOutcome
from orchestrator.domain.report import AccountReport, CompletionStop, LegStatus, SignalReport
from orchestrator.domain.values import DenialReason
from orchestrator.services import operators
from orchestrator.services.submit import submit_signal
from tests.support import (
    account,
    book,
    broker_orders,
    load,
    poll_until,
    protection_gaps,
    protection_violations,
    protective_orders,
    signal,
    uncorrelated_returns,
)
from worker import build_worker
from workflows.signal import SignalExecutionWorkflow


@pytest.fixture
def settings(test_settings: Settings) -> Settings:
    return test_settings.model_copy(
        update={"delay_min_s": Decimal(0), "delay_max_s": Decimal(1), "size_variance": Decimal(0)}
    )


def lines_of(report: SignalReport) -> dict[str, AccountReport]:
    return {line.account_id: line for line in report.accounts}


async def run_signal(
    client: Client, db: Database, settings: Settings, signal_id: str, **overrides: object
) -> dict[str, AccountReport]:
    handle = await submit_signal(client, db, settings, signal(signal_id, **overrides))
    return lines_of(await handle.result())


def reduce(db: Database, *account_ids: str) -> None:
    operators.reduce_only(db, list(account_ids), operator="jane", reason="margin call")


async def test_a_new_signal_denies_a_reduce_only_account_while_the_others_trade(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    ids = ["trades", "reduced"]
    load(sqlite_db, book(*(account(i) for i in ids), returns=uncorrelated_returns(ids)))
    reduce(sqlite_db, "reduced")
    async with harness_factory(ts_client, sqlite_db, settings).running():
        lines = await run_signal(ts_client, sqlite_db, settings, "ro-new")

    assert lines["trades"].status is LegStatus.FILLED
    assert (lines["reduced"].status, lines["reduced"].denial) == (
        LegStatus.DENIED,
        DenialReason.REDUCE_ONLY,
    )
    assert broker_orders(sqlite_db) == {"trades": 1}


async def test_a_waiting_leg_of_an_account_put_in_reduce_only_is_refused_when_it_would_leave(
    time_skipping_env: WorkflowEnvironment,
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    harness_factory,
) -> None:
    """Reduce-only is not sent to running workflows: the leg meets it at its reservation, is
    denied REDUCE_ONLY and, like a pause found there, is not rerouted."""
    ids = ["stays", "reduced"]
    load(
        sqlite_db,
        book(
            *(account(i) for i in ids),
            account("spare", reserve_only=True),
            returns=uncorrelated_returns(ids),
        ),
    )
    waiting = settings.model_copy(update={"delay_min_s": Decimal(30), "delay_max_s": Decimal(30)})
    async with harness_factory(ts_client, sqlite_db, waiting).running():
        handle = await submit_signal(ts_client, sqlite_db, waiting, signal("ro-waiting"))
        with time_skipping_env.auto_time_skipping_disabled():
            await poll_until(lambda: _all_waiting(handle, 2))
            reduce(sqlite_db, "reduced")
        lines = lines_of(await handle.result())

    assert lines["stays"].status is LegStatus.FILLED
    reduced = lines["reduced"]
    assert (reduced.status, reduced.denial) == (LegStatus.DENIED, DenialReason.REDUCE_ONLY)
    assert reduced.reason is not None and "reduce-only" in reduced.reason
    assert reduced.reroute is None
    assert broker_orders(sqlite_db) == {"stays": 1}


async def _all_waiting(handle: WorkflowHandle[Any, Any], legs: int) -> bool:
    progress = await handle.query(SignalExecutionWorkflow.progress)
    return len(progress.legs) == legs and all(
        leg.status is LegStatus.WAITING for leg in progress.legs
    )


async def test_allow_entries_lets_the_account_trade_again(
    time_skipping_env: WorkflowEnvironment,
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    harness_factory,
) -> None:
    load(sqlite_db, book(account("acc")))
    reduce(sqlite_db, "acc")
    # Two signals in one server: its clock must not jump between them (the second would find
    # the account's data years old).
    at_once = settings.model_copy(update={"delay_max_s": Decimal(0)})
    async with harness_factory(ts_client, sqlite_db, at_once).running():
        with time_skipping_env.auto_time_skipping_disabled():
            before = await run_signal(ts_client, sqlite_db, at_once, "ro-before")
            operators.allow_entries(sqlite_db, ["acc"], operator="jane", reason="margin back")
            after = await run_signal(ts_client, sqlite_db, at_once, "ro-after")

    assert before["acc"].denial is DenialReason.REDUCE_ONLY
    assert after["acc"].status is LegStatus.FILLED
    assert broker_orders(sqlite_db) == {"acc": 1}


def working_protection(db: Database, signal_id: str) -> dict[str, Decimal]:
    """The signal's working protective orders: quantity by purpose (STOP, TAKE_PROFIT)."""
    return {
        o.purpose: o.quantity
        for o in protective_orders(db, signal_id)
        if o.status in ("NEW", "PARTIALLY_FILLED")
    }


async def test_a_reroute_never_moves_risk_to_an_account_in_reduce_only(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    load(
        sqlite_db,
        book(account("rejects", paper={"fill": "reject"}), account("spare", reserve_only=True)),
    )
    reduce(sqlite_db, "spare")
    async with harness_factory(ts_client, sqlite_db, settings).running():
        lines = await run_signal(ts_client, sqlite_db, settings, "ro-reroute")

    # Denied at planning, the account is not in the plan's reserve: nothing to reroute to.
    assert lines["spare"].denial is DenialReason.REDUCE_ONLY
    reroute = lines["rejects"].reroute
    assert reroute is not None and reroute.outcome == "NO_ALTERNATIVE_ACCOUNT"
    assert "spare" not in broker_orders(sqlite_db)


class ReducingAfterTheFirstOrder(ExecutionActivities):
    """The real activities; once a leg's first order has ended, its account is put in
    reduce-only (an operator acting between the entry's fill and what follows it)."""

    @activity.defn
    def place_and_follow_order(self, request: PlaceOrderRequest) -> OrderOutcome:
        outcome = super().place_and_follow_order(request)
        if request.business_sequence == 1:
            reduce(self._db, request.account_id)
        return outcome


async def test_the_keeper_protects_the_open_position_of_an_account_in_reduce_only(
    ts_client: Client, sqlite_db: Database, settings: Settings, executor
) -> None:
    """Half the entry fills, then the account goes reduce-only: the completion order is
    refused at the gate (no new risk), while the stop and take-profit for the half that filled
    are placed all the same."""
    half = {"fill": "partial", "partial_ratio": "0.5", "partial_orders": 1}
    load(sqlite_db, book(account("held", paper=half)))
    activities = ReducingAfterTheFirstOrder(
        sqlite_db,
        PaperBroker(sqlite_db),
        service=settings.service_settings(),
        poll_interval_s=0.05,
    )
    async with build_worker(ts_client, settings, activities, executor):
        lines = await run_signal(
            ts_client, sqlite_db, settings, "ro-keeper", take_profit=Decimal("1.09100")
        )
        line = lines["held"]
        protected = {"STOP": line.filled, "TAKE_PROFIT": line.filled}
        await poll_until(lambda: working_protection(sqlite_db, "ro-keeper") == protected)

    assert line.status is LegStatus.PARTIALLY_FILLED
    assert line.completion is not None
    assert line.completion.stopped is CompletionStop.STOPPED_BY_OPERATOR
    assert DenialReason.REDUCE_ONLY.value in line.completion.detail
    assert broker_orders(sqlite_db) == {"held": 1}
    assert line.filled > 0
    assert protection_gaps(sqlite_db) == []
    assert protection_violations(sqlite_db) == []

"""Legs due together go out together: one slice activity for the zero-delay legs of a signal,
and each leg on its own path afterwards. On the time-skipping server with the real activities,
SQLite and the paper broker (behind a faulty front where a leg needs a broker fault)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import update
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.execution import ExecutionActivities
from orchestrator.adapters.brokers.base import BrokerOrder, OrderTicket
from orchestrator.adapters.brokers.paper import PaperBroker
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import AccountStateRow
from orchestrator.config import Settings
from orchestrator.domain.book import AccountStatus
from orchestrator.domain.contracts.activities import Execution, activity_name
from orchestrator.domain.contracts.operators import CancelSignalRequest
from orchestrator.domain.contracts.payloads import PlaceSliceRequest, SliceOutcome
from orchestrator.domain.errors import BrokerUnavailable
from orchestrator.domain.report import LegStatus, RerouteOutcome
from orchestrator.domain.values import DenialReason
from orchestrator.services import audit
from orchestrator.services.audit import ValueVerdict
from orchestrator.services.history import fetch_with_children
from orchestrator.services.submit import submit_signal
from tests.support import (
    FaultyBroker,
    account,
    book,
    broker_orders,
    keeper_told,
    load,
    paper_orders,
    poll_until,
    protection_gaps,
    protection_violations,
    protective_orders,
    reservations,
    signal,
    uncorrelated_returns,
)
from worker import build_worker
from workflows.signal import SignalExecutionWorkflow

SLICE = activity_name(Execution.place_and_follow_slice)
ORDER = activity_name(Execution.place_and_follow_order)


class LosesAnswerFor(FaultyBroker):
    """Sends ``account_id``'s first order, then loses the broker's answer: the send timed out,
    and nobody can tell whether the broker holds it."""

    def __init__(self, inner: PaperBroker, account_id: str) -> None:
        super().__init__(inner)
        self._account_id = account_id
        self.lost: list[str] = []

    def submit(self, ticket: OrderTicket) -> BrokerOrder:
        order = super().submit(ticket)
        if ticket.account_id == self._account_id and not self.lost:
            self.lost.append(ticket.client_order_id)
            raise BrokerUnavailable("timed out waiting for the acknowledgement")
        return order


@pytest.fixture
def settings(test_settings: Settings) -> Settings:
    return test_settings.model_copy(
        update={
            "delay_min_s": Decimal(0),
            "delay_max_s": Decimal(0),
            "size_variance": Decimal(0),
        }
    )


def scheduled(history) -> Counter[str]:
    return Counter(
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    )


async def test_a_slice_ends_each_leg_on_its_own_path(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    """Three legs due at once go out in one slice: one rejected (rerouted to the reserve), one
    whose send timed out (its leg follows it on its own: filled, sent once), one filled."""
    load(
        sqlite_db,
        book(
            account("fills"),
            account("rejects", paper={"fill": "reject", "reject_text": "Market closed"}),
            account("unanswered"),
            account("spare", reserve_only=True),
        ),
    )
    broker = LosesAnswerFor(PaperBroker(sqlite_db), "unanswered")
    async with harness_factory(ts_client, sqlite_db, settings, broker).running():
        handle = await submit_signal(ts_client, sqlite_db, settings, signal("s-paths"))
        report = await handle.result()
        histories = await fetch_with_children(ts_client, handle.id)
    lines = {line.account_id: line for line in report.accounts}

    # One slice carried the three legs' first orders; only the unanswered one was followed
    # by its own leg afterwards.
    activities = scheduled(histories[0])
    assert activities[SLICE] == 1
    assert activities[ORDER] == 1
    assert broker.lost == ["s-paths:unanswered:1"]

    assert lines["fills"].status is LegStatus.FILLED
    assert lines["fills"].filled == lines["fills"].requested
    assert lines["fills"].position is not None  # the keeper holds its position

    rejected = lines["rejects"]
    assert (rejected.status, rejected.reason) == (LegStatus.REJECTED, "Market closed")
    assert rejected.reroute is not None and rejected.reroute.outcome is RerouteOutcome.PLACED
    assert lines["spare"].rerouted_from == "rejects"
    assert lines["spare"].status is LegStatus.FILLED

    unanswered = lines["unanswered"]
    assert unanswered.status is LegStatus.FILLED
    assert unanswered.filled == unanswered.requested
    assert unanswered.client_order_id == "s-paths:unanswered:1"

    # Every account its own order, once; every reservation settled.
    assert broker_orders(sqlite_db) == {"fills": 1, "rejects": 1, "unanswered": 1, "spare": 1}
    assert {r.status for r in reservations(sqlite_db)} == {"SETTLED"}

    # The audit reads each leg's order from the slice: values as planned, fills as booked.
    result = await audit.audit_histories(histories)
    assert result.replay_ok
    assert result.values.verdict is ValueVerdict.MATCH, result.values.differences
    by_account = {a.account_id: a for a in result.accounts}
    assert all(a.filled == a.filled_by_orders for a in result.accounts)
    assert [o.client_order_id for o in by_account["fills"].orders] == ["s-paths:fills:1"]
    assert any("(in a slice of 3)" in e.text and e.account_id == "rejects" for e in result.trail), [
        e.text for e in result.trail
    ]


async def test_the_legs_a_slice_ends_tell_their_keeper_in_one_signal(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    """Four legs filled whole by one slice end in one workflow task: their keeper hears of
    the four positions in one ``positions_filled`` signal, not four, and protects each for
    what it filled; the audit reads the fills from that signal."""
    ids = ["one", "two", "three", "four"]
    load(sqlite_db, book(*(account(i) for i in ids), returns=uncorrelated_returns(ids)))
    async with harness_factory(ts_client, sqlite_db, settings).running():
        handle = await submit_signal(ts_client, sqlite_db, settings, signal("s-told"))
        report = await handle.result()

        def protected() -> set[str]:
            stops = protective_orders(sqlite_db, "s-told")
            return {o.account_id for o in stops if o.purpose == "STOP"}

        await poll_until(lambda: protected() == set(ids) and protection_gaps(sqlite_db) == [])
        histories = await fetch_with_children(ts_client, handle.id)

    told = keeper_told(histories[0])
    assert [sorted(f.account_id for f in fills) for fills in told] == [sorted(ids)]
    assert all(fill.final for fill in told[0])
    filled = {line.account_id: line.filled for line in report.accounts}
    assert {f.account_id: f.entry_quantity for f in told[0]} == filled
    assert protection_violations(sqlite_db) == []
    result = await audit.audit_histories(histories)
    assert result.replay_ok
    assert result.positions is not None and result.positions.ok
    assert sum("filled" in e.text and "(final)" in e.text for e in result.trail) == len(ids)


class ClosingInOnTheSlice(ExecutionActivities):
    """Between planning and the slice's transaction: "full" reaches its open-positions cap and
    "paused" is paused by an operator."""

    @activity.defn
    def place_and_follow_slice(self, request: PlaceSliceRequest) -> SliceOutcome:
        with self._db.transaction() as session:
            session.execute(
                update(AccountStateRow)
                .where(AccountStateRow.account_id == "full")
                .values(open_positions=10)
            )
            repository.set_account_status(
                session, "paused", AccountStatus.PAUSED, "desk", datetime.now(UTC)
            )
        return super().place_and_follow_slice(request)


async def test_a_denial_or_refusal_in_a_slice_affects_only_its_own_leg(
    ts_client: Client, sqlite_db: Database, settings: Settings, executor
) -> None:
    """In the slice's one transaction, one leg's reservation is denied for capacity gone since
    planning (it is rerouted) and another's for a pause (it stops there); the third leg of the
    slice is placed and filled."""
    load(
        sqlite_db,
        book(
            account("fills"),
            account("full"),
            account("paused"),
            account("spare", reserve_only=True),
        ),
    )
    activities = ClosingInOnTheSlice(
        sqlite_db, PaperBroker(sqlite_db), service=settings.service_settings(), poll_interval_s=0.05
    )
    async with build_worker(ts_client, settings, activities, executor):
        handle = await submit_signal(ts_client, sqlite_db, settings, signal("s-denied"))
        report = await handle.result()
        history = await handle.fetch_history()
    lines = {line.account_id: line for line in report.accounts}

    assert scheduled(history)[SLICE] == 1
    assert lines["fills"].status is LegStatus.FILLED
    full = lines["full"]
    assert (full.status, full.denial) == (LegStatus.DENIED, DenialReason.MAX_POSITIONS)
    assert full.reroute is not None and lines["spare"].rerouted_from == "full"
    paused = lines["paused"]
    assert (paused.status, paused.denial) == (LegStatus.DENIED, DenialReason.PAUSED)
    assert paused.reroute is None
    # Neither of the two left for the broker; nothing stays reserved.
    assert broker_orders(sqlite_db) == {"fills": 1, "spare": 1}
    assert {r.status for r in reservations(sqlite_db)} == {"SETTLED"}


async def test_the_slice_window_gathers_legs_due_close_together(
    ts_client: Client, sqlite_db: Database, settings: Settings, harness_factory
) -> None:
    """Legs on timers 0.1–0.4 s apart: with a 1 s window the first leg due wakes the others
    (they were due within it) and all go out in one slice; with none, each goes out alone."""
    ids = ["one", "two", "three", "four"]
    load(sqlite_db, book(*(account(i) for i in ids), returns=uncorrelated_returns(ids)))
    staggered = {"delay_min_s": Decimal("0.1"), "delay_max_s": Decimal("0.4")}
    windowed = settings.model_copy(update={**staggered, "slice_window_ms": 1000})
    apart = settings.model_copy(update=staggered)
    async with harness_factory(ts_client, sqlite_db, windowed).running():
        together = await submit_signal(ts_client, sqlite_db, windowed, signal("s-window"))
        gathered = await together.result()
        gathered_history = await together.fetch_history()
    async with harness_factory(ts_client, sqlite_db, apart).running():
        alone = await submit_signal(ts_client, sqlite_db, apart, signal("s-apart"))
        separate = await alone.result()
        separate_history = await alone.fetch_history()

    assert {line.status for line in gathered.accounts} == {LegStatus.FILLED}
    assert {line.status for line in separate.accounts} == {LegStatus.FILLED}
    # Every leg kept its own planned delay and its own timer.
    assert len({line.delay_ms for line in gathered.accounts}) == len(ids)
    activities = scheduled(gathered_history)
    assert (activities[SLICE], activities[ORDER]) == (1, 0)
    activities = scheduled(separate_history)
    assert activities[SLICE] + activities[ORDER] > 1


class FollowsLong(ExecutionActivities):
    """A slice that follows its orders for a minute rather than 2 s (unless cancelled), so an
    operator's cancel is sure to find it in flight."""

    @activity.defn
    def place_and_follow_slice(self, request: PlaceSliceRequest) -> SliceOutcome:
        return super().place_and_follow_slice(request.model_copy(update={"follow_ms": 60_000}))


async def test_an_operator_cancel_reaches_a_slice_in_flight(
    time_skipping_env: WorkflowEnvironment,
    ts_client: Client,
    sqlite_db: Database,
    settings: Settings,
    executor,
) -> None:
    """Three legs' orders rest at the broker while their slice follows them: a cancel from the
    desk cancels the slice's activity, which cancels every order it placed; each leg ends
    CANCELLED with its reservation given back, and nothing stays working at the broker."""
    stalls = {"stall_after": 0}
    load(sqlite_db, book(*(account(a, paper=stalls) for a in ("a1", "a2", "a3"))))
    activities = FollowsLong(
        sqlite_db, PaperBroker(sqlite_db), service=settings.service_settings(), poll_interval_s=0.05
    )
    async with build_worker(ts_client, settings, activities, executor):
        handle = await submit_signal(ts_client, sqlite_db, settings, signal("s-cancel-slice"))
        with time_skipping_env.auto_time_skipping_disabled():
            await poll_until(lambda: len(paper_orders(sqlite_db)) == 3, timeout_s=30)
            answer = await handle.execute_update(
                SignalExecutionWorkflow.cancel_signal,
                CancelSignalRequest(operator="desk", reason="wrong symbol"),
            )
            report = await handle.result()
        history = await handle.fetch_history()

    events = Counter(e.event_type for e in history.events)
    assert scheduled(history)[SLICE] == 1
    assert events[EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED] == 1
    assert events[EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED] == 1  # the slice, in flight

    assert report.status == "CANCELLED"
    assert {line.status for line in report.accounts} == {LegStatus.CANCELLED}
    assert answer.orders_cancelled == 3
    assert {cid: o.status for cid, o in paper_orders(sqlite_db).items()} == {
        f"s-cancel-slice:{a}:1": "CANCELLED" for a in ("a1", "a2", "a3")
    }
    assert {r.status for r in reservations(sqlite_db)} == {"SETTLED"}

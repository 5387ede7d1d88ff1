"""The account sync's schedules, one per broker, and the sync on demand.

Each broker with accounts in the book gets a Temporal Schedule, ``account-sync-{broker}``,
that starts ``AccountSyncWorkflow`` every ``TEO_ACCOUNT_SYNC_EVERY_S`` (a run still going when
the next is due makes it skip: overlap SKIP), and once more when a worker starts. The workflow
runs on the worker's task queue; its reading activity on the broker's
(``TEO_BROKER_TASK_QUEUES``), where the broker's session is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowHandle,
)
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import AccountRow, MismatchRow, OrderMismatchRow, PositionRow
from orchestrator.config import Settings
from orchestrator.domain.contracts.positions import ClosedAtBroker, PositionsResult
from orchestrator.domain.contracts.sync import AccountSyncInput, SyncResult
from orchestrator.domain.errors import ValidationFailed
from orchestrator.domain.positions import PositionStatus
from orchestrator.services.actions import is_running
from orchestrator.services.operators import require_operator_and_reason
from workflows.positions import PositionsWorkflow
from workflows.sync import AccountSyncWorkflow

CATCHUP_WINDOW = timedelta(minutes=1)
"""How far back a schedule catches up runs it missed while the server was down."""


def schedule_id(broker: str) -> str:
    return f"account-sync-{broker}"


def brokers(db: Database) -> list[str]:
    """The brokers of the book's accounts."""
    with db.transaction() as session:
        return sorted(set(session.scalars(select(AccountRow.broker).distinct())))


def sync_input(settings: Settings, broker: str) -> AccountSyncInput:
    return AccountSyncInput(
        broker=broker, activity_task_queue=settings.execution_settings().broker_queue(broker)
    )


async def ensure_schedule(
    client: Client, settings: Settings, broker: str, *, every: timedelta
) -> str:
    """Create the broker's sync schedule, or update it to these settings. What was done."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            AccountSyncWorkflow.run,
            sync_input(settings, broker),
            id=schedule_id(broker),
            task_queue=settings.task_queue,
            execution_timeout=timedelta(minutes=15),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        # A sync slower than the interval never piles up: a run due while one still runs is
        # skipped (SKIP), and after downtime (worker, server) at most what a minute missed is
        # caught up, under the same rule: one run, not a burst.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=CATCHUP_WINDOW),
    )
    try:
        await client.create_schedule(schedule_id(broker), schedule)
        return "created"
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id(broker)).update(replace)
        return "updated"


async def ensure_schedules(client: Client, db: Database, settings: Settings) -> dict[str, str]:
    """Every broker's sync schedule (none when ``TEO_ACCOUNT_SYNC_EVERY_S`` is 0): broker →
    what was done."""
    if settings.account_sync_every_s <= 0:
        return {}
    every = timedelta(seconds=settings.account_sync_every_s)
    return {
        broker: await ensure_schedule(client, settings, broker, every=every)
        for broker in brokers(db)
    }


async def start_account_sync(client: Client, db: Database, settings: Settings) -> dict[str, str]:
    """At worker start: every broker's schedule created or updated, and triggered once, so that
    reconciliation runs now rather than an interval later. A trigger obeys the schedule's
    overlap policy: a sync still running (started by another worker) is not doubled. Broker →
    what was done ("created, synced" …); nothing when ``TEO_ACCOUNT_SYNC_EVERY_S`` is 0."""
    done = await ensure_schedules(client, db, settings)
    for broker in done:
        await client.get_schedule_handle(schedule_id(broker)).trigger()
    return {broker: f"{what}, sync triggered" for broker, what in done.items()}


async def sync_now(client: Client, settings: Settings, broker: str) -> SyncResult:
    """Run one sync of the broker's accounts now and wait for it (``reconcile --sync``)."""
    return await client.execute_workflow(
        AccountSyncWorkflow.run,
        sync_input(settings, broker),
        id=f"{schedule_id(broker)}-now",
        task_queue=settings.task_queue,
        execution_timeout=timedelta(minutes=15),
    )


# --------------------------------------------------------------------------------------------
# Reconcile


def mismatches(db: Database, account_id: str | None = None) -> list[MismatchRow]:
    """The mismatches the last syncs found and nobody resolved yet, by account and symbol."""
    with db.transaction() as session:
        rows = repository.list_mismatches(session, account_id)
        session.expunge_all()
        return rows


def order_mismatches(db: Database, account_id: str | None = None) -> list[OrderMismatchRow]:
    """The order mismatches the last syncs found and nobody resolved yet, by account and
    client order id."""
    with db.transaction() as session:
        rows = repository.list_order_mismatches(session, account_id)
        session.expunge_all()
        return rows


@dataclass(frozen=True)
class Accepted:
    adopted: list[repository.Adopted]
    left: list[MismatchRow]
    """Mismatches that could not be adopted (the broker did not answer: unknown)."""
    released: bool
    """The account's reduce-only was lifted (reconciliation was what held it)."""
    adopted_orders: list[repository.AdoptedOrder] = field(default_factory=list)
    left_orders: list[OrderMismatchRow] = field(default_factory=list)
    """Order mismatches left standing (``repository.left_because`` says why)."""


def accept(
    db: Database,
    account_id: str,
    *,
    operator: str,
    reason: str,
    keepers: Collection[str] = (),
) -> Accepted:
    """Adopt the broker's view of the account's positions and working orders into the ledger
    (recorded as the operator's action); :class:`ValidationFailed` without an operator, a
    reason or a known account. What the broker no longer holds of a position whose keeper
    runs (its workflow id among ``keepers``) is left for that keeper to book
    (``Adopted.to_keepers``): :func:`accept_and_tell` tells them; the rest is booked here."""
    require_operator_and_reason(operator, reason, "reconcile")
    try:
        with db.transaction() as session:
            done = repository.accept_account(
                session,
                account_id,
                operator=operator,
                reason=reason,
                now=datetime.now(UTC),
                keepers=keepers,
            )
            session.flush()
            session.expunge_all()
    except LookupError as exc:
        raise ValidationFailed(
            "reconcile", [("account", f"unknown account {account_id!r}")]
        ) from exc
    return Accepted(
        adopted=done.adopted,
        left=done.left,
        released=done.released,
        adopted_orders=done.adopted_orders,
        left_orders=done.left_orders,
    )


def _keepers_of(db: Database, account_id: str) -> list[str]:
    """The keeper workflow ids of the account's positions the ledger has open."""
    with db.transaction() as session:
        return sorted(
            set(
                session.scalars(
                    select(PositionRow.keeper_workflow_id).where(
                        PositionRow.account_id == account_id,
                        PositionRow.status != PositionStatus.CLOSED.value,
                    )
                )
            )
        )


async def accept_and_tell(
    connect: Callable[[], Awaitable[Client]],
    db: Database,
    account_id: str,
    *,
    operator: str,
    reason: str,
) -> Accepted:
    """``reconcile --accept``: :func:`accept`, where a position the broker no longer holds (or
    holds less of) whose keeper still runs is not written here: its keeper is told (its
    ``closed_at_broker`` signal) and books the closing fill, cause ``CLOSED_AT_BROKER``,
    cancels or resizes the protective orders it still has working, and records the position
    (its one writer). A keeper that has ended meanwhile (it cannot be told) leaves the close
    to be booked here, as for a position no keeper runs. Temporal (``connect``) is reached
    only when the account has open positions in the ledger."""
    require_operator_and_reason(operator, reason, "reconcile")
    candidates = await asyncio.to_thread(_keepers_of, db, account_id)
    client = await connect() if candidates else None
    running = [k for k in candidates if client is not None and await is_running(client, k)]
    accepted = await asyncio.to_thread(
        accept, db, account_id, operator=operator, reason=reason, keepers=running
    )
    for adopted in accepted.adopted:
        for close in adopted.to_keepers:
            assert client is not None  # a keeper was found running
            news = ClosedAtBroker(
                execution_id=close.execution_id,
                account_id=close.account_id,
                quantity=close.quantity,
                price=None,  # the sync keeps no price of a close it did not see
                operator=operator,
                reason=reason,
            )
            handle: WorkflowHandle[PositionsWorkflow, PositionsResult] = (
                client.get_workflow_handle_for(PositionsWorkflow.run, close.keeper_workflow_id)
            )
            try:
                await handle.signal(PositionsWorkflow.closed_at_broker, news)
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                await asyncio.to_thread(_book_here, db, close, operator, reason)
    return accepted


def _book_here(db: Database, close: repository.AtBroker, operator: str, reason: str) -> None:
    """A close whose keeper ended before it could be told: booked in the ledger directly."""
    with db.transaction() as session:
        row = session.scalar(
            select(PositionRow)
            .where(
                PositionRow.signal_id == close.signal_id,
                PositionRow.account_id == close.account_id,
            )
            .with_for_update()
        )
        if row is not None:
            repository.close_at_broker(
                session,
                row,
                execution_id=close.execution_id,
                quantity=close.quantity,
                note=f"reconciled by {operator}: {reason}",
                now=datetime.now(UTC),
            )

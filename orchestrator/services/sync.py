"""The account sync's schedules, one per broker, and the sync on demand.

Each broker with accounts in the book gets a Temporal Schedule, ``account-sync-{broker}``,
that starts ``AccountSyncWorkflow`` every ``TEO_ACCOUNT_SYNC_EVERY_S`` (a run still going when
the next is due makes it skip: overlap SKIP), and once more when a worker starts. The workflow
runs on the worker's task queue; its reading activity on the broker's
(``TEO_BROKER_TASK_QUEUES``), where the broker's session is.
"""

from __future__ import annotations

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
)

from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import AccountRow, MismatchRow, OrderMismatchRow
from orchestrator.config import Settings
from orchestrator.domain.contracts.sync import AccountSyncInput, SyncResult
from orchestrator.domain.errors import ValidationFailed
from orchestrator.services.operators import require_operator_and_reason
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


def accept(db: Database, account_id: str, *, operator: str, reason: str) -> Accepted:
    """Adopt the broker's view of the account's positions and working orders into the ledger
    (recorded as the operator's action); :class:`ValidationFailed` without an operator, a
    reason or a known account."""
    require_operator_and_reason(operator, reason, "reconcile")
    try:
        with db.transaction() as session:
            done = repository.accept_account(
                session, account_id, operator=operator, reason=reason, now=datetime.now(UTC)
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

"""Worker: runs the signal workflows and their activities.

python worker.py          # connect to TEO_TEMPORAL_ADDRESS; the database must be migrated
                          # (`starter.py db upgrade`): a schema behind the code's exits 1
python worker.py --dev    # first start the embedded dev server if none answers (and, when a
                          # codec key is set, the local codec server its Web UI decodes with),
                          # and migrate the database
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from pydantic import ValidationError
from temporalio.client import Client
from temporalio.worker import Worker

from activities.actions import ActionActivities
from activities.archive import ArchiveActivities
from activities.control import ControlActivities
from activities.execution import ExecutionActivities
from activities.positions import PositionActivities
from activities.sync import AccountSyncActivities
from orchestrator.adapters.brokers.base import Broker
from orchestrator.adapters.brokers.fix import FixBroker, OrderLookup, OrderRef, load_fix_config
from orchestrator.adapters.brokers.paper import PaperBroker
from orchestrator.adapters.db.engine import Database, SchemaNotCurrent
from orchestrator.adapters.db.schema import OrderRow
from orchestrator.adapters.observability import logs, metrics
from orchestrator.adapters.temporal import connect, ensure_search_attributes
from orchestrator.config import Settings, get_settings
from orchestrator.domain.errors import ValidationFailed
from orchestrator.domain.values import Side
from orchestrator.interfaces.http import codec_server
from orchestrator.interfaces.process import run_and_exit
from orchestrator.services import archive
from orchestrator.services import sync as account_sync
from workflows.controls import OPERATOR_ACTIONS
from workflows.registry import WORKFLOWS

__all__ = ["WORKFLOWS", "build_activities", "build_worker", "worker_database"]


def build_activities(
    db: Database, settings: Settings, broker: Broker | None = None
) -> ExecutionActivities:
    return ExecutionActivities(
        db,
        broker or PaperBroker(db),
        service=settings.service_settings(),
        poll_interval_s=settings.order_poll_interval_s,
    )


def worker_database(settings: Settings, url: str | None = None) -> Database:
    """The worker's database: ``TEO_DATABASE_POOL_SIZE`` connections kept open, no pre-ping
    (a dropped connection fails one attempt, the activity retries on a fresh one)."""
    return Database(
        url or settings.database_url, pool_size=settings.database_pool_size, pre_ping=False
    )


def ledger_order_lookup(db: Database) -> OrderLookup:
    """What a FIX status or cancel request needs about an order this process has not seen
    (after a restart): side, symbol, quantity and what is already booked, from the ledger,
    which records every order before it is sent."""

    def lookup(client_order_id: str) -> OrderRef | None:
        with db.transaction() as session:
            row = session.get(OrderRow, client_order_id)
            if row is None:
                return None
            return OrderRef(
                client_order_id=row.client_order_id,
                account_id=row.account_id,
                symbol=row.broker_symbol,
                side=Side(row.side),
                quantity=row.quantity,
                booked_quantity=row.filled_quantity,
                booked_price=row.average_price,
            )

    return lookup


def build_fix_broker(db: Database, settings: Settings) -> FixBroker | None:
    """The FIX session named by ``TEO_FIX_CONFIG``, not yet started; ``None`` without one.
    A configuration that cannot be read or is invalid raises :class:`ValidationFailed` naming
    the file."""
    if settings.fix_config is None:
        return None
    try:
        config = load_fix_config(settings.fix_config)
    except ValidationError as exc:
        problems = [(".".join(map(str, e["loc"])), e["msg"]) for e in exc.errors()]
        raise ValidationFailed(str(settings.fix_config), problems) from exc
    return FixBroker(config, order_lookup=ledger_order_lookup(db))


def build_worker(
    client: Client,
    settings: Settings,
    activities: ExecutionActivities,
    executor: ThreadPoolExecutor,
    *,
    task_queue: str | None = None,
    shutdown_grace: timedelta = timedelta(0),
) -> Worker:
    """The worker with every workflow and activity; ``shutdown_grace``: how long its shutdown
    lets activities in flight finish before cancelling them (the worker's process passes
    ``worker_shutdown_grace_s``; in-process test workers keep 0)."""
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=WORKFLOWS,
        activities=[
            *activities.all(),
            *PositionActivities(
                activities.db,
                activities.broker,
                poll_interval_s=settings.order_poll_interval_s,
                pace=activities.pace,
            ).all(),
            *ControlActivities(activities.db, client).all(),
            *ActionActivities(activities.db, client).all(),
            *ArchiveActivities(client, settings.archive_dir).all(),
            *AccountSyncActivities(activities.db, activities.broker, client, settings).all(),
        ],
        activity_executor=executor,
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
        nonsticky_to_sticky_poll_ratio=settings.nonsticky_poll_ratio,
        max_cached_workflows=2000,
        interceptors=[metrics.Observability(operator_actions=OPERATOR_ACTIONS)],
        graceful_shutdown_timeout=shutdown_grace,
    )


def tune_garbage_collector(settings: Settings) -> None:
    """The collector set for the worker's workload (``TEO_GC_YOUNG_THRESHOLD``): what exists
    now (modules, their constants) frozen out of every later collection, and the youngest
    generation collected every ``gc_young_threshold`` allocations; nothing with 0. Called once,
    at the start of the worker's process (and of a benchmark's, which measures the worker)."""
    if settings.gc_young_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(settings.gc_young_threshold, middle, oldest)


async def run_worker(settings: Settings, *, dev: bool) -> None:
    """Serve the task queue until SIGINT or SIGTERM; then finish in-flight tasks, stop the FIX
    session and dispose of the database before returning. The FIX configuration is read
    first: a bad one stops the worker before it connects to anything. Then the database: with
    ``dev`` the worker migrates it (a development setup); otherwise a schema behind the code's
    stops it (:class:`SchemaNotCurrent`) before it connects to Temporal: deployments migrate
    first, with ``starter.py db upgrade``."""
    tune_garbage_collector(settings)
    db = worker_database(settings)
    fix_broker: FixBroker | None = None
    try:
        fix_broker = build_fix_broker(db, settings)
        if dev:
            # The local codec server (when a codec key is configured) and the dev server, its
            # Web UI preset to decode through it. Both keep running after the worker.
            stack = await codec_server.ensure_dev_stack(settings)
            for note in stack.notes:
                (logging.warning if note.startswith("note:") else logging.info)(note)
            db.migrate()
        else:
            db.require_current()
        metrics.serve(settings)
        client = await connect(
            settings,
            runtime=metrics.temporal_runtime(settings),
            on_plaintext=metrics.plaintext_seen,
        )
        await ensure_search_attributes(client, settings.temporal_namespace)
        if settings.archive_every_s > 0:
            done = await archive.ensure_schedule(
                client,
                namespace=settings.temporal_namespace,
                task_queue=settings.task_queue,
                every=timedelta(seconds=settings.archive_every_s),
                closed_for=timedelta(seconds=settings.archive_closed_for_s),
            )
            logging.info("archive schedule %s: every %s s", done, settings.archive_every_s)
        # Reconciliation runs at worker start too: each schedule is triggered once.
        for broker, done in (await account_sync.start_account_sync(client, db, settings)).items():
            logging.info(
                "account sync schedule of %s %s: every %s s",
                broker,
                done,
                settings.account_sync_every_s,
            )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        task_queue = settings.task_queue
        if fix_broker is not None:
            # Session affinity: this process holds the FIX session, and serves the task queue
            # the connection names, where the order activities of its accounts are routed.
            task_queue = fix_broker.config.task_queue or task_queue
            fix_broker.start()
            logging.info("FIX session %s starting", fix_broker.config.name)
        with ThreadPoolExecutor(max_workers=settings.max_concurrent_activities) as executor:
            activities = build_activities(db, settings, fix_broker)
            worker = build_worker(
                client,
                settings,
                activities,
                executor,
                task_queue=task_queue,
                shutdown_grace=timedelta(seconds=settings.worker_shutdown_grace_s),
            )
            logging.info(
                "worker polling %s on %s (namespace %s)",
                task_queue,
                settings.temporal_address,
                settings.temporal_namespace,
            )
            async with worker:
                await stop.wait()
                logging.info(
                    "shutting down: activities in flight have %s s to finish",
                    settings.worker_shutdown_grace_s,
                )
    finally:
        if fix_broker is not None:
            fix_broker.stop()  # QuickFIX initiators must be stopped before the process exits
        db.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the worker; the exit code: 0 once stopped by SIGINT/SIGTERM, 2 for invalid
    configuration (the message names the setting or the file), 1 without ``--dev`` when the
    database's schema is behind the code's (the message names both revisions and the command
    that migrates): the configuration is valid, the database is not ready, as the starter's
    commands refuse it with 1 too."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--dev", action="store_true", help="start the embedded dev server if needed"
    )
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except ValueError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 2
    logs.configure(level=settings.log_level, fmt=settings.log_format)
    try:
        asyncio.run(run_worker(settings, dev=args.dev))
    except ValidationFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SchemaNotCurrent as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # The worker has stopped cleanly (in-flight tasks finished, FIX session stopped, database
    # disposed); leave without interpreter teardown, which the Temporal client's threads can
    # abort (orchestrator/interfaces/process.py).
    run_and_exit(main)

"""Worker: runs the signal workflows and their activities.

python worker.py          # connect to TEO_TEMPORAL_ADDRESS
python worker.py --dev    # first start the embedded dev server if none answers
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.archive import ArchiveActivities
from activities.execution import ExecutionActivities
from orchestrator import archive, logs, metrics
from orchestrator.brokers.base import Broker
from orchestrator.brokers.paper import PaperBroker
from orchestrator.db.engine import Database
from orchestrator.settings import Settings, get_settings
from orchestrator.temporal import connect, ensure_dev_server, ensure_search_attributes
from workflows.registry import WORKFLOWS

__all__ = ["WORKFLOWS", "build_activities", "build_worker"]


def build_activities(
    db: Database, settings: Settings, broker: Broker | None = None
) -> ExecutionActivities:
    return ExecutionActivities(
        db, broker or PaperBroker(db), poll_interval_s=settings.order_poll_interval_s
    )


def build_worker(
    client: Client,
    settings: Settings,
    activities: ExecutionActivities,
    executor: ThreadPoolExecutor,
    *,
    task_queue: str | None = None,
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=WORKFLOWS,
        activities=[*activities.all(), *ArchiveActivities(client, settings.archive_dir).all()],
        activity_executor=executor,
        max_concurrent_activities=settings.max_concurrent_activities,
        max_cached_workflows=2000,
        interceptors=[metrics.Observability()],
    )


async def run_worker(settings: Settings, *, dev: bool) -> None:
    if dev:
        server = await ensure_dev_server(settings)
        logging.info(
            "dev server %s (pid %s)", "started" if server.started_here else "found", server.pid
        )
    db = Database(settings.database_url)
    db.migrate()
    metrics.serve(settings)
    client = await connect(settings, runtime=metrics.temporal_runtime(settings))
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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with ThreadPoolExecutor(max_workers=settings.max_concurrent_activities) as executor:
        worker = build_worker(client, settings, build_activities(db, settings), executor)
        logging.info(
            "worker polling %s on %s (namespace %s)",
            settings.task_queue,
            settings.temporal_address,
            settings.temporal_namespace,
        )
        async with worker:
            await stop.wait()
            logging.info("shutting down: finishing in-flight tasks")
    db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--dev", action="store_true", help="start the embedded dev server if needed"
    )
    args = parser.parse_args()
    settings = get_settings()
    logs.configure(level=settings.log_level, fmt=settings.log_format)
    asyncio.run(run_worker(settings, dev=args.dev))


if __name__ == "__main__":
    main()

"""The archive of signal histories: closed signals' workflow histories (with all their
children), exported to a directory before the server's retention deletes them, and verified
there by the audit (replay, plan values, fills) at archive time.

Layout: one directory per signal under ``TEO_ARCHIVE_DIR``, named after its workflow id, holding
the history files (``temporal workflow show --output json`` format), ``manifest.json`` with
their sha256 and the verification, and ``audit.json``, the audit document. A signal directory
appears whole or not at all (written aside, then renamed). ``starter.py audit ID --from DIR``
and ``starter.py replay DIR`` read it with no server.

A Temporal Schedule (``ensure_schedule``) runs ``ArchiveWorkflow`` every ``TEO_ARCHIVE_EVERY_S``;
it refuses an interval that would not run at least twice within the namespace's retention.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
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

from orchestrator.adapters.temporal import is_workflow_type
from orchestrator.domain import ids
from orchestrator.domain.contracts.payloads import ArchivedSignal, ArchiveRequest, ArchiveResult
from orchestrator.domain.errors import OrchestratorError
from orchestrator.services import audit, history
from workflows.archive import ArchiveWorkflow
from workflows.positions import PositionsWorkflow
from workflows.signal import SignalExecutionWorkflow

SCHEDULE_ID = "archive-signal-histories"
ARCHIVE_WORKFLOW_ID = "archive-signal-histories"


def signal_query(*, since: datetime | None = None, closed_before: datetime | None = None) -> str:
    """Visibility query for signal workflows (not their children)."""
    clauses = [is_workflow_type(SignalExecutionWorkflow)]
    if since is not None:
        clauses.append(f"StartTime >= '{since.astimezone(UTC).isoformat()}'")
    if closed_before is not None:
        clauses.append("ExecutionStatus != 'Running'")
        clauses.append(f"CloseTime <= '{closed_before.astimezone(UTC).isoformat()}'")
    return " AND ".join(clauses)


def archived_run(directory: Path, workflow_id: str) -> str | None:
    """The run id of ``workflow_id`` archived (and verified) in ``directory``, or None."""
    entries = history.read_manifest(directory) or {}
    entry = entries.get(history.file_name(workflow_id))
    if entry is None or not entry.get("verified"):
        return None
    run_id = entry.get("run_id")
    return str(run_id) if run_id else None


async def archive_signal(client: Client, archive_dir: Path, workflow_id: str) -> ArchivedSignal:
    """Export one signal with its children into ``archive_dir/<workflow id>/``, audit the files
    as written, and record the verdict in the manifest and ``audit.json``."""
    target = archive_dir / history.file_name(workflow_id).removesuffix(".json")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    exported, _ = await history.export_signals(client, [workflow_id], staging)
    root = exported[0].history
    # Verify what is on disk, read back through its manifest, not what is in memory.
    result: audit.Audit | None = None
    problems: list[str] = []
    try:
        result = await audit.audit_histories(
            history.load_checked([staging]), converter=client.data_converter
        )
    except audit.UnreadableHistory as err:
        # Encrypted with a key this worker lacks: the files are kept (they are the record),
        # marked unverified.
        problems.append(str(err))
    if result is not None:
        problems += [f"replay of {r.workflow_id}: {r.failure}" for r in result.replay if r.failure]
        if result.values.verdict is audit.ValueVerdict.DRIFT:
            problems.append(f"plan values drifted: {len(result.values.differences)} difference(s)")
        if not result.fills_agree:
            problems.append("fills in the histories disagree with the report")
        (staging / history.AUDIT_FILE).write_text(
            result.model_dump_json(indent=2) + "\n", encoding="utf-8"
        )
    verified = result is not None and result.replay_ok
    audit_ok = result is not None and result.ok
    now = datetime.now(UTC).isoformat(timespec="seconds")
    history.write_manifest(
        staging,
        {
            e.path.name: {
                **history.manifest_entry(e.history, e.path),
                "archived_at": now,
                "verified": verified,
                "audit": "OK" if audit_ok else "FAILED",
            }
            for e in exported
        },
    )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return ArchivedSignal(
        workflow_id=workflow_id,
        run_id=root.run_id or "",
        directory=str(target),
        histories=len(exported),
        verified=verified,
        audit_ok=audit_ok,
        failure="; ".join(problems) or None,
    )


async def archive_closed_signals(
    client: Client,
    archive_dir: Path,
    request: ArchiveRequest,
    *,
    progress: Callable[[int], None] | None = None,
) -> ArchiveResult:
    """Archive every signal closed at least ``request.closed_for_s`` ago and not yet archived
    (same run, verified)."""
    archive_dir.mkdir(parents=True, exist_ok=True)
    closed_before = datetime.now(UTC) - timedelta(seconds=request.closed_for_s)
    archived: list[ArchivedSignal] = []
    skipped = waiting = 0
    async for execution in client.list_workflows(
        signal_query(closed_before=closed_before), limit=request.max_signals
    ):
        directory = archive_dir / history.file_name(execution.id).removesuffix(".json")
        if archived_run(directory, execution.id) == execution.run_id:
            skipped += 1
            continue
        if await keepers_running(client, execution.id):
            waiting += 1
            continue
        archived.append(await archive_signal(client, archive_dir, execution.id))
        if progress is not None:
            progress(len(archived))
    return ArchiveResult(
        directory=str(archive_dir),
        archived=archived,
        already_archived=skipped,
        positions_open=waiting,
    )


async def keepers_running(client: Client, workflow_id: str) -> bool:
    """Whether a keeper of the signal's positions still runs: its story is not over."""
    signal_id = ids.signal_id_of(workflow_id)
    query = (
        f"{is_workflow_type(PositionsWorkflow)} AND SignalId = '{signal_id}' "
        "AND ExecutionStatus = 'Running'"
    )
    async for _ in client.list_workflows(query, limit=1):
        return True
    return False


async def ensure_schedule(
    client: Client,
    *,
    namespace: str,
    task_queue: str,
    every: timedelta,
    closed_for: timedelta,
) -> str:
    """Create the archive schedule, or update it to these settings. Returns what was done."""
    retention = await namespace_retention(client, namespace)
    if retention is not None and every * 2 > retention:
        raise OrchestratorError(
            f"archive interval {every} does not fit twice in the namespace's retention "
            f"{retention}: histories could be deleted before they are archived"
        )
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            ArchiveWorkflow.run,
            ArchiveRequest(closed_for_s=int(closed_for.total_seconds())),
            id=ARCHIVE_WORKFLOW_ID,
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(SCHEDULE_ID, schedule)
        return "created"
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(SCHEDULE_ID).update(replace)
        return "updated"


async def namespace_retention(client: Client, namespace: str) -> timedelta | None:
    response = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=namespace)
    )
    ttl = response.config.workflow_execution_retention_ttl
    return ttl.ToTimedelta() if ttl.seconds or ttl.nanos else None

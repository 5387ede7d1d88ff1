"""Workflow histories as files: export a signal's run with all its children, replay exported
histories against the current code, and checksum them in a manifest.

The files are the JSON that ``temporal workflow show --workflow-id X --output json`` writes
(the protobuf JSON of ``temporal.api.history.v1.History``): the CLI reads ours
(``temporal workflow fix-history-json``) and ``WorkflowHistory.from_json`` reads the CLI's.

Replay proves that the current workflow code issues the same *sequence of commands* as the
recorded run (timers, activities, children, in order). It does not compare values: a changed
order quantity replays clean. Value-level verification is the audit's
(``orchestrator.services.audit``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf.json_format import ParseError
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer

from orchestrator.adapters.codec import ENCODING
from orchestrator.domain.errors import OrchestratorError
from workflows.registry import WORKFLOWS

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
AUDIT_FILE = "audit.json"
"""The audit document an archive keeps beside the histories (``orchestrator.services.archive``)."""
NOT_HISTORIES = frozenset({MANIFEST, AUDIT_FILE})

CLOSED_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
}


class WorkflowNotFound(OrchestratorError):
    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"no workflow {workflow_id!r} on the server (or past its retention)")


# --------------------------------------------------------------------------------------------
# Fetching


def child_executions(history: WorkflowHistory) -> list[tuple[str, str]]:
    """(workflow id, run id) of every child this run started, in history order."""
    return [
        (
            event.child_workflow_execution_started_event_attributes.workflow_execution.workflow_id,
            event.child_workflow_execution_started_event_attributes.workflow_execution.run_id,
        )
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED
    ]


async def fetch_with_children(
    client: Client, workflow_id: str, run_id: str | None = None
) -> list[WorkflowHistory]:
    """The run's history, then its children's (and theirs: batch → completion), depth first;
    a run that continued as new is followed by its next runs (a position keeper's weeks).

    Children are found in the parent's own history (ChildWorkflowExecutionStarted events) and
    fetched by the exact run id recorded there.
    """
    try:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise WorkflowNotFound(workflow_id) from err
        raise
    histories = [history]
    for child_id, child_run in child_executions(history):
        histories += await fetch_with_children(client, child_id, child_run)
    next_run = continued_as(history)
    if next_run is not None:
        histories += await fetch_with_children(client, workflow_id, next_run)
    return histories


def continued_as(history: WorkflowHistory) -> str | None:
    """The run id a run that continued as new continued as; ``None`` for any other."""
    last = history.events[-1] if history.events else None
    if last is None or last.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
        return None
    return last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id


# --------------------------------------------------------------------------------------------
# Files and the manifest


def file_name(workflow_id: str, run: int = 1) -> str:
    """``signal-s-42/leg-1/completion`` → ``signal-s-42__leg-1__completion.json``; the n-th
    run of a workflow that continued as new, ``….run-{n}.json`` (the id is in the file)."""
    stem = workflow_id.replace("/", "__")
    return f"{stem}.json" if run == 1 else f"{stem}.run-{run}.json"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_closed(history: WorkflowHistory) -> bool:
    return bool(history.events) and history.events[-1].event_type in CLOSED_EVENTS


def workflow_type(history: WorkflowHistory) -> str:
    if not history.events:
        return ""
    return history.events[0].workflow_execution_started_event_attributes.workflow_type.name


def write_history(history: WorkflowHistory, directory: Path, run: int = 1) -> Path:
    """Write one history as ``temporal workflow show --output json`` does."""
    path = directory / file_name(history.workflow_id, run)
    path.write_text(history.to_json() + "\n", encoding="utf-8")
    return path


def manifest_entry(history: WorkflowHistory, path: Path) -> dict[str, Any]:
    return {
        "workflow_id": history.workflow_id,
        "run_id": history.run_id,
        "workflow_type": workflow_type(history),
        "events": len(history.events),
        "closed": is_closed(history),
        "sha256": sha256_of(path),
    }


def write_manifest(directory: Path, entries: dict[str, dict[str, Any]]) -> Path:
    """Add ``entries`` (file name → entry) to the directory's manifest, keeping the entries of
    files written by earlier exports that are still there."""
    path = directory / MANIFEST
    files = read_manifest(directory) or {}
    files = {name: entry for name, entry in files.items() if (directory / name).exists()}
    files.update(entries)
    document = {
        "format": MANIFEST_FORMAT,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": dict(sorted(files.items())),
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def read_manifest(directory: Path) -> dict[str, dict[str, Any]] | None:
    """File name → entry, or None when the directory has no manifest."""
    path = directory / MANIFEST
    if not path.exists():
        return None
    document = json.loads(path.read_text(encoding="utf-8"))
    files: dict[str, dict[str, Any]] = document["files"]
    return files


@dataclass(frozen=True)
class Exported:
    path: Path
    history: WorkflowHistory
    sha256: str


async def export_signals(
    client: Client, workflow_ids: Iterable[str], directory: Path
) -> tuple[list[Exported], Path]:
    """Fetch each workflow with all its children, write one file per workflow id and the
    manifest. Returns what was written and the manifest's path."""
    directory.mkdir(parents=True, exist_ok=True)
    exported: list[Exported] = []
    seen: set[tuple[str, str | None]] = set()
    runs: dict[str, int] = {}
    for workflow_id in workflow_ids:
        for history in await fetch_with_children(client, workflow_id):
            if (history.workflow_id, history.run_id) in seen:
                continue
            seen.add((history.workflow_id, history.run_id))
            run = runs[history.workflow_id] = runs.get(history.workflow_id, 0) + 1
            name = file_name(history.workflow_id, run)
            clash = next((e for e in exported if e.path.name == name), None)
            if clash is not None:  # '/' → '__' made two ids one name
                raise OrchestratorError(
                    f"{history.workflow_id!r} and {clash.history.workflow_id!r} would both be "
                    f"written to {clash.path.name}: export them to different directories"
                )
            path = write_history(history, directory, run)
            exported.append(Exported(path=path, history=history, sha256=sha256_of(path)))
    manifest = write_manifest(
        directory, {e.path.name: manifest_entry(e.history, e.path) for e in exported}
    )
    return exported, manifest


def load_history(path: Path, workflow_id: str | None = None) -> WorkflowHistory:
    """Read an exported (or ``temporal workflow show --output json``) history file.

    The workflow id comes from the history's start event (the server records it there), else
    ``workflow_id``, else the file name.
    """
    history = WorkflowHistory.from_json(
        workflow_id or path.stem.replace("__", "/"), path.read_text(encoding="utf-8")
    )
    if not history.events:
        raise ValueError("no events")
    recorded = history.events[0].workflow_execution_started_event_attributes.workflow_id
    if recorded and recorded != history.workflow_id:
        history = WorkflowHistory(recorded, history.events)
    return history


def load_checked(paths: Iterable[Path]) -> list[WorkflowHistory]:
    """The histories in ``paths`` (a directory: its ``*.json``), each checked against its
    directory's manifest; refuses all of them if any file fails its check or cannot be read."""
    loaded: list[WorkflowHistory] = []
    problems: list[str] = []
    for path in history_files(paths):
        problem = "no such file" if not path.exists() else check_manifest(path)
        if problem is None:
            try:
                loaded.append(load_history(path))
            except (OSError, ValueError, ParseError) as err:
                problem = f"cannot read history: {err}"
        if problem is not None:
            problems.append(f"{path}: {problem}")
    if problems:
        raise OrchestratorError("; ".join(problems))
    return loaded


# --------------------------------------------------------------------------------------------
# Replay


@dataclass(frozen=True)
class ReplayOutcome:
    """How one history (or one file) fared; ``failure`` is None when it replayed clean."""

    name: str
    workflow_id: str | None
    failure: str | None

    @property
    def ok(self) -> bool:
        return self.failure is None


_CORE_MESSAGE = re.compile(r'message: "(.*?)", source:')


def describe_error(error: BaseException) -> str:
    """The error's type and message; for a failure from the SDK core, just its message
    (``[TMPRL1100] Nondeterminism error: …``), not the whole debug dump; then its causes
    (``Failed decoding arguments`` says little without ``Unknown payload encoding …``)."""
    text = str(error)
    core = _CORE_MESSAGE.search(text)
    described = f"{type(error).__name__}: {core.group(1) if core else text}"
    if error.__cause__ is not None:
        described += f" (caused by {describe_error(error.__cause__)})"
    if ENCODING.decode() in text:
        described += ": the history is encrypted; configure its key (TEO_CODEC_KEY_FILE)"
    return described


async def replay_histories(
    histories: Sequence[WorkflowHistory],
    *,
    workflows: Sequence[type] | None = None,
    converter: DataConverter | None = None,
) -> list[Exception | None]:
    """Replay each history against ``workflows`` (default: the worker's), in one replayer,
    with ``converter`` (default: plain pydantic; pass the project's to read encrypted ones).
    Returns, per history in order, the replay failure or None."""
    if not histories:
        return []
    replayer = Replayer(
        workflows=workflows or WORKFLOWS, data_converter=converter or pydantic_data_converter
    )

    async def feed() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    failures: dict[int, Exception | None] = {}
    async with replayer.workflow_replay_iterator(feed()) as results:
        async for result in results:
            failures[id(result.history)] = result.replay_failure
    return [failures[id(history)] for history in histories]


def history_files(paths: Iterable[Path]) -> list[Path]:
    """The history files among ``paths``; a directory stands for the ``*.json`` files under
    it. The manifest and the archive's audit document are never histories."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.json") if p.name not in NOT_HISTORIES)
        elif path.name not in NOT_HISTORIES:
            found.append(path)
    return found


def check_manifest(path: Path) -> str | None:
    """Why ``path`` fails its directory's manifest, or None (also when there is none)."""
    try:
        files = read_manifest(path.parent)
    except (OSError, ValueError, KeyError) as err:
        return f"unreadable {MANIFEST}: {describe_error(err)}"
    if files is None:
        return None
    entry = files.get(path.name)
    if entry is None:
        return f"not listed in {path.parent / MANIFEST}"
    actual = sha256_of(path)
    if actual != entry.get("sha256"):
        return f"checksum mismatch: {MANIFEST} says {entry.get('sha256')}, file is {actual}"
    return None


async def replay_files(
    paths: Iterable[Path],
    *,
    workflows: Sequence[type] | None = None,
    converter: DataConverter | None = None,
) -> list[ReplayOutcome]:
    """Check each file against its manifest (when one sits next to it), then replay it.

    A file that fails its checksum is not replayed: its content is not what was exported.
    """
    outcomes: dict[Path, ReplayOutcome] = {}
    loaded: list[tuple[Path, WorkflowHistory]] = []
    files = history_files(paths)
    for path in files:
        if not path.exists():
            outcomes[path] = ReplayOutcome(str(path), None, "no such file")
            continue
        mismatch = check_manifest(path)
        if mismatch is not None:
            outcomes[path] = ReplayOutcome(str(path), None, mismatch)
            continue
        try:
            loaded.append((path, load_history(path)))
        except (OSError, ValueError, ParseError) as err:
            outcomes[path] = ReplayOutcome(str(path), None, f"cannot read history: {err}")
    failures = await replay_histories(
        [h for _, h in loaded], workflows=workflows, converter=converter
    )
    for (path, history), failure in zip(loaded, failures, strict=True):
        outcomes[path] = ReplayOutcome(
            str(path), history.workflow_id, describe_error(failure) if failure else None
        )
    return [outcomes[path] for path in files]

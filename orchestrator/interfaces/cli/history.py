"""Workflow histories: export them, replay them against this code, audit a signal from them,
archive closed signals' histories."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from orchestrator.adapters.temporal import connect, data_converter
from orchestrator.config import Settings
from orchestrator.domain import ids
from orchestrator.domain.contracts.payloads import ArchiveRequest
from orchestrator.domain.errors import OrchestratorError


def parse_since(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not a date or ISO time: {text!r}") from err
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    """Each signal's workflow and all its children, one JSON file per workflow id (the format
    of `temporal workflow show --output json`), plus manifest.json with their sha256."""
    if not args.signal_ids and args.since is None:
        print("error: name signal ids, or --since DATE", file=sys.stderr)
        return 2
    from orchestrator.services import archive, history

    client = await connect(settings)
    directory = Path(args.output)
    workflow_ids = [ids.signal_workflow_id(s) for s in args.signal_ids]
    if args.since is not None:
        query = archive.signal_query(since=args.since)
        workflow_ids += [w.id async for w in client.list_workflows(query)]
        if not workflow_ids:
            print(f"no signal started since {args.since.isoformat()}")
            return 0
    exported, manifest = await history.export_signals(client, workflow_ids, directory)
    for item in exported:
        still = "" if history.is_closed(item.history) else "  (still running: partial history)"
        print(
            f"wrote {item.path}  {item.history.workflow_id}  "
            f"{len(item.history.events)} events  sha256 {item.sha256}{still}"
        )
    print(f"wrote {manifest}")
    return 0


async def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Replay exported histories against the current workflow code; no server needed."""
    from orchestrator.services import history

    outcomes = await history.replay_files(
        (Path(p) for p in args.files), converter=data_converter(settings)
    )
    if not outcomes:
        print("error: no history files given", file=sys.stderr)
        return 2
    for outcome in outcomes:
        if outcome.ok:
            print(f"OK      {outcome.name}  {outcome.workflow_id}")
        else:
            print(f"FAILED  {outcome.name}  {outcome.failure}")
    failed = sum(not o.ok for o in outcomes)
    print(
        f"{len(outcomes) - failed} of {len(outcomes)} replayed clean"
        " (replay checks the sequence of commands, not their values)"
    )
    return 1 if failed else 0


async def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    """A signal's decision trail from its histories (the server's, or exported files), replayed
    and re-derived; exit code 1 when replay fails, plan values drifted, or fills disagree."""
    from orchestrator.services import audit, history

    if args.source:
        wanted = ids.signal_workflow_id(args.signal_id)
        loaded = [
            h
            for h in history.load_checked([Path(args.source)])
            if h.workflow_id.split("/", 1)[0] == wanted
        ]
        if not loaded:
            raise OrchestratorError(f"no history of {wanted} under {args.source}")
    else:
        client = await connect(settings)
        loaded = await history.fetch_with_children(client, ids.signal_workflow_id(args.signal_id))
    result = await audit.audit_histories(loaded, converter=data_converter(settings))
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        print("\n".join(audit.render(result)))
    return 0 if result.ok else 1


async def cmd_archive(args: argparse.Namespace, settings: Settings) -> int:
    """Create or update the archive schedule, or archive closed signals now."""
    from orchestrator.services import archive

    client = await connect(settings)
    if args.action == "schedule":
        done = await archive.ensure_schedule(
            client,
            namespace=settings.temporal_namespace,
            task_queue=settings.task_queue,
            every=timedelta(seconds=args.every or settings.archive_every_s),
            closed_for=timedelta(seconds=settings.archive_closed_for_s),
        )
        print(
            f"archive schedule {archive.SCHEDULE_ID} {done}: every "
            f"{args.every or settings.archive_every_s} s into {settings.archive_dir} "
            f"(the worker on {settings.task_queue} runs it)"
        )
        return 0
    result = await archive.archive_closed_signals(
        client, settings.archive_dir, ArchiveRequest(closed_for_s=settings.archive_closed_for_s)
    )
    for item in result.archived:
        verdict = "verified" if item.audit_ok else f"FAILED VERIFICATION: {item.failure}"
        print(
            f"archived {item.workflow_id} ({item.histories} histories) → "
            f"{item.directory}: {verdict}"
        )
    print(
        f"{len(result.archived)} archived, {result.already_archived} already archived, "
        f"{result.positions_open} waiting for their positions to close, in {result.directory}"
    )
    return 0 if all(a.audit_ok for a in result.archived) else 1


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export_histories = commands.add_parser(
        "export", help="write signals' workflow histories (with children) and a manifest"
    )
    export_histories.add_argument("signal_ids", nargs="*", metavar="SIGNAL_ID")
    export_histories.add_argument(
        "--since",
        type=parse_since,
        metavar="DATE",
        help="also every signal started since DATE (2026-11-01 or an ISO time, UTC if no zone)",
    )
    export_histories.add_argument("-o", "--output", required=True, metavar="DIR")
    export_histories.set_defaults(run=cmd_export)

    replay = commands.add_parser(
        "replay", help="replay exported histories against the current code (no server)"
    )
    replay.add_argument(
        "files", nargs="+", metavar="FILE", help="history files (a directory: the *.json under it)"
    )
    replay.set_defaults(run=cmd_replay)

    audit_signal = commands.add_parser(
        "audit", help="a signal's decision trail, replayed and re-derived from its histories"
    )
    audit_signal.add_argument("signal_id")
    audit_signal.add_argument(
        "--from", dest="source", metavar="DIR", help="exported or archived history files"
    )
    audit_signal.add_argument("--json", action="store_true", help="the audit as a document")
    audit_signal.set_defaults(run=cmd_audit)

    archiving = commands.add_parser(
        "archive", help="archive closed signals' histories (verified) before retention ends"
    )
    archiving.set_defaults(run=cmd_archive)
    archive_actions = archiving.add_subparsers(dest="action", required=True)
    schedule = archive_actions.add_parser(
        "schedule", help="create or update the Temporal Schedule that archives"
    )
    schedule.add_argument("--every", type=int, metavar="SECONDS", help="TEO_ARCHIVE_EVERY_S")
    archive_actions.add_parser("now", help="archive what is closed now, in this process")

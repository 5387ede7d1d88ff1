"""The system around the orchestrator: the database schema, the embedded Temporal dev server,
payload encryption keys and the codec server."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from orchestrator.adapters import codec, files
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.temporal import data_converter, stop_dev_server
from orchestrator.config import Settings
from orchestrator.domain.errors import OrchestratorError, ValidationFailed
from orchestrator.interfaces.cli.common import out


async def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    """``db upgrade``: the one command that migrates (every other refuses a database whose
    schema is behind; "migrate first", docs/production.md)."""
    db = Database(settings.database_url)
    try:
        db.migrate()
    finally:
        db.dispose()
    out.print(f"database at the latest schema: {db.display_url}")
    return 0


async def cmd_server(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.interfaces.http import codec_server

    if args.action == "stop":
        out.print("dev server stopped" if stop_dev_server() else "no dev server started by us")
        if codec_server.stop_dev_codec():
            out.print("local codec server stopped")
        return 0
    for note in (await codec_server.ensure_dev_stack(settings)).notes:
        out.print(note, highlight=False)
    return 0


async def cmd_codec(args: argparse.Namespace, settings: Settings) -> int:
    """``new-key``: append a new key to a key file (mode 0600); it becomes the active key.
    ``serve``: the codec server for the Temporal Web UI."""
    if args.action == "serve":
        from orchestrator.interfaces.http import codec_server

        converter = data_converter(settings)
        if converter.payload_codec is None:  # pragma: no cover - the project's always has one
            raise OrchestratorError("the data converter has no payload codec")
        # Decodes large (compressed) payloads, and encrypted ones when a key is configured.
        # uvicorn runs its own event loop: leave this one first.
        await asyncio.to_thread(
            codec_server.serve,
            settings,
            converter.payload_codec,
            host=args.host or settings.codec_server_host,
            port=args.port or settings.codec_server_port,
        )
        return 0
    path = Path(args.key_file)
    ring = codec.parse_key_ring(files.read_text(path), source=str(path)) if path.exists() else {}
    if args.key_id in ring:
        raise ValidationFailed("flags", [("key_id", f"{args.key_id!r} is already in {path}")])
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as handle:
        handle.write(codec.new_key_line(args.key_id) + "\n")
    print(
        f"added key {args.key_id!r} to {path} ({len(ring) + 1} key(s)); it is the last, so the "
        f"active one unless TEO_CODEC_ACTIVE_KEY says otherwise. Point TEO_CODEC_KEY_FILE at it."
    )
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = commands.add_parser("db", help="database schema")
    db.set_defaults(run=cmd_db)
    db.add_subparsers(dest="action", required=True).add_parser("upgrade", help="migrate to head")

    server = commands.add_parser("server", help="the embedded Temporal dev server")
    server.set_defaults(run=cmd_server)
    server_actions = server.add_subparsers(dest="action", required=True)
    server_actions.add_parser("start")
    server_actions.add_parser("stop")

    codec_keys = commands.add_parser("codec", help="payload encryption keys")
    codec_keys.set_defaults(run=cmd_codec)
    codec_actions = codec_keys.add_subparsers(dest="action", required=True)
    new_key = codec_actions.add_parser("new-key", help="append a new random key to a key file")
    new_key.add_argument("key_id")
    new_key.add_argument("--key-file", required=True, metavar="FILE")
    serve = codec_actions.add_parser("serve", help="the codec server for the Temporal Web UI")
    serve.add_argument("--host", help="default TEO_CODEC_SERVER_HOST (127.0.0.1)")
    serve.add_argument("--port", type=int, help="default TEO_CODEC_SERVER_PORT (8091)")

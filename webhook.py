"""Webhook ingest service: ``POST /signals`` over HTTP (FastAPI under uvicorn).

python webhook.py    # binds TEO_WEBHOOK_HOST:TEO_WEBHOOK_PORT (127.0.0.1:8090); OpenAPI at /docs

Needs TEO_WEBHOOK_HMAC_SECRET or TEO_WEBHOOK_SHARED_SECRET, a reachable Temporal and the
migrated database (``starter.py db upgrade`` migrates it; the webhook never does). See
docs/webhook.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from orchestrator.adapters.db.engine import Database, SchemaNotCurrent
from orchestrator.config import get_settings
from orchestrator.interfaces.http.webhook import create_app, serve
from orchestrator.interfaces.process import run_and_exit


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM (uvicorn stops gracefully, the database is disposed).
    The exit code: 0 once stopped by SIGINT, 2 for invalid configuration, 1 when the database's
    schema is behind the code's (checked before serving; the message names both revisions and
    the command that migrates); SIGTERM ends the process by that signal once shut down
    (uvicorn raises it again)."""
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    ).parse_args(argv)
    try:
        settings = get_settings()
        app = create_app(settings)  # refuses to run without a secret
    except ValueError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 2
    db = Database(settings.database_url)
    try:
        db.require_current()
    except SchemaNotCurrent as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    serve(settings, app)
    return 0


if __name__ == "__main__":
    # uvicorn has shut down by then; leave without interpreter teardown, which the Temporal
    # client's threads can abort (orchestrator/interfaces/process.py).
    run_and_exit(main)

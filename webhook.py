"""Webhook ingest service: ``POST /signals`` over HTTP (FastAPI under uvicorn).

python webhook.py    # binds TEO_WEBHOOK_HOST:TEO_WEBHOOK_PORT (127.0.0.1:8090); OpenAPI at /docs

Needs TEO_WEBHOOK_HMAC_SECRET or TEO_WEBHOOK_SHARED_SECRET, a reachable Temporal and the
migrated database (the worker or ``starter.py db upgrade`` migrates it). See README, "Webhook".
"""

from __future__ import annotations

import argparse

from orchestrator.settings import get_settings
from orchestrator.webhook import serve


def main() -> None:
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    ).parse_args()
    serve(get_settings())


if __name__ == "__main__":
    main()

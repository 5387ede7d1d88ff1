"""The codec server: lets the Temporal Web UI (and ``temporal`` CLI) show decrypted payloads,
and encode what an operator sends from the UI, without giving the UI the keys.

Temporal's remote-codec protocol: ``POST /decode`` and ``POST /encode`` with a JSON body
``{"payloads": [{"metadata": {...}, "data": "<base64>"}]}`` (the protobuf JSON of
``temporal.api.common.v1.Payloads``), answered in the same shape.

Who may call it is ``TEO_CODEC_AUTH`` (:mod:`.auth`, and docs/web-ui.md); the app and its
serving are in :mod:`.app`. Run it with ``python starter.py codec serve``; ``worker.py --dev``
and the demo start a ``local`` one themselves when encryption is on (:mod:`.dev`).
"""

from orchestrator.interfaces.http.codec_server.app import create_app, serve, uvicorn_config
from orchestrator.interfaces.http.codec_server.dev import (
    DevCodec,
    DevStack,
    ensure_dev_codec,
    ensure_dev_stack,
    stop_dev_codec,
)

__all__ = [
    "DevCodec",
    "DevStack",
    "create_app",
    "ensure_dev_codec",
    "ensure_dev_stack",
    "serve",
    "stop_dev_codec",
    "uvicorn_config",
]

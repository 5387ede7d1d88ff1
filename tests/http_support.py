"""Test helpers for the webhook: the app under a real uvicorn on 127.0.0.1, request signing."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

HMAC_KEY = "test-hmac-key"
SHARED_SECRET = "test-shared-secret"


@contextmanager
def serve_in_thread(app: FastAPI, *, timeout_s: float = 30) -> Iterator[str]:
    """Run ``app`` under uvicorn on an ephemeral 127.0.0.1 port in a thread with its own event
    loop (so synchronous clients such as schemathesis can call it); yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    waited = 0.0
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the webhook server exited during start-up")
        if waited > timeout_s:
            raise TimeoutError(f"the webhook server did not start within {timeout_s} s")
        thread.join(0.05)  # bounded wait for the start-up flag, doubling as the poll interval
        waited += 0.05
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)
        sock.close()


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def signed(body: bytes, key: str = HMAC_KEY) -> dict[str, str]:
    digest = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return {"X-TEO-Signature": f"sha256={digest}", "Content-Type": "application/json"}


def tradingview_alert(**overrides: Any) -> dict[str, Any]:
    """An alert as TradingView sends it from the README's template, placeholders filled."""
    alert: dict[str, Any] = {
        "secret": SHARED_SECRET,
        "ticker": "EURUSD",
        "exchange": "FX",
        "interval": "15",
        "action": "buy",
        "close": "1.08500",
        "stop_offset": "0.00300",
        "time": "2026-11-24T06:45:00Z",
    }
    alert.update(overrides)
    return {k: v for k, v in alert.items() if v is not None}

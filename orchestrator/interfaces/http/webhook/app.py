"""The webhook's app: ``POST /signals`` rate limited, authenticated, submitted and answered.

Credentials: ``X-TEO-Signature`` (HMAC-SHA256 of the raw body), ``X-TEO-Token`` (the shared
secret), or, for a TradingView alert, the shared secret in its ``secret`` field. ``/signals``
answers :class:`SignalAccepted` (202 started, 200 already submitted) or :class:`ErrorBody` with
a machine-readable code, and logs one line per refusal; ``/metrics`` serves this process's
metrics.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr
from pydantic.json_schema import models_json_schema
from temporalio.client import Client

from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.observability import logs
from orchestrator.adapters.observability.metrics import WEBHOOK_REQUESTS
from orchestrator.adapters.temporal import connect
from orchestrator.config import Settings
from orchestrator.domain import ids
from orchestrator.domain.actions import TradeAction
from orchestrator.domain.signal import Signal
from orchestrator.interfaces.http.webhook.alerts import TradingViewAlert
from orchestrator.interfaces.http.webhook.answers import (
    ErrorBody,
    SignalAccepted,
    WebhookError,
    own_id,
    submit,
    to_signal,
)

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-TEO-Signature"
"""``sha256=<hex HMAC-SHA256 of the raw body>`` keyed with ``TEO_WEBHOOK_HMAC_SECRET``."""
TOKEN_HEADER = "X-TEO-Token"
"""The shared secret ``TEO_WEBHOOK_SHARED_SECRET`` itself."""


# --------------------------------------------------------------------------------------------
# Answers


class TokenBucket:
    """Per-source token buckets: ``burst`` requests at once, refilled at ``per_minute``.

    A dozen lines of our own rather than slowapi/limits: one process, one rule, an injectable
    clock for tests, and memory bounded by evicting the least recently seen sources.
    """

    def __init__(
        self,
        *,
        per_minute: int,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_sources: int = 10_000,
    ) -> None:
        self._rate = per_minute / 60
        self._burst = float(burst)
        self._clock = clock
        self._max_sources = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, source: str) -> float:
        """0 if ``source`` may proceed (a token is spent), else seconds until it may."""
        now = self._clock()
        tokens, last = self._buckets.pop(source, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens >= 1:
            self._buckets[source] = (tokens - 1, now)
            wait = 0.0
        else:
            self._buckets[source] = (tokens, now)
            wait = (1 - tokens) / self._rate
        while len(self._buckets) > self._max_sources:
            self._buckets.popitem(last=False)
        return wait


# --------------------------------------------------------------------------------------------
# The app


@dataclass
class _Backends:
    client: Client | None
    db: Database | None


def create_app(
    settings: Settings,
    *,
    client: Client | None = None,
    db: Database | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """The ASGI app. Without ``client``/``db`` it connects to Temporal and opens the database
    at start-up (and closes them at shutdown); tests pass their own."""
    if not (
        _configured(settings.webhook_hmac_secret) or _configured(settings.webhook_shared_secret)
    ):
        raise ValueError(
            "the webhook needs TEO_WEBHOOK_HMAC_SECRET or TEO_WEBHOOK_SHARED_SECRET: "
            "it refuses to accept unauthenticated signals"
        )
    backends = _Backends(client=client, db=db)
    limiter = TokenBucket(
        per_minute=settings.webhook_rate_per_minute,
        burst=settings.webhook_rate_burst,
        clock=clock,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        owned_db = backends.db is None
        if backends.client is None:
            backends.client = await connect(settings)
        if backends.db is None:
            backends.db = Database(settings.database_url)
        log.info(
            "webhook ready: Temporal %s, task queue %s",
            settings.temporal_address,
            settings.task_queue,
        )
        yield
        if owned_db:
            backends.db.dispose()

    app = FastAPI(
        title="Trade Execution Orchestrator — webhook",
        version="1",
        description=(
            "Submit trade signals over HTTP. Authenticate with `X-TEO-Signature: sha256=<hex>` "
            "(HMAC-SHA256 of the raw body), `X-TEO-Token: <shared secret>`, or, for "
            "TradingView alerts, the shared secret in the alert's `secret` field."
        ),
        lifespan=lifespan,
    )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """This process's metrics (webhook requests by outcome) for Prometheus."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(WebhookError)
    async def _webhook_error(_: Request, exc: WebhookError) -> JSONResponse:
        WEBHOOK_REQUESTS.labels(exc.body.error).inc()
        return JSONResponse(exc.body.model_dump(), status_code=exc.status, headers=exc.headers)

    @app.post(
        "/signals",
        status_code=202,
        response_model=SignalAccepted,
        responses={
            200: {"model": SignalAccepted, "description": "Already submitted: nothing started"},
            400: {"model": ErrorBody, "description": "Malformed JSON"},
            401: {"model": ErrorBody, "description": "Missing or wrong credentials"},
            409: {"model": ErrorBody, "description": "Halted, or id used for another signal"},
            413: {"model": ErrorBody, "description": "Body larger than the limit"},
            422: {"model": ErrorBody, "description": "Invalid signal; each problem names a field"},
            429: {"model": ErrorBody, "description": "Too many requests from this source"},
            503: {"model": ErrorBody, "description": "Temporal unreachable; nothing started"},
        },
        openapi_extra={"requestBody": _request_body_schema_ref()},
        summary="Submit a signal (project JSON or TradingView alert)",
    )
    async def post_signal(request: Request) -> JSONResponse:
        source = request.client.host if request.client else "unknown"
        signal: Signal | TradeAction | None = None
        try:
            wait = limiter.take(source)
            if wait:
                seconds = max(1, math.ceil(wait))
                raise WebhookError(
                    429,
                    "rate_limited",
                    f"too many requests from {source}; retry in {seconds} s",
                    headers={"Retry-After": str(seconds)},
                )
            body = await _read_limited(request, settings.webhook_max_body_bytes)
            header_auth = _check_headers(settings, request, body)
            payload = _parse_json(body, authenticated=header_auth)
            is_alert = isinstance(payload, dict) and "ticker" in payload
            if not header_auth:
                secret = payload.get("secret") if is_alert else None
                if not (isinstance(secret, str) and _same(secret, settings.webhook_shared_secret)):
                    raise WebhookError(401, "unauthorized", _missing_credentials())
            signal = to_signal(payload, is_alert=is_alert)
            assert backends.client is not None and backends.db is not None
            with logs.bound(
                signal_id=own_id(signal), workflow_id=ids.signal_workflow_id(own_id(signal))
            ):
                return await submit(settings, backends.client, backends.db, signal, alert=is_alert)
        except WebhookError as exc:
            # One line per refusal, with the signal's ids once it is known. (uvicorn's access
            # log is off: it would add a line per request without them.)
            signal_id = own_id(signal) if signal is not None else None
            with logs.bound(
                signal_id=signal_id,
                workflow_id=ids.signal_workflow_id(signal_id) if signal_id else None,
            ):
                log.info(
                    "refused %s from %s: %s %s", exc.body.error, source, exc.status, exc.body.detail
                )
            raise

    original_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original_openapi()
            _, defs = models_json_schema(
                [(Signal, "validation"), (TradingViewAlert, "validation")],
                ref_template="#/components/schemas/{model}",
            )
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).update(defs["$defs"])
            # Documented for /docs ("Authorize" sends the token). The empty requirement is the
            # TradingView case: the secret travels in the body, which OpenAPI cannot describe.
            components["securitySchemes"] = {
                "token": {"type": "apiKey", "in": "header", "name": TOKEN_HEADER},
                "signature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": SIGNATURE_HEADER,
                    "description": "sha256=<hex HMAC-SHA256 of the raw body>",
                },
            }
            schema["paths"]["/signals"]["post"]["security"] = [
                {"token": []},
                {"signature": []},
                {},
            ]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _request_body_schema_ref() -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/Signal"},
                        {"$ref": "#/components/schemas/TradingViewAlert"},
                    ]
                }
            }
        },
    }


async def _read_limited(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` — from the
    Content-Length header before reading anything, or while streaming a chunked body."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise WebhookError(413, "body_too_large", f"body larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise WebhookError(413, "body_too_large", f"body larger than {limit} bytes")
    return bytes(body)


def _configured(secret: SecretStr | None) -> str | None:
    """The secret's value; ``None`` when unset or empty (``TEO_WEBHOOK_SHARED_SECRET=``)."""
    return (secret.get_secret_value() or None) if secret is not None else None


def _same(given: str, secret: SecretStr | None) -> bool:
    value = _configured(secret)
    if value is None:
        return False
    return hmac.compare_digest(given.encode(), value.encode())


def _check_headers(settings: Settings, request: Request, body: bytes) -> bool:
    """True if a header authenticates the request; 401 if one is present and wrong; False if
    none is present (a TradingView alert may still carry the secret in its body)."""
    signature = request.headers.get(SIGNATURE_HEADER)
    if signature is not None:
        key = _configured(settings.webhook_hmac_secret)
        if key is None:
            raise WebhookError(401, "unauthorized", f"{SIGNATURE_HEADER} is not enabled here")
        expected = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.strip().encode(), f"sha256={expected}".encode()):
            raise WebhookError(401, "unauthorized", f"{SIGNATURE_HEADER} does not match the body")
        return True
    token = request.headers.get(TOKEN_HEADER)
    if token is not None:
        if not _same(token, settings.webhook_shared_secret):
            raise WebhookError(401, "unauthorized", f"{TOKEN_HEADER} is wrong")
        return True
    return False


def _missing_credentials() -> str:
    return (
        f"send {SIGNATURE_HEADER} (HMAC-SHA256 of the body) or {TOKEN_HEADER}, "
        "or the shared secret in a TradingView alert's secret field"
    )


def _parse_json(body: bytes, *, authenticated: bool) -> Any:
    try:
        # Numbers become Decimal straight from their digits, as in service.parse_signal.
        payload = json.loads(body, parse_float=Decimal)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        if not authenticated:  # nothing to say to a caller we do not know
            raise WebhookError(401, "unauthorized", _missing_credentials()) from exc
        raise WebhookError(400, "malformed_json", f"malformed JSON: {exc}") from exc
    if not isinstance(payload, dict):
        if not authenticated:
            raise WebhookError(401, "unauthorized", _missing_credentials())
        raise WebhookError(400, "malformed_json", "expected a JSON object")
    return payload


def serve(settings: Settings, app: FastAPI | None = None) -> None:
    """Run ``app`` (default: :func:`create_app`'s) under uvicorn until SIGINT or SIGTERM, which
    uvicorn handles: it shuts down gracefully, then raises the signal again, so a SIGTERM ends
    the process by that signal and a SIGINT returns."""
    logs.configure(level=settings.log_level, fmt=settings.log_format)
    uvicorn.run(
        app or create_app(settings),
        host=settings.webhook_host,
        port=settings.webhook_port,
        log_config=None,  # keep our JSON handler; uvicorn's loggers propagate to it
        access_log=False,  # the app logs each request's outcome with the signal's ids
        proxy_headers=True,  # client address from X-Forwarded-For, for FORWARDED_ALLOW_IPS
    )

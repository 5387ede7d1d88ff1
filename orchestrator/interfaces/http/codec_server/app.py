"""The codec server's app: the two routes, CORS, refusals, and serving it under uvicorn.

A refusal says why in its body (``{"detail": "token expired"}``) and in ``WWW-Authenticate``.
Note that the UI shows every refusal as "Codec Server could not connect".

CORS admits the origins :func:`.auth.server_auth` resolves, ``POST`` only, with the headers the
UI sends. Where it may listen is checked before anything binds (:func:`check_serving`).
"""

from __future__ import annotations

import logging

import uvicorn
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from google.protobuf.json_format import MessageToJson, Parse, ParseError
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

from orchestrator.adapters.codec import CodecError
from orchestrator.adapters.observability import logs
from orchestrator.config import Settings
from orchestrator.domain.errors import OrchestratorError
from orchestrator.interfaces.http.codec_server.auth import Refused, is_loopback, server_auth

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024
"""Temporal's own payload limit is 2 MB; a batch of them stays under this."""


def check_serving(settings: Settings, host: str) -> None:
    """Refuse to listen where the mode must not: ``local`` off loopback, ``oidc`` without
    https. Checked before anything binds."""
    tls = settings.codec_tls_cert_file is not None
    if settings.codec_auth == "local" and not is_loopback(host):
        raise OrchestratorError(
            f"TEO_CODEC_AUTH=local admits every caller without a token, so it listens on "
            f"loopback only (127.0.0.1, ::1, localhost), not on {host!r}: use "
            "TEO_CODEC_AUTH=oidc (or token) to serve other machines"
        )
    if settings.codec_auth == "oidc" and not tls:
        raise OrchestratorError(
            "TEO_CODEC_AUTH=oidc serves https (the UI passes its access token to https "
            "endpoints only): set TEO_CODEC_TLS_CERT_FILE and TEO_CODEC_TLS_KEY_FILE"
        )
    for path in (settings.codec_tls_cert_file, settings.codec_tls_key_file):
        if path is not None and not path.is_file():
            raise OrchestratorError(f"codec server TLS file {path} does not exist")
    if settings.codec_auth == "token" and not tls and not is_loopback(host):
        log.warning(
            "codec server on %s over plain http: the bearer token crosses the network in "
            "clear; set TEO_CODEC_TLS_CERT_FILE and TEO_CODEC_TLS_KEY_FILE",
            host,
        )


def _refusal(refused: Refused) -> JSONResponse:
    headers = {}
    if refused.status == 401:
        description = refused.reason.replace('"', "'")
        headers["WWW-Authenticate"] = (
            f'Bearer realm="codec", error="invalid_token", error_description="{description}"'
        )
    return JSONResponse({"detail": refused.reason}, status_code=refused.status, headers=headers)


def create_app(settings: Settings, codec: PayloadCodec) -> FastAPI:
    auth = server_auth(settings)
    app = FastAPI(
        title="Trade Execution Orchestrator codec server",
        description="Decrypts payloads for the Temporal Web UI (Temporal remote codec protocol).",
        openapi_url=None,  # nothing to browse: two routes
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(auth.origins),
        allow_methods=["POST"],
        allow_headers=["Authorization", "Content-Type", "X-Namespace"],
        allow_credentials=True,
    )

    async def transform(request: Request, *, decode: bool) -> Response:
        try:
            caller = await auth.admit(request)
        except Refused as refused:
            log.warning(
                "codec server refused %s %s from %s: %s",
                request.method,
                request.url.path,
                request.headers.get("origin") or (request.client.host if request.client else "?"),
                refused.reason,
            )
            return _refusal(refused)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return JSONResponse({"detail": "body too large"}, status_code=413)
        try:
            payloads = Parse(body, Payloads())
        except ParseError as err:
            return JSONResponse({"detail": f"not a Payloads JSON document: {err}"}, 400)
        try:
            items = list(payloads.payloads)
            done = await (codec.decode(items) if decode else codec.encode(items))
        except CodecError as err:
            return JSONResponse({"detail": str(err)}, status_code=422)
        log.info(
            "%s %d payload(s) for namespace %s (%s)",
            "decoded" if decode else "encoded",
            len(done),
            request.headers.get("x-namespace", "?"),
            caller,
        )
        return Response(MessageToJson(Payloads(payloads=done)), media_type="application/json")

    @app.post("/decode")
    async def decode(request: Request) -> Response:
        return await transform(request, decode=True)

    @app.post("/encode")
    async def encode(request: Request) -> Response:
        return await transform(request, decode=False)

    return app


def uvicorn_config(
    settings: Settings, codec: PayloadCodec, *, host: str, port: int
) -> uvicorn.Config:
    """The server's uvicorn configuration, checked (``check_serving``) before anything binds."""
    check_serving(settings, host)
    cert, key = settings.codec_tls_cert_file, settings.codec_tls_key_file
    return uvicorn.Config(
        create_app(settings, codec),
        host=host,
        port=port,
        log_config=None,
        ssl_certfile=str(cert) if cert else None,
        ssl_keyfile=str(key) if key else None,
    )


def serve(settings: Settings, codec: PayloadCodec, *, host: str, port: int) -> None:
    logs.configure(level=settings.log_level, fmt=settings.log_format)
    config = uvicorn_config(settings, codec, host=host, port=port)
    scheme = "https" if settings.codec_tls_cert_file else "http"
    log.info(
        "codec server (%s mode) on %s://%s:%d for %s",
        settings.codec_auth,
        scheme,
        host,
        port,
        ", ".join(server_auth(settings).origins),
    )
    uvicorn.Server(config).run()

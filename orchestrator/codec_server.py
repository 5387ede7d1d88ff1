"""The codec server: lets the Temporal Web UI (and ``temporal`` CLI) show decrypted payloads to
operators who hold its token, without giving the UI the keys.

Temporal's remote-codec protocol: ``POST /decode`` and ``POST /encode`` with a JSON body
``{"payloads": [{"metadata": {...}, "data": "<base64>"}]}`` (the protobuf JSON of
``temporal.api.common.v1.Payloads``), answered in the same shape. Every request needs
``Authorization: Bearer <TEO_CODEC_SERVER_TOKEN>`` (constant-time comparison). CORS admits one
origin, the UI's (``TEO_CODEC_CORS_ORIGIN``), and only these two routes' methods and headers.

Run it with ``python starter.py codec serve`` (see README, "Payload encryption").
"""

from __future__ import annotations

import hmac
import logging

import uvicorn
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from google.protobuf.json_format import MessageToJson, Parse, ParseError
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

from orchestrator import logs
from orchestrator.codec import CodecError
from orchestrator.errors import OrchestratorError
from orchestrator.settings import Settings

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024
"""Temporal's own payload limit is 2 MB; a batch of them stays under this."""


def create_app(settings: Settings, codec: PayloadCodec) -> FastAPI:
    token = settings.codec_server_token.get_secret_value() if settings.codec_server_token else ""
    if not token:
        raise OrchestratorError("the codec server needs TEO_CODEC_SERVER_TOKEN")
    app = FastAPI(
        title="Trade Execution Orchestrator codec server",
        description="Decrypts payloads for the Temporal Web UI (Temporal remote codec protocol).",
        openapi_url=None,  # nothing to browse: two routes, both behind the token
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[settings.codec_cors_origin],
        allow_methods=["POST"],
        allow_headers=["Authorization", "Content-Type", "X-Namespace"],
        allow_credentials=True,
    )

    async def transform(request: Request, *, decode: bool) -> Response:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401)
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
            "%s %d payload(s) for namespace %s",
            "decoded" if decode else "encoded",
            len(done),
            request.headers.get("x-namespace", "?"),
        )
        return Response(MessageToJson(Payloads(payloads=done)), media_type="application/json")

    @app.post("/decode")
    async def decode(request: Request) -> Response:
        return await transform(request, decode=True)

    @app.post("/encode")
    async def encode(request: Request) -> Response:
        return await transform(request, decode=False)

    return app


def serve(settings: Settings, codec: PayloadCodec, *, host: str, port: int) -> None:
    logs.configure(level=settings.log_level, fmt=settings.log_format)
    uvicorn.run(create_app(settings, codec), host=host, port=port, log_config=None)

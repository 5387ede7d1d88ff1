"""The codec server: lets the Temporal Web UI (and ``temporal`` CLI) show decrypted payloads,
and encode what an operator sends from the UI, without giving the UI the keys.

Temporal's remote-codec protocol: ``POST /decode`` and ``POST /encode`` with a JSON body
``{"payloads": [{"metadata": {...}, "data": "<base64>"}]}`` (the protobuf JSON of
``temporal.api.common.v1.Payloads``), answered in the same shape.

Who may call it is ``TEO_CODEC_AUTH`` (see docs/web-ui.md):

- ``local``: anyone on this machine, no token. The dev server's UI sends no ``Authorization``
  header (only ``content-type`` and ``x-namespace``), so this is the mode that works with it.
  Bound to a loopback address only (refused otherwise), and only requests whose ``Host`` is a
  loopback name are served (a page on another site that rebinds its DNS name to 127.0.0.1
  gets 403).
- ``token``: ``Authorization: Bearer <TEO_CODEC_SERVER_TOKEN>``, compared in constant time;
  for scripts and the ``temporal`` CLI.
- ``oidc``: the UI's own OIDC access token (the UI's "pass the user access token" option, which
  it honours for https endpoints only), a JWT verified against the issuer's published keys
  (``TEO_CODEC_OIDC_JWKS_URL``, cached), its audience, issuer, expiry and algorithm (RS256 or
  ES256). Served over https. The static token, when set, is accepted too.

A refusal says why in its body (``{"detail": "token expired"}``) and in ``WWW-Authenticate``.
Note that the UI shows every refusal as "Codec Server could not connect".

CORS admits the UI's exact origin(s) only (in ``local`` mode a loopback origin under both
spellings, ``localhost`` and ``127.0.0.1``), ``POST`` only, with the headers the UI sends. A
request that carries any other ``Origin`` is refused (403), preflighted or not.

Run it with ``python starter.py codec serve``; ``worker.py --dev`` and the demo start a ``local``
one themselves when encryption is on (``ensure_dev_codec``).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import uvicorn
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from google.protobuf.json_format import MessageToJson, Parse, ParseError
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

from orchestrator.adapters.codec import CodecError
from orchestrator.adapters.observability import logs
from orchestrator.adapters.temporal import (
    RUN_DIR,
    DevServer,
    data_converter,
    encryption_on,
    ensure_dev_server,
    port_open,
)
from orchestrator.config import PROJECT_ROOT, Settings
from orchestrator.domain.errors import OrchestratorError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024
"""Temporal's own payload limit is 2 MB; a batch of them stays under this."""

LOOPBACK_SPELLINGS = ("localhost", "127.0.0.1")
"""The two names a browser on this machine reaches a loopback UI by; the dev server prints
``http://localhost:PORT``, the project prints ``http://127.0.0.1:PORT``."""

JWKS_REFRESH_COOLDOWN_S = 30.0
"""A token naming a key not in the cached set refetches the set at most this often."""


class Refused(Exception):
    """A request the server will not serve: HTTP status and the reason given to the caller."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def is_loopback(host: str) -> bool:
    """``localhost`` or an address in 127.0.0.0/8 or ::1 (a name that resolves elsewhere, or
    ``0.0.0.0``, is not)."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def loopback_spellings(origin: str) -> list[str]:
    """``http://localhost:8233`` → itself and ``http://127.0.0.1:8233`` (and the reverse);
    any other origin → itself."""
    parts = urlsplit(origin)
    if parts.hostname not in LOOPBACK_SPELLINGS:
        return [origin]
    port = f":{parts.port}" if parts.port else ""
    return [f"{parts.scheme}://{name}{port}" for name in LOOPBACK_SPELLINGS]


def _url_host_is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname
    return host is not None and is_loopback(host)


class OidcVerifier:
    """Verifies OIDC access tokens (JWTs) against the issuer's JSON Web Key Set.

    The key set is fetched from the JWKS URL on first use and kept ``cache_s`` seconds; a token
    whose ``kid`` is not in the cached set refetches it (at most every 30 s), so a key the
    issuer rotates in is found without a restart. ``jwt.PyJWKClient`` is synchronous: callers
    on an event loop run ``verify`` in a thread.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str,
        algorithms: Sequence[str],
        cache_s: float = 300,
        leeway_s: float = 30,
        cooldown_s: float = JWKS_REFRESH_COOLDOWN_S,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.algorithms = list(algorithms)
        self.leeway_s = leeway_s
        self._keys = jwt.PyJWKClient(
            jwks_url,
            cache_jwk_set=True,
            lifespan=cache_s,
            timeout=10,
            cooldown_duration=cooldown_s,
        )

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or ``Refused`` saying what is wrong with it."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as err:
            raise Refused(401, "malformed token: not a JWT") from err
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise Refused(
                401, f"token algorithm {alg!r} not accepted (only {', '.join(self.algorithms)})"
            )
        kid = header.get("kid")
        if not kid:
            raise Refused(401, "token names no signing key (no 'kid' in its header)")
        try:
            key = self._keys.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError as err:
            log.error("cannot fetch the OIDC key set from %s: %s", self.jwks_url, err)
            raise Refused(503, "cannot fetch the issuer's signing keys") from err
        except jwt.PyJWKClientError as err:
            raise Refused(
                401, f"bad signature: token signed by a key the issuer does not publish ({kid!r})"
            ) from err
        try:
            return jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as err:
            raise Refused(401, "token expired") from err
        except jwt.InvalidAudienceError as err:
            raise Refused(401, f"wrong audience: token is not for {self.audience!r}") from err
        except jwt.InvalidIssuerError as err:
            raise Refused(401, f"wrong issuer: token is not from {self.issuer!r}") from err
        except jwt.InvalidSignatureError as err:
            raise Refused(
                401, f"bad signature: token does not verify against the issuer's key {kid!r}"
            ) from err
        except jwt.ImmatureSignatureError as err:
            raise Refused(401, "token not yet valid") from err
        except jwt.MissingRequiredClaimError as err:
            raise Refused(401, f"token lacks the {err.claim!r} claim") from err
        except jwt.PyJWTError as err:
            raise Refused(401, f"invalid token: {err}") from err


@dataclass(frozen=True)
class ServerAuth:
    """Who the codec server admits, resolved from the settings and checked for consistency."""

    mode: str
    origins: tuple[str, ...]
    token: str | None = None
    oidc: OidcVerifier | None = None

    async def admit(self, request: Request) -> str:
        """Who the caller is (for the log), or ``Refused``."""
        origin = request.headers.get("origin")
        if origin is not None and origin not in self.origins:
            raise Refused(403, f"origin {origin!r} is not admitted")
        if self.mode == "local":
            host = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
            if not is_loopback(host):
                raise Refused(403, "a local codec server answers to a loopback Host only")
            return "local"
        given = request.headers.get("authorization")
        if not given:
            raise Refused(401, "missing token: send Authorization: Bearer <token>")
        scheme, _, credential = given.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Refused(401, "malformed Authorization header: expected 'Bearer <token>'")
        if self.token is not None and hmac.compare_digest(credential.encode(), self.token.encode()):
            return "static token"
        if self.oidc is None:
            raise Refused(401, "wrong token")
        if credential.count(".") != 2 and self.token is not None:
            raise Refused(401, "wrong token: neither the static token nor a JWT")
        claims = await asyncio.to_thread(self.oidc.verify, credential)
        return f"oidc subject {claims.get('sub', '?')!r}"


def server_auth(settings: Settings) -> ServerAuth:
    """The admission rules ``settings`` describe; ``OrchestratorError`` naming the settings to
    change when they contradict each other."""
    mode = settings.codec_auth
    token = settings.codec_server_token.get_secret_value() if settings.codec_server_token else None
    oidc_given = {
        "TEO_CODEC_OIDC_ISSUER": settings.codec_oidc_issuer,
        "TEO_CODEC_OIDC_AUDIENCE": settings.codec_oidc_audience,
        "TEO_CODEC_OIDC_JWKS_URL": settings.codec_oidc_jwks_url,
    }
    origins = settings.codec_origins()
    if mode != "oidc":
        stray = [name for name, value in oidc_given.items() if value]
        if stray:
            raise OrchestratorError(
                f"{', '.join(stray)} set but TEO_CODEC_AUTH={mode}: set TEO_CODEC_AUTH=oidc "
                "to verify the UI's access tokens, or unset them"
            )
    if mode == "local":
        if token:
            raise OrchestratorError(
                "TEO_CODEC_AUTH=local checks no token, yet TEO_CODEC_SERVER_TOKEN is set: use "
                "TEO_CODEC_AUTH=token to require it, or unset it"
            )
        spelled = [o for origin in origins for o in loopback_spellings(origin)]
        return ServerAuth(mode="local", origins=tuple(dict.fromkeys(spelled)))
    if mode == "token":
        if not token:
            raise OrchestratorError(
                "TEO_CODEC_AUTH=token needs TEO_CODEC_SERVER_TOKEN (or, for the dev server's "
                "UI on this machine, TEO_CODEC_AUTH=local)"
            )
        return ServerAuth(mode="token", origins=tuple(origins), token=token)
    issuer, audience, jwks_url = oidc_given.values()
    if not (issuer and audience and jwks_url):
        missing = [name for name, value in oidc_given.items() if not value]
        raise OrchestratorError(f"TEO_CODEC_AUTH=oidc needs {', '.join(missing)}")
    if urlsplit(jwks_url).scheme != "https" and not (
        urlsplit(jwks_url).scheme == "http" and _url_host_is_loopback(jwks_url)
    ):
        raise OrchestratorError(
            "TEO_CODEC_OIDC_JWKS_URL must be https (plain http only on loopback): whoever "
            "could change the keys in transit could sign tokens"
        )
    verifier = OidcVerifier(
        issuer=issuer,
        audience=audience,
        jwks_url=jwks_url,
        algorithms=settings.codec_oidc_algorithm_list(),
        cache_s=settings.codec_oidc_jwks_cache_s,
        leeway_s=settings.codec_oidc_leeway_s,
    )
    return ServerAuth(mode="oidc", origins=tuple(origins), token=token or None, oidc=verifier)


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


# --------------------------------------------------------------------------------------------
# The local codec server of the dev setup (worker.py --dev, the demo, the browser tests)


def local_settings(settings: Settings, *, port: int | None = None) -> Settings:
    """``settings`` as a ``local`` codec server on 127.0.0.1 sees them: no token, no OIDC,
    the UI's origin from ``TEO_CODEC_CORS_ORIGIN`` or ``TEO_TEMPORAL_UI_URL``."""
    return settings.model_copy(
        update={
            "codec_auth": "local",
            "codec_server_token": None,
            "codec_server_host": "127.0.0.1",
            "codec_server_port": port or settings.codec_server_port,
            "codec_oidc_issuer": None,
            "codec_oidc_audience": None,
            "codec_oidc_jwks_url": None,
            "codec_tls_cert_file": None,
            "codec_tls_key_file": None,
        }
    )


async def decodes_with(endpoint: str, codec: PayloadCodec, *, timeout_s: float = 2) -> bool:
    """Whether the codec server at ``endpoint`` decodes what ``codec`` encodes (the same keys),
    asked the way the dev server's UI asks (no token)."""
    probe = Payload(metadata={"encoding": b"json/plain"}, data=b'"codec-probe"')
    [sealed] = await codec.encode([probe])
    request = urllib.request.Request(
        f"{endpoint}/decode",
        data=MessageToJson(Payloads(payloads=[sealed])).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def ask() -> bytes:
        with no_proxy.open(request, timeout=timeout_s) as answer:
            body: bytes = answer.read()
            return body

    try:
        returned = Parse(await asyncio.to_thread(ask), Payloads())
    except (OSError, ParseError):  # refused, timed out, an HTTP error status, not a codec
        return False
    return list(returned.payloads) == [probe]


@dataclass(frozen=True)
class DevCodec:
    endpoint: str
    pid: int
    started_here: bool


def _child_environment(settings: Settings, port: int) -> dict[str, str]:
    """The environment of ``starter.py codec serve`` in ``local`` mode: this process's, less
    every codec server setting, plus the key ring and the UI's origin this process uses (keys
    go through the environment, never the command line)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEO_CODEC_")}
    env.update(
        TEO_CODEC_AUTH="local",
        TEO_CODEC_SERVER_HOST="127.0.0.1",
        TEO_CODEC_SERVER_PORT=str(port),
        TEO_CODEC_CORS_ORIGIN=",".join(settings.codec_origins()),
        TEO_LOG_FORMAT="text",
    )
    if settings.codec_keys is not None:
        env["TEO_CODEC_KEYS"] = settings.codec_keys.get_secret_value()
    if settings.codec_key_file is not None:
        env["TEO_CODEC_KEY_FILE"] = str(settings.codec_key_file)
    if settings.codec_active_key is not None:
        env["TEO_CODEC_ACTIVE_KEY"] = settings.codec_active_key
    return env


async def ensure_dev_codec(
    settings: Settings, *, run_dir: Path = RUN_DIR, timeout_s: float = 30
) -> DevCodec | None:
    """The dev setup's codec server (``worker.py --dev``, the demo): when a codec key is
    configured, a ``local`` one on 127.0.0.1:``TEO_CODEC_SERVER_PORT`` (``starter.py codec
    serve`` in the background, like the dev server: it keeps running after this process exits,
    so the UI keeps decoding; ``make stop`` ends both). One already serving that port with the
    same keys is used as it is. ``None`` when no key is configured (the UI then shows payloads
    as they are)."""
    if not encryption_on(settings):
        return None
    codec = data_converter(settings).payload_codec
    if codec is None:  # pragma: no cover - the project's converter always has one
        raise OrchestratorError("the data converter has no payload codec")
    port = settings.codec_server_port
    endpoint = f"http://127.0.0.1:{port}"
    pid_file = run_dir / f"codec-server-{port}.pid"
    if await decodes_with(endpoint, codec):
        pid = int(pid_file.read_text()) if pid_file.exists() else 0
        return DevCodec(endpoint=endpoint, pid=pid, started_here=False)
    if port_open(f"127.0.0.1:{port}"):
        raise OrchestratorError(
            f"{endpoint} is taken by something that does not decode with this key ring (a "
            "codec server started with other keys? `make stop` ends ours): set "
            "TEO_CODEC_SERVER_PORT to another port"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "codec-server.log").open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, str(PROJECT_ROOT / "starter.py"), "codec", "serve"],
            env=_child_environment(settings, port),
            cwd=PROJECT_ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pid_file.write_text(str(process.pid))
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await decodes_with(endpoint, codec):
        if process.poll() is not None:
            raise OrchestratorError(
                f"the local codec server exited with {process.returncode}; see "
                f"{run_dir / 'codec-server.log'}"
            )
        if asyncio.get_running_loop().time() > deadline:
            process.terminate()
            raise TimeoutError(f"the local codec server did not answer within {timeout_s} s")
        await asyncio.sleep(0.2)
    return DevCodec(endpoint=endpoint, pid=process.pid, started_here=True)


def stop_dev_codec(*, run_dir: Path = RUN_DIR) -> bool:
    """Stop the codec servers ``ensure_dev_codec`` started (by their recorded pids)."""
    stopped = False
    for pid_file in sorted(run_dir.glob("codec-server-*.pid")):
        pid = int(pid_file.read_text())
        pid_file.unlink()
        try:
            os.kill(pid, signal.SIGTERM)
            stopped = True
        except ProcessLookupError:
            pass
    return stopped


@dataclass(frozen=True)
class DevStack:
    server: DevServer
    codec: DevCodec | None
    notes: tuple[str, ...]
    """What to tell the operator: where the UI is, what decodes in it, what is amiss."""


async def ensure_dev_stack(settings: Settings) -> DevStack:
    """The embedded setup of ``worker.py --dev``, the demo and ``starter.py server start``: the
    local codec server when a codec key is configured (``ensure_dev_codec``), then the dev
    server with its Web UI's codec endpoint preset to it (``ensure_dev_server``)."""
    codec = await ensure_dev_codec(settings)
    endpoint = codec.endpoint if codec else None
    server = await ensure_dev_server(settings, ui_codec_endpoint=endpoint)
    notes = [
        f"Temporal dev server {'started' if server.started_here else 'already running'} "
        f"(pid {server.pid}, history in {settings.dev_server_db}); Web UI "
        f"{settings.temporal_ui_url}"
    ]
    if endpoint:
        notes.append(
            f"payloads are encrypted; the Web UI decodes them through the local codec server "
            f"{endpoint} (see docs/web-ui.md)"
        )
    if endpoint and server.ui_codec_endpoint != endpoint:
        notes.append(
            f"note: the dev server already running was started with UI codec endpoint "
            f"{server.ui_codec_endpoint or 'none'}, not {endpoint}: its UI shows payloads "
            f"encrypted until you set {endpoint} in its Codec Server dialog (the icon at the "
            "top right), or restart it (make stop)"
        )
    return DevStack(server=server, codec=codec, notes=tuple(notes))

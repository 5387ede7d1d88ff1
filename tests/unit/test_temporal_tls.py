"""TLS settings for the Temporal connection become the SDK's TLSConfig, or a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.service import TLSConfig

from orchestrator.adapters.temporal import tls_config
from orchestrator.config import Settings
from orchestrator.domain.errors import OrchestratorError


def test_plain_unless_asked(tmp_path: Path) -> None:
    assert tls_config(Settings()) is False
    assert tls_config(Settings(temporal_tls=True)) == TLSConfig()


def test_mtls_reads_the_files(tmp_path: Path) -> None:
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_bytes(f"-- {name} --".encode())
    config = tls_config(
        Settings(
            temporal_tls_ca_file=tmp_path / "ca.pem",
            temporal_tls_cert_file=tmp_path / "client.pem",
            temporal_tls_key_file=tmp_path / "client.key",
            temporal_tls_server_name="temporal.internal",
        )
    )
    assert config == TLSConfig(
        server_root_ca_cert=b"-- ca.pem --",
        client_cert=b"-- client.pem --",
        client_private_key=b"-- client.key --",
        domain="temporal.internal",
    )


def test_half_an_mtls_pair_or_a_missing_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "client.pem").write_bytes(b"cert")
    with pytest.raises(OrchestratorError, match="needs both"):
        tls_config(Settings(temporal_tls_cert_file=tmp_path / "client.pem"))
    with pytest.raises(OrchestratorError, match="cannot read TLS file"):
        tls_config(Settings(temporal_tls_ca_file=tmp_path / "missing.pem"))

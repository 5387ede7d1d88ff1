"""A Temporal dev server persisting to a file, stoppable and restartable on the same port and
database file: the fault suite's, and the integration tests' that restart the server."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

from orchestrator.adapters.temporal import temporal_binary
from orchestrator.domain import search_attributes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class DevServer:
    """``temporal server start-dev`` persisting to a file, stoppable and restartable."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.db_file = directory / "temporal.db"
        self.log = directory / "temporal.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--headless",
            "--db-filename",
            str(self.db_file),
            "--log-level",
            "warn",
        ]
        for key in search_attributes.ALL:
            command += ["--search-attribute", f"{key.name}=Keyword"]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        self.process = None

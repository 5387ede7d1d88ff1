"""The fault suite's own servers, so it can stop and restart them: a file-backed Temporal dev
server and a private PostgreSQL cluster (initdb under a temporary directory, 127.0.0.1 only).
At the end of the session it prints the table the fault suite is judged by."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from temporalio.client import Client

from orchestrator.adapters.temporal import connect, ensure_search_attributes
from orchestrator.config import Settings
from tests.dev_server import DevServer, free_port
from tests.support import poll_until

pytestmark = pytest.mark.faults

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), Path("/nonexistent"))


@dataclass
class Row:
    scenario: str
    faults: int
    signals: int
    orders: int
    resends_absorbed: int
    doubled: int
    lost: int
    breaches: int
    ledger_mismatches: int
    wrong_outcomes: int
    protection: int = 0
    """Protective orders working beyond a position's open quantity (or on a flat one)."""

    @property
    def clean(self) -> bool:
        """Every invariant holds."""
        return not (
            self.doubled
            or self.lost
            or self.breaches
            or self.ledger_mismatches
            or self.wrong_outcomes
            or self.protection
        )


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)


RESULTS = Results()


@pytest.fixture(scope="session")
def results() -> Results:
    return RESULTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS.rows:
        return
    columns = [
        ("scenario", 44),
        ("faults", 6),
        ("signals", 7),
        ("orders", 6),
        ("re-sends", 8),
        ("doubled", 7),
        ("lost", 4),
        ("breaches", 8),
        ("ledger≠", 7),
        ("wrong", 5),
        ("protect≠", 8),
    ]
    write = terminalreporter.write_line
    write("")
    write(
        "Fault suite: invariants after recovery "
        "(doubled, lost, breaches, ledger≠, wrong outcome, protect≠ must be 0)"
    )
    write("  ".join(name.ljust(width) for name, width in columns))
    for r in RESULTS.rows:
        values = [
            r.scenario,
            r.faults,
            r.signals,
            r.orders,
            r.resends_absorbed,
            r.doubled,
            r.lost,
            r.breaches,
            r.ledger_mismatches,
            r.wrong_outcomes,
            r.protection,
        ]
        write("  ".join(str(v).ljust(w) for v, (_, w) in zip(values, columns, strict=True)))
    totals = [
        sum(getattr(r, a) for r in RESULTS.rows)
        for a in (
            "faults",
            "signals",
            "orders",
            "resends_absorbed",
            "doubled",
            "lost",
            "breaches",
            "ledger_mismatches",
            "wrong_outcomes",
            "protection",
        )
    ]
    write("  ".join(str(v).ljust(w) for v, (_, w) in zip(["total", *totals], columns, strict=True)))


# --------------------------------------------------------------------------------------------
# Servers


class PrivatePostgres:
    """A PostgreSQL cluster of the suite's own (the shared one is left alone): trust auth,
    127.0.0.1 only, restartable."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.data = directory / "data"

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.directory / "postgres.log"),
                "-o",
                options,
                "-w",
                *args,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def init(self) -> None:
        shutil.chown(self.directory, "postgres")
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("-m", "fast", "restart")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres]:
    # Outside pytest's root-only temporary tree: the postgres user must reach it.
    directory = Path(tempfile.mkdtemp(prefix="teo-faults-pg-"))
    cluster = PrivatePostgres(directory)
    try:
        cluster.init()
        with psycopg.connect(cluster.admin_url(), connect_timeout=10) as conn:
            conn.execute("SELECT 1")
        yield cluster
        cluster.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
async def file_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevServer]:
    server = DevServer(tmp_path_factory.mktemp("temporal"))
    server.start()
    settings = Settings(temporal_address=server.address)

    async def answers() -> Client | None:
        try:
            return await connect(settings)
        except RuntimeError:
            return None

    client = await poll_until(answers, timeout_s=60, interval_s=0.3)
    await ensure_search_attributes(client, "default")
    yield server
    server.stop()

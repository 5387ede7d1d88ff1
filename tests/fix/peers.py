"""QuickFIX's own example programs as FIX counterparties, each in a network namespace of its own.

``running_peer`` starts ``python -m tests.fix.netns_peer`` (see there for the namespace and the
relay), which runs the peer and relays a port on 127.0.0.1 to it. The test process, the worker,
Temporal and the database stay in the host namespace and reach the peer through that port only.
Everything is bounded: the helper has a deadline, and it stops the peer (by PID) when it ends.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Literal

from orchestrator.adapters.brokers.fix import DICTIONARY_DIR, FixSessionConfig
from orchestrator.config import PROJECT_ROOT

PEERS_DIR = Path(os.environ.get("TEO_FIX_PEERS_DIR", PROJECT_ROOT / ".tools" / "fix-peers"))
PeerName = Literal["executor", "ordermatch"]
BeginString = Literal["FIX.4.2", "FIX.4.4"]
PEER_PORT = 5001
"""The peer's port inside its namespace: private to it, so every peer can use the same."""

BEGIN_STRING: dict[PeerName, BeginString] = {
    "executor": "FIX.4.4",
    "ordermatch": "FIX.4.2",
}
COMP_ID: dict[PeerName, str] = {"executor": "EXECUTOR", "ordermatch": "ORDERMATCH"}
_ids = itertools.count(1)


class PeerMissing(AssertionError):
    """The peer programs are not installed: a failure, never a skip."""


def peer_program(name: PeerName) -> Path:
    path = PEERS_DIR / name
    if not os.access(path, os.X_OK):
        raise PeerMissing(
            f"{path} is missing: run scripts/install-fix-peers.sh (make fix-peers); "
            "the FIX tests need QuickFIX's example programs"
        )
    return path


def new_comp_id(prefix: str = "TEO") -> str:
    """A SenderCompID never used before in this process: QuickFIX initiators live for the
    process's lifetime, so each test needs session ids of its own."""
    return f"{prefix}{os.getpid()}N{next(_ids)}"


def acceptor_settings(
    name: PeerName, clients: list[str], store_dir: Path, begin: BeginString | None = None
) -> str:
    begin = begin or BEGIN_STRING[name]
    version = begin.replace("FIX.", "").replace(".", "")
    lines = [
        "[DEFAULT]",
        "ConnectionType=acceptor",
        f"SocketAcceptPort={PEER_PORT}",
        f"FileStorePath={store_dir}",
        "StartTime=00:00:00",
        "EndTime=00:00:00",
        "HeartBtInt=30",
        "UseDataDictionary=Y",
        f"DataDictionary={DICTIONARY_DIR / f'FIX{version}.xml'}",
        "ValidateUserDefinedFields=N",
    ]
    for client in clients:
        lines += [
            "[SESSION]",
            f"BeginString={begin}",
            f"SenderCompID={COMP_ID[name]}",
            f"TargetCompID={client}",
        ]
    return "\n".join(lines) + "\n"


@dataclass
class FixPeer:
    name: PeerName
    port: int
    """The relay's port on the host's 127.0.0.1."""
    workdir: Path
    begin_string: BeginString
    _process: subprocess.Popen[str]
    _lines: queue.SimpleQueue[str]

    def client_config(self, sender_comp_id: str, **overrides: object) -> FixSessionConfig:
        values: dict[str, object] = {
            "name": self.name,
            "host": "127.0.0.1",
            "port": self.port,
            "begin_string": self.begin_string,
            "sender_comp_id": sender_comp_id,
            "target_comp_id": COMP_ID[self.name],
            "heartbeat_s": 30,
            "reconnect_interval_s": 1,
            "store_dir": self.workdir / "client" / sender_comp_id / "store",
            "log_dir": self.workdir / "client" / sender_comp_id / "log",
            "ack_timeout_s": 5.0,
            # QuickFIX's examples answer neither OrderStatusRequest nor duplicate ClOrdIDs.
            "status_requests": False,
            # ordermatch keeps quantities as whole numbers: 0.01 lot = 1 unit.
            "units_per_lot": Decimal(100),
        }
        values.update(overrides)
        return FixSessionConfig.model_validate(values)

    def command(self, command: Literal["drop", "kill", "start"], timeout_s: float = 15) -> None:
        """Cut the connections, kill the peer, or start it again; wait until done. (Also
        ``say TEXT``, through :meth:`tell`.)"""
        self._command(command, timeout_s)

    def _command(self, command: str, timeout_s: float) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        self._expect(f"OK {command}", timeout_s)

    def tell(self, line: str, timeout_s: float = 15) -> None:
        """Give the suite's venue a command (``price EURUSD 1.08`` …, see ``tests.fix.venue``)
        and wait until its journal says it was done."""
        done = len(self.journal())
        self._command("say " + line, timeout_s)
        deadline = time.monotonic() + timeout_s
        while ("control", line) not in [(j["type"], j["result"]) for j in self.journal()[done:]]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the venue did not take {line!r} in {timeout_s} s")
            time.sleep(0.02)

    def journal(self) -> list[dict[str, str]]:
        """What reached the suite's venue, one entry per message or command, in order."""
        path = self.workdir / "journal.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines]

    def _expect(self, wanted: str, timeout_s: float) -> str:
        while True:
            try:
                line = self._lines.get(timeout=timeout_s)
            except queue.Empty as exc:
                raise TimeoutError(f"peer helper did not say {wanted!r} in {timeout_s} s") from exc
            if line.startswith(wanted):
                return line
            if line == "":
                raise RuntimeError(f"peer helper ended; see {self.workdir}")

    def stop(self) -> None:
        if self._process.poll() is None:
            assert self._process.stdin is not None
            try:
                self._process.stdin.write("quit\n")
                self._process.stdin.close()
                self._process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait(timeout=10)


@contextmanager
def running_peer(
    name: PeerName | Literal["venue"],
    workdir: Path,
    clients: list[str],
    *,
    deadline_s: float = 300,
    venue_fill_delay_s: float = 0,
    venue_begin_string: BeginString = "FIX.4.4",
) -> Iterator[FixPeer]:
    """Start the peer, with one session per client comp id, and stop it afterwards.

    ``venue`` is the test suite's own acceptor (:mod:`tests.fix.venue`, FIX 4.4 unless
    ``venue_begin_string`` says 4.2), for what QuickFIX's examples cannot do: status requests,
    duplicate ClOrdIDs, stop orders and prices, cancel/replace, positions, collateral, mass
    status, a journal of what arrived.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    kind: PeerName = "executor" if name == "venue" else name
    begin = venue_begin_string if name == "venue" else BEGIN_STRING[kind]
    config = workdir / f"{name}.cfg"
    settings = acceptor_settings(kind, clients, workdir / "peer-store", begin)
    config.write_text(settings, encoding="utf-8")
    if name == "venue":
        command = [sys.executable, "-m", "tests.fix.venue", str(config), str(workdir)]
        command.append(str(venue_fill_delay_s))
    else:
        command = [str(peer_program(name)), str(config)]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fix.netns_peer",
            "--peer-port",
            str(PEER_PORT),
            "--workdir",
            str(workdir),
            "--deadline-s",
            str(deadline_s),
            "--",
            *command,
        ],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=(workdir / "helper.log").open("w"),
        text=True,
    )
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.strip())
        lines.put("")

    threading.Thread(target=read, daemon=True).start()
    peer = FixPeer(kind, 0, workdir, begin, process, lines)
    try:
        peer.port = int(peer._expect("PORT ", 30).split()[1])
        peer._expect("READY", 30)
        yield peer
    finally:
        peer.stop()

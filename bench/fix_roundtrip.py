"""Order → ack → fill round trip on QuickFIX's ``executor``: through the adapter vs raw QuickFIX.

Not a test: a measurement. Both clients talk to the same ``executor`` (FIX 4.4, which answers
each limit order with one fill) over loopback, from one process, one order at a time:

- **raw**: a bare ``quickfix.Application``; the clock stops when its ``fromApp`` sees the
  ExecutionReport with OrdStatus 2 for that ClOrdID.
- **adapter**: ``FixBroker.submit`` (building the message, the not-connected guard, the
  thread hand-off from QuickFIX's thread through our condition variable, state mapping and the
  event fan-out); the clock stops when ``submit`` returns the FILLED order.

Rounds alternate between the two so drift on a shared machine hits both alike. The executor
listens on all interfaces, so the whole benchmark re-executes itself inside a new network
namespace with only loopback (``unshare -n``; root needed), where it starts the executor.

    python -m bench.fix_roundtrip [--orders 2000] [--rounds 10]   # or: make bench-fix
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path

import quickfix as fix

from orchestrator.adapters.brokers.base import OrderTicket
from orchestrator.adapters.brokers.fix import DICTIONARY_DIR, FixBroker, FixSessionConfig
from orchestrator.config import PROJECT_ROOT
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.values import OrderType, Side

PORT = 5001
INSIDE = "TEO_BENCH_IN_NETNS"
EXECUTOR = Path(os.environ.get("TEO_FIX_PEERS_DIR", PROJECT_ROOT / ".tools" / "fix-peers"))


class RawClient(fix.Application):  # type: ignore[misc]
    """The floor: QuickFIX and nothing else."""

    def __init__(self) -> None:
        super().__init__()
        self.logged_on = threading.Event()
        self._lock = threading.Lock()
        self._waiting: dict[str, threading.Event] = {}

    def onCreate(self, session_id: fix.SessionID) -> None:
        return None

    def onLogon(self, session_id: fix.SessionID) -> None:
        self.logged_on.set()

    def onLogout(self, session_id: fix.SessionID) -> None:
        self.logged_on.clear()

    def toAdmin(self, message: fix.Message, session_id: fix.SessionID) -> None:
        return None

    def fromAdmin(self, message: fix.Message, session_id: fix.SessionID) -> None:
        return None

    def toApp(self, message: fix.Message, session_id: fix.SessionID) -> None:
        return None

    def fromApp(self, message: fix.Message, session_id: fix.SessionID) -> None:
        if message.getField(39) == "2":
            with self._lock:
                done = self._waiting.pop(message.getField(11), None)
            if done is not None:
                done.set()

    def expect(self, client_order_id: str) -> threading.Event:
        done = threading.Event()
        with self._lock:
            self._waiting[client_order_id] = done
        return done


def raw_order(session_id: fix.SessionID, client_order_id: str) -> fix.Message:
    message = fix.Message()
    message.getHeader().setField(fix.BeginString("FIX.4.4"))
    message.getHeader().setField(fix.MsgType("D"))
    for tag, value in (
        (11, client_order_id),
        (1, "bench"),
        (21, "1"),
        (55, "EURUSD"),
        (54, "1"),
        (60, datetime.now(UTC).strftime("%Y%m%d-%H:%M:%S.%f")[:-3]),
        (38, "10000"),
        (40, "2"),
        (44, "1.085"),
        (59, "0"),
    ):
        message.setField(tag, value)
    return message


def acceptor_settings(store: Path, clients: list[str]) -> str:
    lines = [
        "[DEFAULT]",
        "ConnectionType=acceptor",
        f"SocketAcceptPort={PORT}",
        f"FileStorePath={store}",
        "StartTime=00:00:00",
        "EndTime=00:00:00",
        "HeartBtInt=30",
        "UseDataDictionary=Y",
        f"DataDictionary={DICTIONARY_DIR / 'FIX44.xml'}",
    ]
    for client in clients:
        lines += ["[SESSION]", "BeginString=FIX.4.4", "SenderCompID=EXECUTOR"]
        lines.append(f"TargetCompID={client}")
    return "\n".join(lines) + "\n"


def initiator_settings(store: Path, sender: str) -> str:
    return "\n".join(
        [
            "[DEFAULT]",
            "ConnectionType=initiator",
            f"FileStorePath={store}",
            "ReconnectInterval=1",
            "StartTime=00:00:00",
            "EndTime=00:00:00",
            "UseDataDictionary=Y",
            f"DataDictionary={DICTIONARY_DIR / 'FIX44.xml'}",
            "SocketNodelay=Y",
            "[SESSION]",
            "BeginString=FIX.4.4",
            f"SenderCompID={sender}",
            "TargetCompID=EXECUTOR",
            "SocketConnectHost=127.0.0.1",
            f"SocketConnectPort={PORT}",
            "HeartBtInt=30",
        ]
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 0.50), 4),
        "p99_ms": round(percentile(ms, 0.99), 4),
        "mean_ms": round(statistics.fmean(ms), 4),
        "max_ms": round(max(ms), 4),
    }


def measure(orders: int, rounds: int, workdir: Path) -> dict[str, object]:
    executor_program = EXECUTOR / "executor"
    if not os.access(executor_program, os.X_OK):
        raise SystemExit(f"{executor_program} missing: run scripts/install-fix-peers.sh")
    config = workdir / "executor.cfg"
    config.write_text(acceptor_settings(workdir / "peer", ["RAW", "ADAPTER"]))
    peer = subprocess.Popen(
        [str(executor_program), str(config)],
        cwd=workdir,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    raw = RawClient()
    raw_settings = fix.SessionSettings()
    raw_settings.setFromString(initiator_settings(workdir / "raw", "RAW"))
    raw_store = fix.FileStoreFactory(raw_settings)
    raw_initiator = fix.SocketInitiator(raw, raw_store, raw_settings)
    raw_session = fix.SessionID("FIX.4.4", "RAW", "EXECUTOR")
    adapter = FixBroker(
        FixSessionConfig(
            name="executor",
            port=PORT,
            begin_string="FIX.4.4",
            sender_comp_id="ADAPTER",
            target_comp_id="EXECUTOR",
            reconnect_interval_s=1,
            store_dir=workdir / "adapter",
            units_per_lot=Decimal(100000),
        )
    )
    raw_times: list[float] = []
    adapter_times: list[float] = []
    try:
        raw_initiator.start()
        adapter.start()
        if not (raw.logged_on.wait(20) and adapter.wait_logged_on(20)):
            raise SystemExit("sessions did not log on to the executor")
        per_round = max(1, orders // rounds)
        warmup = min(50, per_round)
        for r in range(rounds + 1):
            record = r > 0  # round 0 warms both paths up
            count = per_round if record else warmup
            for i in range(count):
                cid = f"raw-{r}-{i}"
                done = raw.expect(cid)
                start = time.perf_counter()
                fix.Session.sendToTarget(raw_order(raw_session, cid), raw_session)
                if not done.wait(5):
                    raise SystemExit(f"raw order {cid} not filled")
                if record:
                    raw_times.append(time.perf_counter() - start)
            for i in range(count):
                ticket = OrderTicket(
                    client_order_id=f"adapter-{r}-{i}",
                    account_id="bench",
                    symbol="EURUSD",
                    side=Side.BUY,
                    order_type=OrderType.LIMIT,
                    quantity=Decimal("0.1"),
                    limit_price=Decimal("1.085"),
                    reference_price=Decimal("1.085"),
                )
                start = time.perf_counter()
                order = adapter.submit(ticket)
                elapsed = time.perf_counter() - start
                if order.status is not OrderStatus.FILLED:
                    raise SystemExit(f"adapter order {ticket.client_order_id}: {order.status}")
                if record:
                    adapter_times.append(elapsed)
    finally:
        adapter.stop()
        raw_initiator.stop()
        peer.kill()
        peer.wait(timeout=10)
    raw_summary, adapter_summary = summary(raw_times), summary(adapter_times)
    return {
        "benchmark": "fix_roundtrip",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "peer": "QuickFIX executor (libquickfix-doc), FIX 4.4, loopback in a private netns",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "quickfix_py": version("quickfix-py"),
        "raw": raw_summary,
        "adapter": adapter_summary,
        "ratio_p50": round(adapter_summary["p50_ms"] / raw_summary["p50_ms"], 3),
        "ratio_p99": round(adapter_summary["p99_ms"] / raw_summary["p99_ms"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2000, help="orders per client, measured")
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench-results")
    args = parser.parse_args()
    if os.environ.get(INSIDE) != "1":
        # Re-run inside a fresh network namespace that has nothing but loopback.
        env = {**os.environ, INSIDE: "1", "PYTHONPATH": str(PROJECT_ROOT)}
        command = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
        command += [sys.executable, "-m", "bench.fix_roundtrip", *sys.argv[1:]]
        raise SystemExit(subprocess.call(command, env=env, cwd=PROJECT_ROOT))
    with tempfile.TemporaryDirectory(prefix="teo-fix-bench-") as tmp:
        result = measure(args.orders, args.rounds, Path(tmp))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"fix-roundtrip-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    raw, adapter = result["raw"], result["adapter"]
    assert isinstance(raw, dict) and isinstance(adapter, dict)
    print(f"order -> ack -> fill on executor, {raw['n']} orders each, one at a time")
    print(f"  raw QuickFIX: p50 {raw['p50_ms']:.3f} ms  p99 {raw['p99_ms']:.3f} ms")
    print(f"  adapter     : p50 {adapter['p50_ms']:.3f} ms  p99 {adapter['p99_ms']:.3f} ms")
    print(f"  ratio       : p50 {result['ratio_p50']}x  p99 {result['ratio_p99']}x")
    print(f"  written to {path}")


if __name__ == "__main__":
    main()

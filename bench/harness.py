"""The bench's machinery: its databases, the CPU of the processes it measures (this process by
thread, the dev server, PostgreSQL), the machine it ran on, and bounded waits.

CPU is read from ``/proc`` (utime + stime of each process or thread), sampled before and after
each run: the same way for ours and for the floor.
"""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from temporalio.client import WorkflowHandle

from orchestrator.adapters.temporal import temporal_binary

T = TypeVar("T")

ACTIVITY_THREADS = "bench-activity"
"""Name prefix of the activity threads (both workers), to tell their CPU apart."""
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


# --------------------------------------------------------------------------------------------
# Databases


@dataclass(frozen=True)
class BenchDb:
    url: str
    label: str
    """Which database ran, for the table header."""
    fresh: bool
    """Holds nothing but what the bench loads."""


@contextmanager
def bench_database(choice: str, tag: str, tmp: Path) -> Iterator[BenchDb]:
    """``postgres``: create ``bench_<tag>`` on 127.0.0.1:5432 and drop it afterwards (also on
    failure); ``sqlite``: a file in ``tmp``; anything else: that URL, as is."""
    if choice == "postgres":
        name = f"bench_{tag.lower()}"
        with fresh_postgres(name) as url:
            yield BenchDb(
                url,
                f"PostgreSQL {_pg_version()} (fresh database {name} on 127.0.0.1:5432)",
                fresh=True,
            )
    elif choice == "sqlite":
        yield BenchDb(f"sqlite:///{tmp / 'orchestrator.db'}", "SQLite (fresh temp file)", True)
    else:
        yield BenchDb(choice, f"given: {_redact(choice)}", fresh=False)


def _pg_version() -> str:
    with psycopg.connect(PG_ADMIN) as admin:
        row = admin.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else "?"


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


@contextmanager
def fresh_postgres(name: str) -> Iterator[str]:
    """Create database ``name`` on 127.0.0.1:5432 and drop it afterwards (also on failure)."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield PG_URL.format(name=name)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# --------------------------------------------------------------------------------------------
# CPU


@dataclass
class CpuSample:
    process_s: float
    server_s: float | None
    threads: dict[str, float]
    database_s: float | None = None
    """Every ``postgres`` process on the machine (backends, WAL writer, checkpointer)."""

    @staticmethod
    def now(server_pids: list[int]) -> CpuSample:
        return CpuSample(
            process_s=time.process_time(),
            server_s=cpu_of(server_pids),
            threads=thread_cpu(),
            database_s=cpu_of(postgres_pids(), vanished_ok=True),
        )


def cpu_figures(before: CpuSample, after: CpuSample, legs: int) -> dict[str, Any]:
    server = per(before.server_s, after.server_s, legs)
    threads = {
        kind: (after.threads.get(kind, 0.0) - before.threads.get(kind, 0.0)) * 1000 / legs
        for kind in dict.fromkeys([*before.threads, *after.threads])
    }
    return {
        "process_cpu_ms_per_leg": (after.process_s - before.process_s) * 1000 / legs,
        "server_cpu_ms_per_leg": server,
        "cpu_ms_per_leg_by_thread": threads,
        "database_cpu_ms_per_leg": per(before.database_s, after.database_s, legs),
    }


def per(before: float | None, after: float | None, count: int) -> float | None:
    """CPU milliseconds per item between two samples of seconds (``None`` if either is)."""
    if before is None or after is None or count == 0:
        return None
    return (after - before) * 1000 / count


# --------------------------------------------------------------------------------------------
# Processes and the machine


def server_pids() -> list[int]:
    """Child processes of this one named ``temporal`` (the dev server the SDK started)."""
    me = os.getpid()
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == me and comm.startswith("temporal"):
            pids.append(int(entry.name))
    return pids


def postgres_pids() -> list[int]:
    """Every process named ``postgres`` (the server and its backends). A backend that exits
    between two samples takes its CPU with it; the worker's pool keeps its connections."""
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("postgres"):
            pids.append(int(entry.name))
    return pids


def cpu_of(pids: list[int], *, vanished_ok: bool = False) -> float | None:
    """CPU seconds of the processes; ``None`` if there are none, or one is gone and
    ``vanished_ok`` is false."""
    if not pids:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            if vanished_ok:
                continue
            return None
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's live threads, by kind: the asyncio event loop (SDK
    plumbing, activity payload conversion, client calls), workflow tasks (the SDK's
    ``temporal_workflow_`` threads: workflow code, sandbox, workflow payload conversion),
    activities (ours and the floor's thread pools: activity code, database) and threads
    Python did not start (the SDK's Rust core)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    main = threading.main_thread().native_id
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for entry in Path("/proc/self/task").iterdir():
        tid = int(entry.name)
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(tid)
        if tid == main:
            kind = "event loop"
        elif name is None:
            kind = "sdk core"
        elif name.startswith("temporal_workflow_"):
            kind = "workflow tasks"
        elif name.startswith(ACTIVITY_THREADS):
            kind = "activities"
        else:
            kind = "other"
        out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return out


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "temporalio": version("temporalio"),
        "temporal_cli": temporal_binary(),
    }


def peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def bounded(handle: WorkflowHandle[Any, Any], waiting: Awaitable[T], timeout_s: float) -> T:
    """Wait for a result at most ``timeout_s``; on timeout terminate the run and raise."""
    try:
        return await asyncio.wait_for(waiting, timeout_s)
    except TimeoutError:
        await handle.terminate(reason="benchmark run timed out")
        raise TimeoutError(f"{handle.id} did not finish within {timeout_s:g} s") from None

"""The real worker, as a process of its own, that kills itself (SIGKILL, no cleanup) once at a
chosen step of a signal's execution. The fault suite starts it, lets it die, starts it again.

    python -m tests.faults.worker_process POINT MARKER_FILE SEND_LOG

POINT is one of ``KILL_POINTS``, ``SLICE_KILL_POINTS``, ``KEEPER_KILL_POINTS`` or ``none``.
The kill fires once: the first time the step is reached it creates MARKER_FILE (exclusively)
and kills the process; later processes find the file and carry on. Every order submission the
broker receives is appended to SEND_LOG with whether the broker already held that client order
id (a re-send absorbed by it).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from activities import execution, order_slice
from orchestrator.adapters.brokers.base import (
    AccountReading,
    Broker,
    BrokerOrder,
    BrokerPosition,
    KnownOrder,
    OrderTicket,
    Quote,
)
from orchestrator.adapters.brokers.paper import PaperBroker
from orchestrator.adapters.db import repository
from orchestrator.adapters.temporal import connect
from orchestrator.config import get_settings
from worker import build_activities, build_worker, worker_database

KILL_POINTS = {
    "planning": "inside the correlation activity, before the plan",
    "reserved": "after the leg's reservation and ledger entry committed, before sending",
    "sent": "right after the broker accepted the order, before its result is recorded",
    "following": "while following a working order's fills (second status poll)",
    "completion": "inside a completion child, right after its order was sent",
    "reroute": "inside a reroute child, before it reserves on the reserve account",
}
SLICE_KILL_POINTS = {
    "mid_slice": "inside a slice's send loop, right after the broker accepted its third order",
}
KEEPER_KILL_POINTS = {
    "stop_filled": "the broker has just reported a stop's fill, before the keeper booked it",
    "closing": "right after the broker accepted a position's closing order",
}


class Trap:
    def __init__(self, point: str, marker: Path) -> None:
        self.point = point
        self.marker = marker

    def spring(self, point: str) -> None:
        if point != self.point:
            return
        try:
            descriptor = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return  # fired in an earlier process
        os.write(descriptor, point.encode())
        os.close(descriptor)
        os.kill(os.getpid(), signal.SIGKILL)


class TrappedBroker:
    """The paper broker, with the trap at the broker-side steps and a log of every send."""

    def __init__(self, inner: PaperBroker, trap: Trap, send_log: Path) -> None:
        self._inner = inner
        self._trap = trap
        self._send_log = send_log
        self._polls: dict[str, int] = {}

    def submit(self, ticket: OrderTicket) -> BrokerOrder:
        if ticket.client_order_id.endswith(":1"):
            self._trap.spring("reserved")
        held = self._inner.status(ticket.client_order_id) is not None
        with self._send_log.open("a", encoding="utf-8") as log:
            log.write(f"{ticket.client_order_id} {'again' if held else 'new'}\n")
        order = self._inner.submit(ticket)
        self._trap.spring("sent")
        sequence = ticket.client_order_id.rsplit(":", 1)[-1]
        if sequence.isdigit() and sequence != "1":  # an entry's next order (not a stop's S1)
            self._trap.spring("completion")
        if sequence.startswith("C"):
            self._trap.spring("closing")
        return order

    def status(self, client_order_id: str) -> BrokerOrder | None:
        order = self._inner.status(client_order_id)
        polls = self._polls[client_order_id] = self._polls.get(client_order_id, 0) + 1
        if order is not None and polls >= 2 and order.executions:
            self._trap.spring("following")
        if order is not None and order.executions and client_order_id.rsplit(":", 1)[-1][0] == "S":
            self._trap.spring("stop_filled")
        return order

    def cancel(self, client_order_id: str) -> BrokerOrder | None:
        return self._inner.cancel(client_order_id)

    def open_orders(self, account_id: str) -> list[BrokerOrder]:
        return self._inner.open_orders(account_id)

    def working_orders(
        self, account_id: str, known: Sequence[KnownOrder]
    ) -> list[BrokerOrder] | None:
        return self._inner.working_orders(account_id, known)

    def replace(self, client_order_id: str, ticket: OrderTicket) -> BrokerOrder:
        return self._inner.replace(client_order_id, ticket)

    def quote(self, account_id: str, symbol: str) -> Quote | None:
        return self._inner.quote(account_id, symbol)

    def positions(self, account_id: str) -> list[BrokerPosition] | None:
        return self._inner.positions(account_id)

    def account_state(self, account_id: str) -> AccountReading | None:
        return self._inner.account_state(account_id)


def install_database_traps(trap: Trap) -> None:
    """Wrap the module-level functions the activities call at the other steps."""

    def wrap(module: Any, name: str, before: Callable[..., None]) -> None:
        original = getattr(module, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            before(*args, **kwargs)
            return original(*args, **kwargs)

        setattr(module, name, wrapped)

    wrap(execution, "correlate", lambda *a, **k: trap.spring("planning"))

    def before_reserve(_session: Any, request: Any, *_: Any, **__: Any) -> None:
        if request.origin_account_id is not None:
            trap.spring("reroute")

    wrap(repository, "reserve_risk", before_reserve)

    send = getattr(order_slice, "send")  # noqa: B009 (imported there from order_steps)
    sent = [0]

    def send_in_slice(*args: Any, **kwargs: Any) -> Any:
        order = send(*args, **kwargs)
        sent[0] += 1
        if sent[0] == 3:
            trap.spring("mid_slice")
        return order

    setattr(order_slice, "send", send_in_slice)  # noqa: B010


async def main(point: str, marker: Path, send_log: Path) -> None:
    settings = get_settings()
    trap = Trap(point, marker)
    install_database_traps(trap)
    db = worker_database(settings)
    client = await connect(settings)
    broker: Broker = TrappedBroker(PaperBroker(db), trap, send_log)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    with ThreadPoolExecutor(max_workers=settings.max_concurrent_activities) as pool:
        activities = build_activities(db, settings, broker)
        async with build_worker(client, settings, activities, pool):
            print("worker ready", flush=True)
            await stop.wait()
    db.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])))

"""A signal's orders in flight (``max_orders_in_flight``): how a large signal's batches share
the bound, and the slots one workflow's legs take before their first orders leave."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orchestrator.domain.settings import ExecutionSettings

ORDERS_SHARED_BY_LEGS = "orders-in-flight-shared-by-legs"
"""The ``workflow.patched`` id of :func:`orders_shares` (runs recorded before it replay the
equal shares of :func:`orders_per_batch`)."""


def orders_per_batch(execution: ExecutionSettings, batches: int) -> int:
    """Each batch's equal share of the signal's ``max_orders_in_flight`` (at least one): runs
    recorded before :data:`ORDERS_SHARED_BY_LEGS`."""
    return max(1, execution.max_orders_in_flight // batches)


def orders_shares(limit: int, legs: Sequence[int]) -> list[int]:
    """Each batch's share of the signal's ``limit`` of orders in flight, in proportion to its
    legs (largest remainders first, ties to the earlier batch), at least one each (taken from
    the largest share): the shares add up to ``limit`` (to one per batch when the batches
    outnumber it), and a limit of at least the signal's legs gives every leg a slot (an equal
    share did not: 5,000 among 17 batches of up to 300 legs is 294 each)."""
    total = sum(legs)
    if total == 0:
        return [max(1, limit // len(legs))] * len(legs) if legs else []
    shares = [limit * n // total for n in legs]
    by_remainder = sorted(range(len(legs)), key=lambda i: (-(limit * legs[i] % total), i))
    for i in by_remainder[: limit - sum(shares)]:
        shares[i] += 1
    for i, share in enumerate(shares):
        if share == 0:
            # A slot at least, taken from the largest share while one has more than one.
            largest = max(range(len(shares)), key=lambda j: (shares[j], -j))
            if shares[largest] > 1:
                shares[largest] -= 1
            shares[i] = 1
    return shares


class OrderSlots:
    """At most ``limit`` orders of one workflow working at once, handed out first come, first
    served. A leg due while all are taken waits (still WAITING), and an operator's stop wakes
    it like a timer's. Deterministic: grants follow the order in which legs asked, and a slot
    freed is handed to the next leg in the same workflow task.

    It keeps the backlog in the workflow rather than in the task queue: a server matches a task
    to a waiting poller at once, but one it cannot match goes to its backlog, which costs it
    more per task the longer the backlog grows (see docs/performance.md)."""

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiting: deque[str] = deque()
        self._granted: set[str] = set()

    @property
    def full(self) -> bool:
        """A leg asking now would wait."""
        return self._free == 0 or bool(self._waiting)

    async def acquire(self, key: str, stopped: Callable[[], bool]) -> bool:
        """Wait for a slot for ``key``: True once it holds one (to be released), False when
        ``stopped`` became true first (it holds none)."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return True
        self._waiting.append(key)
        try:
            await workflow.wait_condition(lambda: key in self._granted or stopped())
        except BaseException:
            self._leave(key)
            raise
        if key in self._granted:
            self._granted.discard(key)
            return True
        self._leave(key)
        return False

    def release(self) -> None:
        if self._waiting:
            self._granted.add(self._waiting.popleft())
        else:
            self._free += 1

    def _leave(self, key: str) -> None:
        """``key`` stops waiting: out of the queue, or, if a slot was already granted to it,
        the slot passes on."""
        if key in self._granted:
            self._granted.discard(key)
            self.release()
        else:
            self._waiting.remove(key)

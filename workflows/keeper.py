"""The link from a workflow that runs legs (a signal's, or a batch's) to the keeper of the
positions they open: started at the first fill (or when a working leg is cancelled, as what it
filled is a position too), told what each account's entries filled, and that the legs are done.

The legs that end in one workflow task (a slice's hundred, say) tell the keeper in one signal:
each leg adds its fill and waits until it is delivered; the signal leaves when every coroutine
this task woke has run (a condition is checked only then), so it holds all their fills.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal

from temporalio import workflow
from temporalio.workflow import ChildWorkflowHandle, ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from orchestrator.domain import ids, positions
    from orchestrator.domain.contracts.positions import (
        EntriesDone,
        PositionFill,
        PositionFills,
        PositionsInput,
        PositionsResult,
    )
    from orchestrator.domain.positions import Contract
    from orchestrator.domain.report import AccountReport
    from orchestrator.domain.settings import ExecutionSettings
    from orchestrator.domain.signal import Signal
    from workflows.positions import PositionsWorkflow
    from workflows.steps import child_search_attributes


ONE_KEEPER_SIGNAL_PER_FILL = "one-keeper-signal-per-filled-order"
"""The ``workflow.patched`` id under which a leg whose first order filled whole tells its
keeper once (its final fill, from its report line) instead of twice; runs recorded before it
replay both signals."""
FILLS_TOLD_TOGETHER = "keeper-told-fills-together"
"""The ``workflow.patched`` id under which the legs that end in one workflow task tell their
keeper in one ``positions_filled`` signal; runs recorded before it replay one
``position_filled`` signal per fill."""
FILLS_PER_SIGNAL = 500
"""At most this many fills in one signal (about 150 KB), far below Temporal's payload limit."""

Keeper = ChildWorkflowHandle[PositionsWorkflow, PositionsResult]


class KeeperLink:
    """One per workflow running legs; its keeper's id is that workflow's, ``/positions``."""

    def __init__(self, signal: Signal, execution: ExecutionSettings) -> None:
        self._signal = signal
        self._execution = execution
        self._starting: asyncio.Task[Keeper] | None = None
        self._filled_accounts: set[str] = set()
        self._next: tuple[list[PositionFill], asyncio.Task[None]] | None = None
        """The fills of this workflow task not yet sent, and the task that will send them."""

    async def position_line(self, line: AccountReport) -> AccountReport:
        """The line with the position its fills opened (the keeper told of its final total)."""
        if (
            line.filled <= 0
            or line.average_price is None
            or line.contract is None
            or line.broker is None
            or line.broker_symbol is None
        ):
            return line
        broker, broker_symbol = line.broker, line.broker_symbol
        await self.opened(
            line.account_id,
            broker=broker,
            broker_symbol=broker_symbol,
            contract=line.contract,
            filled=line.filled,
            average=line.average_price,
            final=True,
        )
        signal = self._signal
        return line.model_copy(
            update={
                "position": positions.opened(
                    signal.signal_id,
                    signal.side,
                    signal.stop,
                    signal.take_profit,
                    account_id=line.account_id,
                    broker=broker,
                    broker_symbol=broker_symbol,
                    contract=line.contract,
                    entry_quantity=line.filled,
                    average_entry=line.average_price,
                )
            }
        )

    async def opened(
        self,
        account_id: str,
        *,
        broker: str,
        broker_symbol: str,
        contract: Contract,
        filled: Decimal,
        average: Decimal,
        final: bool = False,
    ) -> None:
        """Tell this workflow's position keeper (started at the first fill) what the account's
        entries filled in all."""
        keeper = await self.started()
        self._filled_accounts.add(account_id)
        fill = PositionFill(
            account_id=account_id,
            broker=broker,
            broker_symbol=broker_symbol,
            contract=contract,
            entry_quantity=filled,
            average_entry=average,
            final=final,
        )
        # Shielded: a leg cancelled while it tells the keeper must not cancel the telling.
        if not workflow.patched(FILLS_TOLD_TOGETHER):
            await asyncio.shield(
                asyncio.ensure_future(keeper.signal(PositionsWorkflow.position_filled, fill))
            )
            return
        if self._next is None:
            fills: list[PositionFill] = []
            self._next = (fills, asyncio.create_task(self._tell(keeper, fills)))
        fills, telling = self._next
        fills.append(fill)
        await asyncio.shield(telling)

    async def _tell(self, keeper: Keeper, fills: list[PositionFill]) -> None:
        """Send ``fills`` once every leg woken in this workflow task has added its own."""
        await workflow.wait_condition(lambda: True)
        self._next = None
        await asyncio.gather(
            *(
                keeper.signal(
                    PositionsWorkflow.positions_filled,
                    PositionFills(fills=fills[start : start + FILLS_PER_SIGNAL]),
                )
                for start in range(0, len(fills), FILLS_PER_SIGNAL)
            )
        )

    async def started(self) -> Keeper:
        """The keeper, started once, in a task of its own: a leg cancelled while it waits for
        the start (an operator's cancel of a working leg) must not cancel the keeper with it,
        as cancelling the task that awaits a child's start would."""
        if self._starting is None:
            self._starting = asyncio.create_task(self._start())
        return await asyncio.shield(self._starting)

    async def _start(self) -> Keeper:
        signal = self._signal
        owner = workflow.info().workflow_id
        return await workflow.start_child_workflow(
            PositionsWorkflow.run,
            PositionsInput(signal=signal, execution=self._execution),
            id=ids.positions_workflow_id(owner),
            # It outlives the signal's execution: for as long as a position is open.
            parent_close_policy=ParentClosePolicy.ABANDON,
            search_attributes=child_search_attributes(signal),
            static_summary=f"positions of {owner}",
        )

    async def entries_done(self, legs: Sequence[str] | None = None) -> None:
        """Tell the keeper, if the legs opened any position, that no more will open; with
        ``legs`` (a batch's), that its positions are those accounts' and the reroute targets
        they filled, not the whole signal's (another batch's keeper holds those)."""
        if self._starting is not None:
            keeper = await self._starting
            filled = sorted(self._filled_accounts)
            scope = None if legs is None else sorted(set(legs) | self._filled_accounts)
            await keeper.signal(
                PositionsWorkflow.entries_done, EntriesDone(accounts=filled, scope=scope)
            )

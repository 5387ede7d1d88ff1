"""An action's activities (MODIFY, CLOSE, FLATTEN): they read the ledger's positions and reach
the target signal and the positions' keepers through the Temporal client, so they are
``async def`` on the worker's event loop (the ledger is read on a thread)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from temporalio import activity
from temporalio.client import Client

from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.domain import ids
from orchestrator.domain.actions import AccountOutcome, ActionKind
from orchestrator.domain.contracts.actions import (
    ActionInput,
    ActionTargets,
    DeliverRequest,
    HeldPosition,
    KeeperTarget,
    StopEntriesRequest,
    StopEntriesResult,
)
from orchestrator.domain.contracts.activities import Actions
from orchestrator.domain.values import Side
from orchestrator.services import actions

HEARTBEAT_S = 5.0
"""While it waits on a signal or a keeper, the activity beats this often."""


class ActionActivities(Actions):
    """The action's activities (see :class:`~orchestrator.domain.contracts.activities.Actions`)."""

    def __init__(self, db: Database, client: Client) -> None:
        self._db = db
        self._client = client

    @activity.defn
    async def action_targets(self, request: ActionInput) -> ActionTargets:
        action = request.action
        running = False
        if action.signal_id is not None:
            running = await actions.is_running(
                self._client, ids.signal_workflow_id(action.signal_id)
            )
        return await asyncio.to_thread(self._targets, request, running)

    def _targets(self, request: ActionInput, running: bool) -> ActionTargets:
        action = request.action
        with self._db.transaction() as session:
            # Checked here too, not only at submission: an action started from Temporal itself
            # (the CLI, the Web UI) never passed submit_action. A halt means nothing leaves.
            if repository.is_halted(session):
                why = repository.halt_reason(session) or "no reason recorded"
                return ActionTargets(
                    refusal=f"trading is halted ({why}): nothing leaves until unhalt"
                )
            if action.signal_id is not None and not repository.signal_symbols(
                session, [action.signal_id]
            ):
                return ActionTargets(refusal=f"no signal {action.signal_id} was ever submitted")
            found = repository.list_positions(session, signal_id=action.signal_id, open_only=True)
            symbols = repository.signal_symbols(session, {p.signal_id for p in found})
        chosen = [
            p
            for p in found
            if (action.accounts is None or p.account_id in action.accounts)
            and (action.symbol is None or symbols.get(p.signal_id) == action.symbol)
        ]
        keepers: dict[str, KeeperTarget] = {}
        if action.signal_id is not None:
            # Its keeper, whether or not the ledger shows a position of it yet.
            main = ids.positions_workflow_id(ids.signal_workflow_id(action.signal_id))
            keepers[main] = KeeperTarget(
                keeper_workflow_id=main, signal_id=action.signal_id, accounts=action.accounts
            )
        for position in chosen:
            if action.action is ActionKind.FLATTEN:
                target = keepers.setdefault(
                    position.keeper_workflow_id,
                    KeeperTarget(
                        keeper_workflow_id=position.keeper_workflow_id,
                        signal_id=position.signal_id,
                        accounts=[],
                    ),
                )
                assert target.accounts is not None
                target.accounts.append(position.account_id)
            else:
                keepers.setdefault(
                    position.keeper_workflow_id,
                    KeeperTarget(
                        keeper_workflow_id=position.keeper_workflow_id,
                        signal_id=position.signal_id,
                        accounts=action.accounts,
                    ),
                )
        return ActionTargets(
            keepers=[keepers[k] for k in sorted(keepers)],
            positions=[
                HeldPosition(
                    signal_id=p.signal_id,
                    account_id=p.account_id,
                    broker=p.broker,
                    broker_symbol=p.broker_symbol,
                    side=Side(p.side),
                    open_quantity=p.open_quantity,
                )
                for p in chosen
            ],
            signal_running=running,
        )

    @activity.defn
    async def stop_entries(self, request: StopEntriesRequest) -> StopEntriesResult:
        async with _beating():
            return await actions.stop_entries(self._client, request.signal_id, request.action_id)

    @activity.defn
    async def deliver(self, request: DeliverRequest) -> list[AccountOutcome]:
        async with _beating():
            return await actions.hand_to_keeper(
                self._client, request.keeper_workflow_id, request.action
            )

    def all(self) -> list[Callable[..., object]]:
        return [self.action_targets, self.stop_entries, self.deliver]


@contextlib.asynccontextmanager
async def _beating() -> AsyncIterator[None]:
    """Heartbeat while the body waits on another workflow (a lost worker is found out)."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(HEARTBEAT_S)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()

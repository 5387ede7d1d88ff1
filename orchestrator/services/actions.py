"""Submitting an action (MODIFY, CLOSE, FLATTEN): the one path the starter and the webhook go
through. An action is a signal of its own: ``signal-{action_id}``, started once."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.config import Settings
from orchestrator.domain import ids
from orchestrator.domain import search_attributes as sa
from orchestrator.domain.actions import AccountOutcome, ActionKind, ActionReport, TradeAction
from orchestrator.domain.contracts.actions import ActionInput, StopEntriesResult
from orchestrator.domain.contracts.operators import CancelSignalRequest
from orchestrator.domain.contracts.positions import KeeperAction, PositionsResult
from orchestrator.domain.errors import DuplicateSignal, SystemHalted, ValidationFailed
from orchestrator.domain.report import SignalReport, SignalStatus
from orchestrator.services.submit import parse_model
from workflows.actions import TradeActionWorkflow
from workflows.positions import PositionsWorkflow
from workflows.signal import SignalExecutionWorkflow


def parse_action(raw: str | bytes | dict[str, Any], source: str = "action") -> TradeAction:
    """Validate an action from JSON text or a mapping; :class:`ValidationFailed` names fields."""
    return parse_model(raw, TradeAction, source)


async def submit_action(
    client: Client, db: Database, settings: Settings, action: TradeAction
) -> WorkflowHandle[TradeActionWorkflow, ActionReport]:
    """Start ``signal-{action_id}``, or refuse, having started nothing: the kill switch is on
    (a halt means nothing leaves), the signal it acts on was never submitted, or its id is a
    signal's or an action's already."""
    symbol = await asyncio.to_thread(_check, db, action)
    try:
        return await client.start_workflow(
            TradeActionWorkflow.run,
            ActionInput(action=action),
            id=ids.signal_workflow_id(action.action_id),
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.SIGNAL_ID, action.action_id),
                    SearchAttributePair(sa.SIGNAL_STATUS, SignalStatus.SUBMITTED.value),
                    *([SearchAttributePair(sa.SYMBOL, symbol)] if symbol else []),
                ]
            ),
            static_summary=_summary(action),
        )
    except WorkflowAlreadyStartedError as exc:
        raise DuplicateSignal(action.action_id) from exc


def _check(db: Database, action: TradeAction) -> str | None:
    """The symbol the action is about (the target signal's, or FLATTEN's own)."""
    with db.transaction() as session:
        if repository.is_halted(session):
            raise SystemHalted(repository.halt_reason(session) or "no reason recorded")
        if repository.signal_symbols(session, [action.action_id]):
            raise DuplicateSignal(action.action_id)
        if action.signal_id is None:
            return action.symbol
        symbols = repository.signal_symbols(session, [action.signal_id])
    if not symbols:
        raise ValidationFailed(
            "action", [("signal_id", f"no signal {action.signal_id!r} was ever submitted")]
        )
    return symbols[action.signal_id]


def _summary(action: TradeAction) -> str:
    scope = "all accounts" if action.accounts is None else ", ".join(action.accounts)
    if action.action is ActionKind.MODIFY:
        levels = [
            f"{name} {value}"
            for name, value in (("stop", action.stop), ("take-profit", action.take_profit))
            if value is not None
        ]
        return f"MODIFY {action.signal_id}: {', '.join(levels)} ({scope})"
    if action.action is ActionKind.CLOSE:
        return f"CLOSE {action.fraction:%} of {action.signal_id} ({scope})"
    return f"FLATTEN {action.symbol or 'every symbol'} ({scope})"


# --------------------------------------------------------------------------------------------
# What an action's activities do through the client


async def is_running(client: Client, workflow_id: str) -> bool:
    """Whether the workflow exists and runs (a signal still executing, a keeper still open)."""
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return description.status == WorkflowExecutionStatus.RUNNING


async def stop_entries(client: Client, signal_id: str, action_id: str) -> StopEntriesResult:
    """Cancel a signal still executing on behalf of the action that closes it (its waiting legs
    end CANCELLED, its working entries are cancelled), then wait for its report: the keepers
    its legs and its batches' legs started."""
    workflow_id = ids.signal_workflow_id(signal_id)
    handle: WorkflowHandle[SignalExecutionWorkflow, SignalReport] = client.get_workflow_handle_for(
        SignalExecutionWorkflow.run, workflow_id
    )
    stopped = cancelled = 0
    with contextlib.suppress(WorkflowUpdateFailedError, RPCError):  # it ended first
        result = await handle.execute_update(
            SignalExecutionWorkflow.cancel_signal,
            CancelSignalRequest(
                operator=f"signal {action_id}", reason=f"closed by signal {action_id}"
            ),
            id=f"close-by-{action_id}",
        )
        stopped, cancelled = result.legs_stopped, result.orders_cancelled
    report = await handle.result()
    return StopEntriesResult(
        keepers=[ids.positions_workflow_id(owner) for owner in [workflow_id, *report.batches]],
        legs_stopped=stopped,
        orders_cancelled=cancelled,
    )


async def hand_to_keeper(
    client: Client, keeper_workflow_id: str, action: KeeperAction
) -> list[AccountOutcome]:
    """The keeper's answer to the action (its ``act`` update, whose id is the action's, so a
    retry finds the same update); nothing when the keeper never started (nothing filled there)
    or has ended without it (every position it held closed before)."""
    handle: WorkflowHandle[PositionsWorkflow, PositionsResult] = client.get_workflow_handle_for(
        PositionsWorkflow.run, keeper_workflow_id
    )
    if await is_running(client, keeper_workflow_id):
        with contextlib.suppress(RPCError):  # it ended meanwhile: asked below
            return await handle.execute_update(PositionsWorkflow.act, action, id=action.action_id)
    # Never started, or ended: an earlier try may have handed it over already (a worker lost
    # while the keeper carried it out, which then closed its last position): its answer.
    try:
        outcome = await handle.get_update_handle_for(
            PositionsWorkflow.act, action.action_id
        ).result()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return []  # never handed over: nothing of it there
    return outcome

"""Activities of operator control, run on the worker's event loop: they need the Temporal client
(the history of the workflow that asks, visibility to reach the others) as well as the database,
which they reach on a thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.domain import ids
from orchestrator.domain.contracts.activities import Control
from orchestrator.domain.contracts.operators import (
    ActionReceipt,
    ActionRecorded,
    ActionVia,
    CancellationRequest,
    HaltRequest,
    KillSwitch,
    KillSwitchResult,
    UnhaltRequest,
)
from orchestrator.services import operators


class ControlActivities(Control):
    """The control activities (see :class:`~orchestrator.domain.contracts.activities.Control`)."""

    def __init__(self, db: Database, client: Client) -> None:
        self._db = db
        self._client = client

    @activity.defn
    async def record_operator_action(self, receipt: ActionReceipt) -> ActionRecorded:
        """Write a workflow's receipt of an operator action to ``operator_actions``, with the
        sending client's identity read from the workflow's history; once per receipt."""
        identity = await self._identity(receipt)
        await asyncio.to_thread(self._write, receipt, identity)
        return ActionRecorded(identity=identity)

    def _write(self, receipt: ActionReceipt, identity: str | None) -> None:
        with self._db.transaction() as session:
            repository.record_action_receipt(session, receipt, identity, datetime.now(UTC))

    async def _identity(self, receipt: ActionReceipt) -> str | None:
        """The identity of the client that sent this receipt's signal, update or cancellation,
        as Temporal recorded it in the history."""
        handle = self._client.get_workflow_handle(receipt.workflow_id, run_id=receipt.run_id)
        wanted = _matcher(receipt)
        found: str | None = None
        async for event in handle.fetch_history_events():
            identity = wanted(event)
            if identity is not None:
                found = identity
                if receipt.via is not ActionVia.CANCELLATION:
                    break  # a cancellation: the last request counts
        return found or None

    @activity.defn
    async def apply_kill_switch(self, request: KillSwitch) -> KillSwitchResult:
        """A halt (or unhalt) one workflow received by hand is the kill switch: persisted, then
        sent to every other running signal workflow."""
        await asyncio.to_thread(self._persist, request)
        message: HaltRequest | UnhaltRequest = (
            HaltRequest(
                operator=request.operator,
                reason=request.reason,
                cancel_working=request.cancel_working,
                from_kill_switch=True,
            )
            if request.halted
            else UnhaltRequest(
                operator=request.operator, reason=request.reason, from_kill_switch=True
            )
        )
        out = await operators.broadcast_kill_switch(
            self._client,
            message,
            exclude=request.origin_workflow_id,
            update_id=f"kill-switch:{request.origin_workflow_id}:{request.origin_key}",
        )
        return KillSwitchResult(reached=out.reached)

    def _persist(self, request: KillSwitch) -> None:
        with self._db.transaction() as session:
            repository.set_halt(
                session,
                halted=request.halted,
                operator=request.operator,
                reason=request.reason,
                now=datetime.now(UTC),
            )

    @activity.defn
    async def cancellation_request(self, workflow_id: str) -> CancellationRequest:
        """Who asked Temporal to cancel the calling workflow, and why."""
        info = activity.info()
        handle = self._client.get_workflow_handle(workflow_id, run_id=info.workflow_run_id)
        identity, reason = None, ""
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
                attrs = event.workflow_execution_cancel_requested_event_attributes
                identity, reason = attrs.identity or None, attrs.cause
        return CancellationRequest(identity=identity, reason=reason)

    def all(self) -> list[Callable[..., object]]:
        return [self.record_operator_action, self.apply_kill_switch, self.cancellation_request]


def _matcher(receipt: ActionReceipt) -> Callable[[HistoryEvent], str | None]:
    """Picks the event of a receipt out of the history: its identity, or ``None``."""
    if receipt.via is ActionVia.UPDATE:
        update_id = ids.update_id_of(receipt.key)

        def update(event: HistoryEvent) -> str | None:
            if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
                return None
            meta = event.workflow_execution_update_accepted_event_attributes.accepted_request.meta
            return meta.identity if meta.update_id == update_id else None

        return update
    if receipt.via is ActionVia.CANCELLATION:

        def cancellation(event: HistoryEvent) -> str | None:
            if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
                return None
            return event.workflow_execution_cancel_requested_event_attributes.identity

        return cancellation
    name, count = ids.signal_of(receipt.key)
    seen = [0]

    def signal(event: HistoryEvent) -> str | None:
        if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            return None
        attrs = event.workflow_execution_signaled_event_attributes
        if attrs.signal_name != name:
            return None
        seen[0] += 1
        return attrs.identity if seen[0] == count else None

    return signal

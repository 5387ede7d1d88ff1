"""Operator controls inside a signal's workflows: what operators have told a workflow (paused
accounts, halt, cancel), and the signal and update handlers the signal workflow and its batch
children share."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from orchestrator.domain import ids
    from orchestrator.domain.contracts.activities import Control
    from orchestrator.domain.contracts.operators import (
        ActionReceipt,
        ActionVia,
        CancelSignalRequest,
        HaltRequest,
        KillSwitch,
        OperatorAction,
        PauseAccount,
        ResumeAccount,
        StopResult,
        UnhaltRequest,
    )
    from orchestrator.domain.contracts.payloads import ErrorType
    from orchestrator.domain.report import LegStatus
    from workflows.steps import CONTROL_STEP, DATABASE_RETRY, DATABASE_STEP

T = TypeVar("T")


@dataclass(frozen=True)
class Stop:
    status: LegStatus
    reason: str
    reroute: bool = False


class Controls:
    """What operators have told this workflow: paused accounts, halt, cancel."""

    def __init__(self) -> None:
        self.paused: dict[str, PauseAccount] = {}
        self.halt: HaltRequest | None = None
        self.cancel: CancelSignalRequest | None = None

    def stop_for(self, account_id: str) -> Stop | None:
        """Whether a leg of ``account_id`` that has not sent its order must stop now."""
        if self.cancel is not None:
            return Stop(LegStatus.CANCELLED, _by("signal cancelled", self.cancel))
        if self.halt is not None:
            return Stop(LegStatus.HALTED, _by("trading halted", self.halt))
        pause = self.paused.get(account_id)
        if pause is not None:
            return Stop(LegStatus.SKIPPED_PAUSED, _by("account paused", pause), pause.reroute)
        return None


def _by(what: str, action: PauseAccount | HaltRequest | CancelSignalRequest) -> str:
    return f"{what} by {action.operator or 'unknown'}: {action.reason or 'no reason given'}"


def _update_key() -> str:
    """The receipt key of the update being handled (called in an update handler only)."""
    info = workflow.current_update_info()
    if info is None:
        raise RuntimeError("not in an update handler")
    return ids.update_receipt_key(info.id)


class LegsInFlight(Protocol):
    """What operator controls need of a workflow's running legs (``workflows.legs.LegRunner``)."""

    def stop(self, *, cancel_working: bool) -> StopResult: ...

    def note_pause_after_send(self, pause: PauseAccount) -> None: ...


class Refused(ApplicationError):
    """An operator request refused by a validator: one sentence, no stack trace (see
    ``orchestrator.adapters.temporal.RefusalFailureConverter``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type=ErrorType.REFUSED, non_retryable=True)


def _require_operator_and_reason(action: str, request: OperatorAction) -> None:
    if not request.operator.strip():
        raise Refused(f"{action} refused: say who you are (operator).")
    if not request.reason.strip():
        raise Refused(f"{action} refused: give a reason.")


class OperatorControlled:
    """Signal and update handlers shared by the signal workflow and its batch children.

    Pause and resume are signals (one account, fire and forget); halt and cancel are updates
    with validators, so an operator gets an answer, or a refusal that says why. Every one lands
    in this workflow's history with the operator and the reason, and this workflow records its
    receipt in ``operator_actions`` (once, whatever sent it: starter, ``temporal`` CLI, Web UI).
    A halt or unhalt sent to this workflow by hand is the kill switch: it is persisted and
    broadcast to every running signal. Temporal's own cancellation request is handled like
    ``cancel_signal``.
    """

    _controls: Controls
    _runner: LegsInFlight | None
    _signals_received: Counter[str]
    _batch_ids: list[str]

    @workflow.signal
    async def pause_account(self, request: PauseAccount) -> None:
        """Legs of this account that have not sent their order stop now (SKIPPED_PAUSED, or
        rerouted). A leg whose order is already at the broker is not touched."""
        key = self._signal_key(OperatorControlled.pause_account)
        self._controls.paused[request.account_id] = request
        if self._runner is not None:
            self._runner.note_pause_after_send(request)
        await self._record("pause_account", ActionVia.SIGNAL, key, request, request.account_id)

    @workflow.signal
    async def resume_account(self, request: ResumeAccount) -> None:
        """Legs of this account not yet decided go ahead again."""
        key = self._signal_key(OperatorControlled.resume_account)
        self._controls.paused.pop(request.account_id, None)
        await self._record("resume_account", ActionVia.SIGNAL, key, request, request.account_id)

    @workflow.update
    async def halt(self, request: HaltRequest) -> StopResult:
        """Kill switch: no leg of this workflow sends an order after this; sent here by hand,
        it is thrown for every signal too (persisted and broadcast)."""
        key = _update_key()
        self._controls.halt = request
        result = self._stop(cancel_working=request.cancel_working)
        outcome: dict[str, int | str | bool] = {
            "legs_stopped": result.legs_stopped,
            "orders_cancelled": result.orders_cancelled,
        }
        if not request.from_kill_switch:
            outcome["kill_switch_reached"] = await self._throw_kill_switch(request, key)
        await self._record("halt", ActionVia.UPDATE, key, request, outcome=outcome)
        return result

    @halt.validator
    def _validate_halt(self, request: HaltRequest) -> None:
        _require_operator_and_reason("halt", request)

    @workflow.signal
    async def unhalt(self, request: UnhaltRequest) -> None:
        """Legs not yet decided go ahead again; sent here by hand, it lifts the kill switch."""
        key = self._signal_key(OperatorControlled.unhalt)
        self._controls.halt = None
        outcome: dict[str, int | str | bool] = {}
        if not request.from_kill_switch:
            outcome["kill_switch_reached"] = await self._throw_kill_switch(request, key)
        await self._record("unhalt", ActionVia.SIGNAL, key, request, outcome=outcome)

    @workflow.update
    async def cancel_signal(self, request: CancelSignalRequest) -> StopResult:
        """Cancel this signal: waiting legs end CANCELLED, working orders are cancelled at the
        broker, children are cancelled; the workflow then completes with its report."""
        key = _update_key()
        result = await self._cancel(request)
        await self._record(
            "cancel_signal",
            ActionVia.UPDATE,
            key,
            request,
            outcome={
                "legs_stopped": result.legs_stopped,
                "orders_cancelled": result.orders_cancelled,
            },
        )
        return result

    @cancel_signal.validator
    def _validate_cancel(self, request: CancelSignalRequest) -> None:
        _require_operator_and_reason("cancel", request)

    async def _on_cancellation_requested(self) -> None:
        """Temporal's cancellation request (the Web UI's Request Cancellation, ``temporal
        workflow cancel``, a parent's cancel) is handled like ``cancel_signal``: waiting legs
        stop, working orders are cancelled at the broker, children are cancelled, and the run
        completes with its report, status CANCELLED. Who asked is read from the history."""
        reason = workflow.cancellation_reason() or "cancellation requested in Temporal"
        placeholder = CancelSignalRequest(operator="temporal", reason=reason)
        result = await self._cancel(placeholder)
        asked = await workflow.execute_activity_method(
            Control.cancellation_request,
            workflow.info().workflow_id,
            start_to_close_timeout=DATABASE_STEP,
            retry_policy=DATABASE_RETRY,
            summary="who requested cancellation",
        )
        request = CancelSignalRequest(
            operator=asked.identity or "temporal", reason=asked.reason or reason
        )
        self._controls.cancel = request
        await self._record(
            "cancel_signal",
            ActionVia.CANCELLATION,
            ids.CANCELLATION_KEY,
            request,
            outcome={
                "legs_stopped": result.legs_stopped,
                "orders_cancelled": result.orders_cancelled,
            },
        )

    async def _cancel(self, request: CancelSignalRequest) -> StopResult:
        self._controls.cancel = request
        result = self._stop(cancel_working=True)
        for batch in self._batch_ids:
            # Each batch handles the cancellation like this workflow does and reports.
            await workflow.get_external_workflow_handle(batch).cancel()
        return result

    def _stop(self, *, cancel_working: bool) -> StopResult:
        if self._runner is None:  # still planning: every leg will stop before its timer
            return StopResult(
                workflow_id=workflow.info().workflow_id, legs_stopped=0, orders_cancelled=0
            )
        return self._runner.stop(cancel_working=cancel_working)

    async def _throw_kill_switch(self, request: HaltRequest | UnhaltRequest, key: str) -> int:
        result = await workflow.execute_activity_method(
            Control.apply_kill_switch,
            KillSwitch(
                halted=isinstance(request, HaltRequest),
                operator=request.operator or "unknown",
                reason=request.reason or "no reason given",
                cancel_working=getattr(request, "cancel_working", False),
                origin_workflow_id=workflow.info().workflow_id,
                origin_key=key,
            ),
            start_to_close_timeout=CONTROL_STEP,
            retry_policy=DATABASE_RETRY,
            summary="kill switch: persist and broadcast",
        )
        return len(result.reached)

    def _signal_key(self, handler: Callable[..., object]) -> str:
        """This run's n-th receipt of the signal ``handler`` handles (named by its definition):
        deterministic, and how the recording activity finds the signal's event (and sender) in
        the history."""
        name = handler.__name__
        self._signals_received[name] += 1
        return ids.signal_receipt_key(name, self._signals_received[name])

    async def _record(
        self,
        action: str,
        via: ActionVia,
        key: str,
        request: OperatorAction,
        target: str | None = None,
        *,
        outcome: dict[str, int | str | bool] | None = None,
    ) -> None:
        info = workflow.info()
        await workflow.execute_activity_method(
            Control.record_operator_action,
            ActionReceipt(
                workflow_id=info.workflow_id,
                run_id=info.run_id,
                action=action,
                via=via,
                key=key,
                target=target,
                operator=request.operator or "unknown",
                reason=request.reason or "no reason given",
                outcome=outcome or {},
            ),
            start_to_close_timeout=CONTROL_STEP,
            retry_policy=DATABASE_RETRY,
            summary=f"record {action}",
        )

    async def _run_cancellable(self, work: Coroutine[Any, Any, T]) -> T:
        """Run the workflow's work to its end, handling Temporal's cancellation request like
        ``cancel_signal`` instead of abandoning the work (and its working orders)."""
        task = asyncio.ensure_future(work)
        while True:
            try:
                result = await asyncio.shield(task)
                break
            except asyncio.CancelledError:
                if task.done():
                    raise
                await self._on_cancellation_requested()
        # Handlers (recording, the kill switch) finish before the run does.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result


OPERATOR_ACTIONS: tuple[str, ...] = tuple(
    cast(Callable[..., Any], handler).__name__
    for handler in (
        OperatorControlled.pause_account,
        OperatorControlled.resume_account,
        OperatorControlled.halt,
        OperatorControlled.unhalt,
        OperatorControlled.cancel_signal,
    )
)
"""The signals and updates operators send a signal workflow, by name (for metrics' labels)."""

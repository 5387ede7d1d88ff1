"""``SignalExecutionWorkflow``: one trade signal, planned and executed across the book; and
``LegBatchWorkflow``, which runs a slice of a large signal's legs."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from orchestrator.domain import ids, paging, planning, reports
    from orchestrator.domain import search_attributes as sa
    from orchestrator.domain.book import BookSnapshot
    from orchestrator.domain.contracts.operators import (
        ActionReceipt,
        ActionRecorded,
        ActionVia,
        CancellationRequest,
        CancelSignalRequest,
        HaltRequest,
        KillSwitch,
        KillSwitchResult,
        OperatorAction,
        PauseAccount,
        ResumeAccount,
        StopResult,
        UnhaltRequest,
    )
    from orchestrator.domain.contracts.payloads import (
        ActivityName,
        ErrorType,
        LegBatchInput,
        LegBatchResult,
        SignalWorkflowInput,
        SnapshotRequest,
    )
    from orchestrator.domain.correlation import CorrelationRequest, CorrelationResult
    from orchestrator.domain.planning.decisions import Plan
    from orchestrator.domain.progress import LegProgress, SignalProgress
    from orchestrator.domain.report import AccountReport, ExecutionReport, LegStatus
    from orchestrator.domain.settings import PlanSettings, ServiceSettings
    from orchestrator.domain.signal import Signal
    from workflows.legs import (
        BOOK_READ,
        DATABASE_RETRY,
        DATABASE_STEP,
        ORDERS_IN_FLIGHT,
        Controls,
        LegRunner,
        child_search_attributes,
        orders_per_batch,
    )


PLANNING_IN_ONE_READ = "planning-in-one-read"
"""Patch: the snapshot activity also correlates a book that fits in one page; the correlation
activity runs only for a paged book (or when the result would not fit)."""
BOUNDED_BATCHES = "bounded-batches"
"""Patch: batches of at most ``paging.MAX_BATCH_LEGS`` legs and ``paging.BATCH_BYTES``, slim
legs, denials included; also when the report alone would not fit the signal's result."""


T = TypeVar("T")
PagedRequest = TypeVar("PagedRequest", SnapshotRequest, CorrelationRequest)
Page = TypeVar("Page", BookSnapshot, CorrelationResult)


async def _read_pages(
    activity: ActivityName, request: PagedRequest, result_type: type[Page], summary: str
) -> list[Page]:
    """Every page of a paged book read: the first alone (it says how many there are), then the
    rest at once."""

    async def page(n: int) -> Page:
        result: Page = await workflow.execute_activity(
            activity,
            request.model_copy(update={"page": n}),
            result_type=result_type,
            start_to_close_timeout=BOOK_READ,
            schedule_to_close_timeout=timedelta(minutes=5),
            retry_policy=DATABASE_RETRY,
            summary=summary if n == 0 else f"{summary}: page {n + 1}",
        )
        return result

    pages = [await page(0)]
    pages.extend(await asyncio.gather(*(page(n) for n in range(1, pages[0].pages))))
    return pages


def workflow_id_for(signal_id: str) -> str:
    return ids.signal_workflow_id(signal_id)


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
    _runner: LegRunner | None
    _signals_received: Counter[str]
    _batch_ids: list[str]

    @workflow.signal
    async def pause_account(self, request: PauseAccount) -> None:
        """Legs of this account that have not sent their order stop now (SKIPPED_PAUSED, or
        rerouted). A leg whose order is already at the broker is not touched."""
        key = self._signal_key("pause_account")
        self._controls.paused[request.account_id] = request
        if self._runner is not None:
            self._runner.note_pause_after_send(request)
        await self._record("pause_account", ActionVia.SIGNAL, key, request, request.account_id)

    @workflow.signal
    async def resume_account(self, request: ResumeAccount) -> None:
        """Legs of this account not yet decided go ahead again."""
        key = self._signal_key("resume_account")
        self._controls.paused.pop(request.account_id, None)
        await self._record("resume_account", ActionVia.SIGNAL, key, request, request.account_id)

    @workflow.update
    async def halt(self, request: HaltRequest) -> StopResult:
        """Kill switch: no leg of this workflow sends an order after this; sent here by hand,
        it is thrown for every signal too (persisted and broadcast)."""
        key = f"update:{workflow.current_update_info().id}"  # type: ignore[union-attr]
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
        key = self._signal_key("unhalt")
        self._controls.halt = None
        outcome: dict[str, int | str | bool] = {}
        if not request.from_kill_switch:
            outcome["kill_switch_reached"] = await self._throw_kill_switch(request, key)
        await self._record("unhalt", ActionVia.SIGNAL, key, request, outcome=outcome)

    @workflow.update
    async def cancel_signal(self, request: CancelSignalRequest) -> StopResult:
        """Cancel this signal: waiting legs end CANCELLED, working orders are cancelled at the
        broker, children are cancelled; the workflow then completes with its report."""
        key = f"update:{workflow.current_update_info().id}"  # type: ignore[union-attr]
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
        asked: CancellationRequest = await workflow.execute_activity(
            ActivityName.CANCELLATION_REQUEST,
            workflow.info().workflow_id,
            result_type=CancellationRequest,
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
            "cancellation",
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
        result: KillSwitchResult = await workflow.execute_activity(
            ActivityName.APPLY_KILL_SWITCH,
            KillSwitch(
                halted=isinstance(request, HaltRequest),
                operator=request.operator or "unknown",
                reason=request.reason or "no reason given",
                cancel_working=getattr(request, "cancel_working", False),
                origin_workflow_id=workflow.info().workflow_id,
                origin_key=key,
            ),
            result_type=KillSwitchResult,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=DATABASE_RETRY,
            summary="kill switch: persist and broadcast",
        )
        return len(result.reached)

    def _signal_key(self, name: str) -> str:
        """This run's n-th receipt of signal ``name``: deterministic, and how the recording
        activity finds the signal's event (and sender) in the history."""
        self._signals_received[name] += 1
        return f"signal:{name}:{self._signals_received[name]}"

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
        await workflow.execute_activity(
            ActivityName.RECORD_OPERATOR_ACTION,
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
            result_type=ActionRecorded,
            start_to_close_timeout=timedelta(minutes=1),
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


@workflow.defn
class SignalExecutionWorkflow(OperatorControlled):
    """Snapshot → correlation → pure plan → legs (inline, or in batch children) → report."""

    def __init__(self) -> None:
        self._phase = "PLANNING"
        self._plan: Plan | None = None
        self._runner: LegRunner | None = None
        self._controls = Controls()
        self._batches = 0
        self._batch_ids: list[str] = []
        self._signals_received: Counter[str] = Counter()

    @workflow.run
    async def run(self, request: SignalWorkflowInput) -> ExecutionReport:
        return await self._run_cancellable(self._execute(request))

    async def _execute(self, request: SignalWorkflowInput) -> ExecutionReport:
        started_at = workflow.now()
        service = await self._service_settings(request)
        signal, settings = request.signal, service.plan

        # Runs recorded before the snapshot could carry the correlation read them apart.
        in_one_read = workflow.patched(PLANNING_IN_ONE_READ)
        snapshot = await self._load_snapshot(signal, settings if in_one_read else None)
        correlation = (
            snapshot.correlation
            if snapshot.correlation is not None
            else await self._load_correlation(snapshot, settings)
        )
        plan = planning.plan_signal(signal, snapshot, correlation, settings, workflow.now())
        # Record which planning rules made this plan, as a marker in the history: the audit
        # re-derives the plan under these rules only. A *deprecated* patch marker: replay
        # skips one the code does not ask for, so a run recorded under other rules (or before
        # the marker existed) replays under any later rules; a plain `patched` marker would
        # make the next rules version a nondeterminism error for every run in flight.
        workflow.deprecate_patch(planning.rules_marker())
        self._plan = plan
        self._set_phase("EXECUTING")

        batch_ids: list[str] = []
        # Runs recorded before batches were bounded by bytes and MAX_BATCH_LEGS (and took
        # denials) keep the old rule: any legs over batch_size, in chunks of batch_size.
        bounded = workflow.patched(BOUNDED_BATCHES)
        if (
            paging.needs_batches(plan.legs, plan.denials, settings.batch_size)
            if bounded
            else len(plan.legs) > settings.batch_size
        ):
            batch_ids, lines = await self._run_batches(
                signal, service, plan, started_at, bounded=bounded
            )
        else:
            self._runner = LegRunner(
                signal,
                settings=settings,
                execution=service.execution,
                started_at=started_at,
                reserve=plan.reserve,
                controls=self._controls,
            )
            lines = await self._runner.run_all(plan.legs)
            lines += [reports.denial_line(d) for d in plan.denials]

        status = "CANCELLED" if self._controls.cancel is not None else "COMPLETED"
        self._set_phase(status)
        return reports.build(
            signal,
            plan_version=plan.plan_version,
            status=status,
            started_at=started_at,
            finished_at=workflow.now(),
            lines=lines,
            batches=batch_ids,
        )

    @staticmethod
    async def _service_settings(request: SignalWorkflowInput) -> ServiceSettings:
        """The settings of this run: the worker's, unless the input pinned them. Read by an
        activity, so the history records them and a replay or the audit reads the same."""
        if request.settings is not None and request.execution is not None:
            return ServiceSettings(plan=request.settings, execution=request.execution)
        service: ServiceSettings = await workflow.execute_activity(
            ActivityName.SERVICE_SETTINGS,
            result_type=ServiceSettings,
            start_to_close_timeout=DATABASE_STEP,
            retry_policy=DATABASE_RETRY,
            summary="the service's settings",
        )
        return ServiceSettings(
            plan=request.settings or service.plan,
            execution=request.execution or service.execution,
        )

    async def _load_snapshot(
        self, signal: Signal, correlate_with: PlanSettings | None
    ) -> BookSnapshot:
        """The book, in pages when it is large: the first page says how many there are. With
        ``correlate_with``, a book of one page comes with its correlation too."""
        request = SnapshotRequest(
            signal_id=signal.signal_id,
            symbol=signal.symbol,
            account_ids=signal.account_ids,
            run_id=workflow.info().run_id,
            correlate=(
                None if correlate_with is None else planning.correlation_settings(correlate_with)
            ),
        )
        pages = await _read_pages(
            ActivityName.LOAD_SNAPSHOT, request, BookSnapshot, "load account snapshot"
        )
        return paging.join_snapshot(pages)

    async def _load_correlation(
        self, snapshot: BookSnapshot, settings: PlanSettings
    ) -> CorrelationResult:
        request = planning.correlation_request(snapshot, settings)
        if snapshot.pages > 1:
            # The accounts are the stored snapshot's: no id list in the payload.
            request = request.model_copy(
                update={"account_ids": None, "run_id": workflow.info().run_id}
            )
        pages = await _read_pages(
            ActivityName.COMPUTE_CORRELATION,
            request,
            CorrelationResult,
            "correlate account returns",
        )
        return paging.join_correlation(pages)

    async def _run_batches(
        self,
        signal: Signal,
        service: ServiceSettings,
        plan: Plan,
        started_at: datetime,
        *,
        bounded: bool,
    ) -> tuple[list[str], list[AccountReport]]:
        """Fan legs (and denials) out to batch children so no single history or payload nears
        Temporal's limits; their ids and every line they report."""
        size = service.plan.batch_size
        if bounded:
            slices = paging.batches(plan.legs, plan.denials, batch_size=size)
        else:
            chunks = [plan.legs[i : i + size] for i in range(0, len(plan.legs), size)]
            slices = [paging.Batch(legs=list(chunk)) for chunk in chunks]
        self._batches = len(slices)
        parent_id = workflow.info().workflow_id
        batch_ids = [ids.batch_workflow_id(parent_id, n) for n in range(1, len(slices) + 1)]
        if self._controls.cancel is not None:
            # Cancelled while planning: no batch starts; every leg ends CANCELLED.
            stop = self._controls.stop_for("")
            lines = [
                reports.stopped_line(leg, LegStatus.CANCELLED, stop.reason if stop else "")
                for leg in plan.legs
            ]
            return [], lines + [reports.denial_line(d) for d in plan.denials]
        self._batch_ids = batch_ids
        execution = service.execution
        if len(slices) > 1 and workflow.patched(ORDERS_IN_FLIGHT):
            # The signal's orders in flight, shared out: the batches run at once.
            execution = execution.model_copy(
                update={"max_orders_in_flight": orders_per_batch(execution, len(slices))}
            )
        handles = [
            workflow.execute_child_workflow(
                LegBatchWorkflow.run,
                LegBatchInput(
                    signal=signal,
                    settings=service.plan,
                    execution=execution,
                    legs=part.legs,
                    reserve=plan.reserve,
                    started_at=started_at,
                    denials=part.denials,
                ),
                id=child_id,
                parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                search_attributes=child_search_attributes(signal),
                static_summary=f"batch {n} of {len(slices)}: {len(part.legs)} legs",
            )
            for n, (child_id, part) in enumerate(zip(batch_ids, slices, strict=True), start=1)
        ]
        results = await asyncio.gather(*handles)
        lines = [line for result in results for line in result.accounts]
        if not bounded:  # the batches did not take the denials
            lines += [reports.denial_line(d) for d in plan.denials]
        return batch_ids, lines

    @workflow.query
    def progress(self) -> SignalProgress:
        """Live status: which legs wait (and until when), work, filled, were denied."""
        runner = self._runner
        return SignalProgress(
            signal_id=ids.signal_id_of(workflow.info().workflow_id) or "",
            phase=self._phase,
            started_at=workflow.info().start_time,
            legs=list(runner.progress.values()) if runner else [],
            denied=len(self._plan.denials) if self._plan else 0,
            batches=self._batches,
        )

    def _set_phase(self, phase: str) -> None:
        self._phase = phase
        workflow.upsert_search_attributes([sa.SIGNAL_STATUS.value_set(phase)])


@workflow.defn
class LegBatchWorkflow(OperatorControlled):
    """Runs one slice of a large signal's legs; a child of ``SignalExecutionWorkflow``."""

    def __init__(self) -> None:
        self._runner: LegRunner | None = None
        self._controls = Controls()
        self._batch_ids: list[str] = []
        self._signals_received: Counter[str] = Counter()

    @workflow.run
    async def run(self, request: LegBatchInput) -> LegBatchResult:
        return await self._run_cancellable(self._execute(request))

    async def _execute(self, request: LegBatchInput) -> LegBatchResult:
        self._runner = LegRunner(
            request.signal,
            settings=request.settings,
            execution=request.execution,
            started_at=request.started_at,
            reserve=request.reserve,
            controls=self._controls,
        )
        lines = await self._runner.run_all(request.legs)
        return LegBatchResult(accounts=lines + [reports.denial_line(d) for d in request.denials])

    @workflow.query
    def progress(self) -> list[LegProgress]:
        return list(self._runner.progress.values()) if self._runner else []

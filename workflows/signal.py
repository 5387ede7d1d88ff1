"""``SignalExecutionWorkflow``: one trade signal, planned and executed across the book; and
``LegBatchWorkflow``, which runs a slice of a large signal's legs."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from orchestrator import paging, planning, reports
    from orchestrator import search_attributes as sa
    from orchestrator.models import (
        AccountReport,
        ActivityName,
        BookSnapshot,
        CancelSignalRequest,
        CorrelationRequest,
        CorrelationResult,
        ExecutionReport,
        HaltRequest,
        LegBatchInput,
        LegBatchResult,
        LegProgress,
        OperatorAction,
        PauseAccount,
        Plan,
        PlanSettings,
        ResumeAccount,
        ServiceSettings,
        Signal,
        SignalProgress,
        SignalWorkflowInput,
        SnapshotRequest,
        StopResult,
        UnhaltRequest,
    )
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
    return f"signal-{signal_id}"


def _require_operator_and_reason(action: str, request: OperatorAction) -> None:
    if not request.operator.strip():
        raise ValueError(f"{action} refused: say who you are (operator)")
    if not request.reason.strip():
        raise ValueError(f"{action} refused: give a reason")


class OperatorControlled:
    """Signal and update handlers shared by the signal workflow and its batch children.

    Pause and resume are signals (one account, fire and forget); halt and cancel are updates
    with validators, so an operator gets an answer — or a refusal that says why. Every one
    lands in this workflow's history with the operator and the reason.
    """

    _controls: Controls
    _runner: LegRunner | None

    @workflow.signal
    def pause_account(self, request: PauseAccount) -> None:
        """Legs of this account that have not sent their order stop now (SKIPPED_PAUSED, or
        rerouted). A leg whose order is already at the broker is not touched."""
        self._controls.paused[request.account_id] = request
        if self._runner is not None:
            self._runner.note_pause_after_send(request)

    @workflow.signal
    def resume_account(self, request: ResumeAccount) -> None:
        """Legs of this account not yet decided go ahead again."""
        self._controls.paused.pop(request.account_id, None)

    @workflow.update
    def halt(self, request: HaltRequest) -> StopResult:
        """Kill switch: no leg of this workflow sends an order after this."""
        self._controls.halt = request
        return self._stop(cancel_working=request.cancel_working)

    @halt.validator
    def _validate_halt(self, request: HaltRequest) -> None:
        _require_operator_and_reason("halt", request)

    @workflow.signal
    def unhalt(self, request: UnhaltRequest) -> None:
        """Legs not yet decided go ahead again."""
        self._controls.halt = None

    @workflow.update
    def cancel_signal(self, request: CancelSignalRequest) -> StopResult:
        """Cancel this signal: waiting legs end CANCELLED, working orders are cancelled at the
        broker, children are cancelled; the workflow then completes with its report."""
        self._controls.cancel = request
        return self._stop(cancel_working=True)

    @cancel_signal.validator
    def _validate_cancel(self, request: CancelSignalRequest) -> None:
        _require_operator_and_reason("cancel", request)

    def _stop(self, *, cancel_working: bool) -> StopResult:
        if self._runner is None:  # still planning: every leg will stop before its timer
            return StopResult(
                workflow_id=workflow.info().workflow_id, legs_stopped=0, orders_cancelled=0
            )
        return self._runner.stop(cancel_working=cancel_working)


@workflow.defn
class SignalExecutionWorkflow(OperatorControlled):
    """Snapshot → correlation → pure plan → legs (inline, or in batch children) → report."""

    def __init__(self) -> None:
        self._phase = "PLANNING"
        self._plan: Plan | None = None
        self._runner: LegRunner | None = None
        self._controls = Controls()
        self._batches = 0

    @workflow.run
    async def run(self, request: SignalWorkflowInput) -> ExecutionReport:
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
        ids = [f"{parent_id}/batch-{n}" for n in range(1, len(slices) + 1)]
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
            )
            for child_id, part in zip(ids, slices, strict=True)
        ]
        results = await asyncio.gather(*handles)
        lines = [line for result in results for line in result.accounts]
        if not bounded:  # the batches did not take the denials
            lines += [reports.denial_line(d) for d in plan.denials]
        return ids, lines

    @workflow.query
    def progress(self) -> SignalProgress:
        """Live status: which legs wait (and until when), work, filled, were denied."""
        runner = self._runner
        return SignalProgress(
            signal_id=workflow.info().workflow_id.removeprefix("signal-"),
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

    @workflow.run
    async def run(self, request: LegBatchInput) -> LegBatchResult:
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

"""``SignalExecutionWorkflow``: one trade signal, planned and executed across the book."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from orchestrator import planning
    from orchestrator import search_attributes as sa
    from orchestrator.models import (
        AccountReport,
        ActivityName,
        BookSnapshot,
        CorrelationResult,
        ExecutionReport,
        LegBatchInput,
        LegBatchResult,
        LegProgress,
        LegStatus,
        Plan,
        SignalProgress,
        SignalWorkflowInput,
        SnapshotRequest,
    )
    from workflows.legs import DATABASE_RETRY, LegRunner


def workflow_id_for(signal_id: str) -> str:
    return f"signal-{signal_id}"


@workflow.defn
class SignalExecutionWorkflow:
    """Snapshot → correlation → pure plan → legs (inline, or in batch children) → report."""

    def __init__(self) -> None:
        self._phase = "PLANNING"
        self._plan: Plan | None = None
        self._runner: LegRunner | None = None
        self._batches = 0

    @workflow.run
    async def run(self, request: SignalWorkflowInput) -> ExecutionReport:
        signal, settings = request.signal, request.settings
        started_at = workflow.now()
        self._runner = LegRunner(signal, settings, request.execution, started_at, [])

        snapshot = await workflow.execute_activity(
            ActivityName.LOAD_SNAPSHOT,
            SnapshotRequest(
                signal_id=signal.signal_id, symbol=signal.symbol, account_ids=signal.account_ids
            ),
            result_type=BookSnapshot,
            start_to_close_timeout=timedelta(seconds=60),
            schedule_to_close_timeout=timedelta(minutes=5),
            retry_policy=DATABASE_RETRY,
            summary="load account snapshot",
        )
        correlation = await workflow.execute_activity(
            ActivityName.COMPUTE_CORRELATION,
            planning.correlation_request(snapshot, settings),
            result_type=CorrelationResult,
            start_to_close_timeout=timedelta(seconds=60),
            schedule_to_close_timeout=timedelta(minutes=5),
            retry_policy=DATABASE_RETRY,
            summary="correlate account returns",
        )
        plan = planning.plan_signal(signal, snapshot, correlation, settings, workflow.now())
        self._plan = plan
        self._runner = LegRunner(signal, settings, request.execution, started_at, plan.reserve)
        self._set_phase("EXECUTING")

        if len(plan.legs) <= settings.batch_size:
            self._runner.register(plan.legs, workflow.now())
            runs = await asyncio.gather(*(self._runner.run(leg) for leg in plan.legs))
            reports = [line for lines in runs for line in lines]
        else:
            reports = await self._run_batches(request, plan, started_at)

        self._set_phase("COMPLETED")
        # A reserve account a reroute used reports its fill, not its reserve denial.
        taken = {r.account_id for r in reports}
        denied = [
            AccountReport(
                account_id=d.account_id,
                status=LegStatus.DENIED,
                requested=Decimal(0),
                filled=Decimal(0),
                denial=d.reason,
                reason=d.detail,
            )
            for d in plan.denials
            if d.account_id not in taken
        ]
        accounts = sorted(reports + denied, key=lambda r: r.account_id)
        return ExecutionReport(
            signal_id=signal.signal_id,
            symbol=signal.symbol,
            side=signal.side,
            reference_price=signal.entry,
            plan_version=plan.plan_version,
            status="COMPLETED",
            started_at=started_at,
            finished_at=workflow.now(),
            accounts=accounts,
            requested_total=sum((r.requested for r in accounts), Decimal(0)),
            filled_total=sum((r.filled for r in accounts), Decimal(0)),
        )

    async def _run_batches(
        self, request: SignalWorkflowInput, plan: Plan, started_at: datetime
    ) -> list[AccountReport]:
        """Fan legs out to batch children so no single history nears Temporal's limits."""
        size = request.settings.batch_size
        chunks = [plan.legs[i : i + size] for i in range(0, len(plan.legs), size)]
        self._batches = len(chunks)
        parent_id = workflow.info().workflow_id
        handles = [
            workflow.execute_child_workflow(
                LegBatchWorkflow.run,
                LegBatchInput(
                    signal=request.signal,
                    settings=request.settings,
                    execution=request.execution,
                    legs=chunk,
                    reserve=plan.reserve,
                    started_at=started_at,
                ),
                id=f"{parent_id}/batch-{n}",
                parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(sa.SIGNAL_ID, request.signal.signal_id)]
                ),
            )
            for n, chunk in enumerate(chunks, start=1)
        ]
        results = await asyncio.gather(*handles)
        return [line for result in results for line in result.accounts]

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
class LegBatchWorkflow:
    """Runs one slice of a large signal's legs; a child of ``SignalExecutionWorkflow``."""

    def __init__(self) -> None:
        self._runner: LegRunner | None = None

    @workflow.run
    async def run(self, request: LegBatchInput) -> LegBatchResult:
        self._runner = LegRunner(
            request.signal, request.settings, request.execution, request.started_at, request.reserve
        )
        self._runner.register(request.legs, workflow.now())
        runs = await asyncio.gather(*(self._runner.run(leg) for leg in request.legs))
        return LegBatchResult(accounts=[line for lines in runs for line in lines])

    @workflow.query
    def progress(self) -> list[LegProgress]:
        return list(self._runner.progress.values()) if self._runner else []

"""``LegBatchWorkflow``: one slice of a large signal's legs (``signal-{id}/batch-{n}``), a child of
``SignalExecutionWorkflow``, so no single history or payload nears Temporal's limits."""

from __future__ import annotations

from collections import Counter

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orchestrator.domain import reports
    from orchestrator.domain.contracts.payloads import LegBatchInput, LegBatchResult
    from orchestrator.domain.progress import LegProgress
    from workflows.controls import Controls, OperatorControlled
    from workflows.legs import LegRunner


@workflow.defn
class LegBatchWorkflow(OperatorControlled):
    """Runs one slice of a large signal's legs and reports their lines and the slice's
    denials; answers operators like the signal workflow does."""

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
            entry_deadline=request.entry_deadline,
            batch=True,
        )
        lines = await self._runner.run_all(request.legs)
        return LegBatchResult(accounts=lines + [reports.denial_line(d) for d in request.denials])

    @workflow.query
    def progress(self) -> list[LegProgress]:
        return list(self._runner.progress.values()) if self._runner else []

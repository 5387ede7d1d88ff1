"""``SignalExecutionWorkflow``: one trade signal (``signal-{id}``), planned and executed across
the book: the worker's settings → snapshot → correlation → pure plan → legs (inline, or in
batch children) → report."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from orchestrator.domain import expiry, ids, paging, planning, reports
    from orchestrator.domain import search_attributes as sa
    from orchestrator.domain.book import BookSnapshot
    from orchestrator.domain.contracts.activities import Execution
    from orchestrator.domain.contracts.payloads import (
        LegBatchInput,
        SignalWorkflowInput,
        SnapshotRequest,
    )
    from orchestrator.domain.correlation import CorrelationResult
    from orchestrator.domain.planning.decisions import Plan
    from orchestrator.domain.progress import SignalProgress
    from orchestrator.domain.report import AccountReport, LegStatus, SignalReport, SignalStatus
    from orchestrator.domain.settings import PlanSettings, ServiceSettings
    from orchestrator.domain.signal import Signal
    from workflows.batch import LegBatchWorkflow
    from workflows.controls import Controls, OperatorControlled
    from workflows.legs import LegRunner
    from workflows.order_slots import ORDERS_SHARED_BY_LEGS, orders_per_batch, orders_shares
    from workflows.steps import (
        BOOK_READ,
        DATABASE_RETRY,
        DATABASE_STEP,
        child_search_attributes,
        read_pages,
    )


@workflow.defn
class SignalExecutionWorkflow(OperatorControlled):
    """Snapshot → correlation → pure plan → legs (inline, or in batch children) → report."""

    def __init__(self) -> None:
        self._phase = SignalStatus.PLANNING
        self._plan: Plan | None = None
        self._runner: LegRunner | None = None
        self._controls = Controls()
        self._batches = 0
        self._batch_ids: list[str] = []
        self._signals_received: Counter[str] = Counter()

    @workflow.run
    async def run(self, request: SignalWorkflowInput) -> SignalReport:
        return await self._run_cancellable(self._execute(request))

    async def _execute(self, request: SignalWorkflowInput) -> SignalReport:
        started_at = workflow.now()
        service = await self._service_settings(request)
        signal, settings = request.signal, service.plan
        # Decided once, from the workflow's start: every entry of this signal, in this
        # workflow or its children, leaves by then or not at all.
        entry_deadline = expiry.entry_deadline(
            signal, service.execution.entry_ttl_s, workflow.info().start_time
        )

        snapshot = await self._load_snapshot(signal, settings)
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
        self._set_phase(SignalStatus.EXECUTING, rules=planning.RULES_VERSION)

        batch_ids: list[str] = []
        if paging.needs_batches(plan.legs, plan.denials, settings.batch_size):
            batch_ids, lines = await self._run_batches(
                signal, service, plan, started_at, entry_deadline
            )
        else:
            self._runner = LegRunner(
                signal,
                settings=settings,
                execution=service.execution,
                started_at=started_at,
                reserve=plan.reserve,
                controls=self._controls,
                entry_deadline=entry_deadline,
            )
            lines = await self._runner.run_all(plan.legs)
            lines += [reports.denial_line(d) for d in plan.denials]

        status = (
            SignalStatus.CANCELLED if self._controls.cancel is not None else SignalStatus.COMPLETED
        )
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
        service = await workflow.execute_activity_method(
            Execution.service_settings,
            start_to_close_timeout=DATABASE_STEP,
            retry_policy=DATABASE_RETRY,
            summary="the service's settings",
        )
        return ServiceSettings(
            plan=request.settings or service.plan,
            execution=request.execution or service.execution,
        )

    async def _load_snapshot(self, signal: Signal, settings: PlanSettings) -> BookSnapshot:
        """The book, in pages when it is large: the first page says how many there are. A book
        of one page comes with its correlation too (one activity instead of two)."""
        request = SnapshotRequest(
            signal_id=signal.signal_id,
            symbol=signal.symbol,
            account_ids=signal.account_ids,
            run_id=workflow.info().run_id,
            correlate=planning.correlation_settings(settings),
        )

        def page(n: int) -> Awaitable[BookSnapshot]:
            return workflow.execute_activity_method(
                Execution.load_snapshot,
                request.model_copy(update={"page": n}),
                start_to_close_timeout=BOOK_READ,
                schedule_to_close_timeout=timedelta(minutes=5),
                retry_policy=DATABASE_RETRY,
                summary="load account snapshot" + (f": page {n + 1}" if n else ""),
            )

        return paging.join_snapshot(await read_pages(page))

    async def _load_correlation(
        self, snapshot: BookSnapshot, settings: PlanSettings
    ) -> CorrelationResult:
        request = planning.correlation_request(snapshot, settings)
        if snapshot.pages > 1:
            # The accounts are the stored snapshot's: no id list in the payload.
            request = request.model_copy(
                update={"account_ids": None, "run_id": workflow.info().run_id}
            )

        def page(n: int) -> Awaitable[CorrelationResult]:
            return workflow.execute_activity_method(
                Execution.compute_correlation,
                request.model_copy(update={"page": n}),
                start_to_close_timeout=BOOK_READ,
                schedule_to_close_timeout=timedelta(minutes=5),
                retry_policy=DATABASE_RETRY,
                summary="correlate account returns" + (f": page {n + 1}" if n else ""),
            )

        return paging.join_correlation(await read_pages(page))

    async def _run_batches(
        self,
        signal: Signal,
        service: ServiceSettings,
        plan: Plan,
        started_at: datetime,
        entry_deadline: datetime | None,
    ) -> tuple[list[str], list[AccountReport]]:
        """Fan legs (and denials) out to batch children so no single history or payload nears
        Temporal's limits; their ids and every line they report."""
        size = service.plan.batch_size
        slices = paging.batches(plan.legs, plan.denials, batch_size=size)
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
        executions = [service.execution] * len(slices)
        if len(slices) > 1:
            # The signal's orders in flight, shared out: the batches run at once.
            execution = service.execution
            if workflow.patched(ORDERS_SHARED_BY_LEGS):
                shares = orders_shares(
                    execution.max_orders_in_flight, [len(part.legs) for part in slices]
                )
            else:
                shares = [orders_per_batch(execution, len(slices))] * len(slices)
            executions = [
                execution.model_copy(update={"max_orders_in_flight": share}) for share in shares
            ]
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
                    entry_deadline=entry_deadline,
                ),
                id=child_id,
                parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                search_attributes=child_search_attributes(signal),
                static_summary=f"batch {n} of {len(slices)}: {len(part.legs)} legs",
            )
            for n, (child_id, part, execution) in enumerate(
                zip(batch_ids, slices, executions, strict=True), start=1
            )
        ]
        results = await asyncio.gather(*handles)
        return batch_ids, [line for result in results for line in result.accounts]

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

    def _set_phase(self, phase: SignalStatus, *, rules: int | None = None) -> None:
        self._phase = phase
        updates = [sa.SIGNAL_STATUS.value_set(phase.value)]
        if rules is not None:
            # Shown as such in the Web UI (the rules marker reads as a generic patch there).
            updates.append(sa.PLANNING_RULES.value_set(f"v{rules}"))
        workflow.upsert_search_attributes(updates)

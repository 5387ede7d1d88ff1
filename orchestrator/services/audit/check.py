"""The audit of one signal from its histories (the signal's and all its children's): read,
replay, value check, fills, trail.
"""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

from orchestrator.adapters.codec import CodecError
from orchestrator.domain import reports
from orchestrator.domain.contracts.actions import ActionInput
from orchestrator.domain.contracts.payloads import (
    LegBatchResult,
    SignalWorkflowInput,
)
from orchestrator.domain.report import SignalReport
from orchestrator.services import history as histories
from orchestrator.services.audit.describe import describe_plan
from orchestrator.services.audit.document import Audit, ReplayCheck, UnreadableHistory
from orchestrator.services.audit.positions import verify_positions
from orchestrator.services.audit.reader import Reader
from orchestrator.services.audit.verify import account_audits, verify_plan
from workflows.batch import LegBatchWorkflow
from workflows.positions import PositionsWorkflow
from workflows.reroute import OrderRerouteWorkflow


async def audit_histories(
    loaded: Sequence[WorkflowHistory], *, converter: DataConverter | None = None
) -> Audit:
    """Audit a signal from its histories: the signal workflow's (the one whose id has no
    ``/``) and its children's."""
    roots = [h for h in loaded if "/" not in h.workflow_id]
    if len(roots) != 1:
        raise ValueError(
            f"expected the histories of one signal workflow, found {len(roots)}: "
            + ", ".join(h.workflow_id for h in roots)
        )
    converter = converter or pydantic_data_converter
    reader = Reader(converter)
    try:
        reads = [await reader.read(h) for h in loaded]
    except (CodecError, KeyError) as err:
        raise UnreadableHistory(histories.describe_error(err)) from err
    root = next(r for r in reads if r.history is roots[0])
    batches = [r for r in reads if histories.workflow_type(r.history) == LegBatchWorkflow.__name__]
    failures = await histories.replay_histories(loaded, converter=converter)
    replay = [
        ReplayCheck(
            workflow_id=h.workflow_id,
            workflow_type=histories.workflow_type(h),
            events=len(h.events),
            closed=histories.is_closed(h),
            failure=histories.describe_error(failure) if failure else None,
        )
        for h, failure in zip(loaded, failures, strict=True)
    ]
    report = root.result if isinstance(root.result, SignalReport) else None
    if report is not None and report.accounts_in_batches:
        # A large signal's lines are its batches' results.
        lines = [
            line
            for read in batches
            if isinstance(read.result, LegBatchResult)
            for line in read.result.accounts
        ]
        report = report.model_copy(
            update={"accounts": reports.merge_lines(lines), "accounts_in_batches": False}
        )
    reroutes = [
        r for r in reads if histories.workflow_type(r.history) == OrderRerouteWorkflow.__name__
    ]
    values, plan = verify_plan(root, batches, report, reroutes)
    keepers = [r for r in reads if histories.workflow_type(r.history) == PositionsWorkflow.__name__]
    trail = [entry for read in reads for entry in read.trail]
    if plan is not None:
        trail += describe_plan(plan, root)
    # In time order; at one instant, the signal's own entries first, then its children's.
    order = {r.history.workflow_id: n for n, r in enumerate(reads)}
    trail.sort(key=lambda e: (e.at, order[e.workflow_id]))
    signal = ""
    if isinstance(root.input, SignalWorkflowInput):
        signal = root.input.signal.signal_id
    elif isinstance(root.input, ActionInput):  # an action is a signal of its own
        signal = root.input.action.action_id
    return Audit(
        signal_id=signal,
        workflow_id=root.history.workflow_id,
        run_id=roots[0].run_id or "",
        closed=histories.is_closed(root.history),
        replay=replay,
        values=values,
        accounts=account_audits(report, reads) if report else [],
        report=report,
        trail=trail,
        positions=verify_positions(keepers),
        plaintext=[p for read in reads for p in read.plaintext],
    )

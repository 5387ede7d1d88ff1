"""A large signal's report read whole: its per-account lines fetched from its batch children."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle

from orchestrator.domain.contracts.payloads import LegBatchResult
from orchestrator.domain.report import AccountReport, SignalReport
from orchestrator.domain.reports import merge_lines
from workflows.batch import LegBatchWorkflow


async def full_report(client: Client, report: SignalReport) -> SignalReport:
    """``report`` with every per-account line, fetched from its batch children when the signal's
    own result holds only the summary."""
    if not report.accounts_in_batches:
        return report
    lines: list[AccountReport] = []
    for workflow_id in report.batches:
        batch: WorkflowHandle[LegBatchWorkflow, LegBatchResult] = client.get_workflow_handle_for(
            LegBatchWorkflow.run, workflow_id
        )
        result = await batch.result()
        lines.extend(result.accounts)
    return report.model_copy(update={"accounts": merge_lines(lines), "accounts_in_batches": False})

"""``ArchiveWorkflow``: run by the archive schedule, archives closed signals' histories."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from orchestrator.domain.contracts.activities import Archive
    from orchestrator.domain.contracts.payloads import ArchiveRequest, ArchiveResult


@workflow.defn
class ArchiveWorkflow:
    @workflow.run
    async def run(self, request: ArchiveRequest) -> ArchiveResult:
        result = await workflow.execute_activity_method(
            Archive.archive_closed_signals,
            request,
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(minutes=5)),
            summary="archive closed signals",
        )
        failed = [a for a in result.archived if not a.audit_ok]
        if failed:
            # The files are archived either way (they are the record); the run fails so the
            # schedule shows that some did not verify.
            raise ApplicationError(
                f"{len(failed)} archived signal(s) failed verification: "
                + "; ".join(f"{a.workflow_id}: {a.failure}" for a in failed),
                result,
                non_retryable=True,
            )
        return result

"""``AccountSyncWorkflow``: one broker's accounts read, written, reconciled and checked against
their limits. Run by the broker's schedule (``orchestrator/services/sync.py``) every
``TEO_ACCOUNT_SYNC_EVERY_S``, and on demand (``starter.py reconcile --sync``)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from orchestrator.domain.contracts.activities import AccountSync
    from orchestrator.domain.contracts.sync import (
        AccountSyncInput,
        FlattenRequest,
        SyncRequest,
        SyncResult,
    )


@workflow.defn
class AccountSyncWorkflow:
    @workflow.run
    async def run(self, request: AccountSyncInput) -> SyncResult:
        # On the queue of the worker holding the broker's session: only it can read the broker.
        result = await workflow.execute_activity_method(
            AccountSync.sync_accounts,
            SyncRequest(broker=request.broker),
            task_queue=request.activity_task_queue or workflow.info().task_queue,
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(maximum_attempts=3, maximum_interval=timedelta(seconds=10)),
            summary=f"sync accounts of {request.broker}",
        )
        stamp = workflow.now().strftime("%Y%m%dT%H%M%S")
        for breach in result.breaches:
            if not breach.flatten:
                continue
            flattened = await workflow.execute_activity_method(
                AccountSync.flatten_account,
                FlattenRequest(
                    action_id=f"breach-{breach.account_id}-{stamp}"[:64],
                    account_id=breach.account_id,
                    reason=breach.breach.reason,
                ),
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=RetryPolicy(maximum_attempts=5),
                summary=f"flatten {breach.account_id}",
            )
            if flattened.refused is not None:
                workflow.logger.warning(
                    "FLATTEN of %s after its breach not submitted: %s",
                    breach.account_id,
                    flattened.refused,
                )
        return result

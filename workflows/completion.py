"""``PartialFillCompletionWorkflow``: orders for what a leg's first order left unfilled, a
child of the workflow that runs the leg (``signal-{id}/leg-{n}/completion``; under a reroute
``signal-{id}/leg-{n}/reroute-{k}/completion``). Ids name the leg, not the account: ids are not
encrypted; the child's summary names it."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from orchestrator.domain import expiry, ids
    from orchestrator.domain.contracts.payloads import CompletionInput
    from orchestrator.domain.ids import client_order_id
    from orchestrator.domain.orders import OrderOutcome, average_price
    from orchestrator.domain.planning import floor_to_step
    from orchestrator.domain.report import CompletionResult, CompletionStop
    from orchestrator.domain.settings import ExecutionSettings
    from orchestrator.domain.signal import Signal
    from orchestrator.domain.values import DenialReason
    from workflows.steps import (
        cancel_order,
        child_search_attributes,
        order_request,
        place_order,
        settle_leg,
    )


@workflow.defn
class PartialFillCompletionWorkflow:
    """Place orders for what a leg's first order left unfilled, until it is filled, the rest
    is dust, the attempts run out or the deadline passes. Never rounds a remainder up."""

    @workflow.run
    async def run(self, request: CompletionInput) -> CompletionResult:
        signal, execution = request.signal, request.execution
        deadline = workflow.now() + timedelta(seconds=execution.completion_deadline_s)
        remaining = request.remaining
        fills: list[tuple[Decimal, Decimal]] = []
        ids: list[str] = []
        stopped: CompletionStop | None = None
        detail = ""
        try:
            while stopped is None:
                sendable = floor_to_step(remaining, request.lot_step)
                left = deadline - workflow.now()
                if remaining <= 0:
                    stopped, detail = CompletionStop.COMPLETED, "remainder filled"
                elif sendable < request.min_lot:
                    stopped = CompletionStop.DUST
                    detail = f"{remaining} lots left, below the minimum {request.min_lot}"
                elif len(ids) >= execution.completion_max_attempts:
                    stopped = CompletionStop.ATTEMPTS_EXHAUSTED
                    detail = f"{len(ids)} attempts made, {remaining} lots unfilled"
                elif left <= timedelta(0):
                    stopped, detail = CompletionStop.DEADLINE, "deadline passed"
                elif (
                    expired := expiry.expired_detail(request.entry_deadline, workflow.now())
                ) is not None:
                    stopped, detail = CompletionStop.EXPIRED, f"{DenialReason.EXPIRED}: {expired}"
                else:
                    sequence = request.first_sequence + len(ids)
                    order_id = client_order_id(signal.signal_id, request.account_id, sequence)
                    ids.append(order_id)
                    attempt = await place_order(
                        order_request(
                            signal,
                            account_id=request.account_id,
                            broker=request.broker,
                            broker_symbol=request.broker_symbol,
                            quantity=sendable,
                            business_sequence=sequence,
                            client_order_id=order_id,
                            settles_leg=False,
                        ),
                        execution,
                        deadline=left,
                    )
                    outcome = attempt.outcome
                    if attempt.refused is not None:
                        stopped = CompletionStop.STOPPED_BY_OPERATOR
                        detail = f"{attempt.refused[0]}: {attempt.refused[1]}"
                    elif attempt.rejected is not None:
                        stopped, detail = CompletionStop.REJECTED, attempt.rejected
                    elif outcome is None:
                        # Whatever the order did before it was stopped stays booked.
                        outcome = await cancel_order(
                            signal.signal_id,
                            request.account_id,
                            order_id,
                            "completion deadline" if attempt.timed_out else "completion failed",
                            queue=execution.broker_queue(request.broker),
                        )
                        if attempt.timed_out:
                            stopped = CompletionStop.DEADLINE
                            detail = f"deadline passed; {order_id} cancelled at the broker"
                        else:
                            stopped, detail = CompletionStop.FAILED, attempt.failure or ""
                    if outcome is not None and outcome.average_price is not None:
                        fills.append((outcome.filled_quantity, outcome.average_price))
                        remaining -= outcome.filled_quantity
        except asyncio.CancelledError:
            # Cancelled with the parent: the working order was cancelled at the broker by its
            # activity; give the leg's unused risk back before ending cancelled.
            await settle_leg(signal.signal_id, request.account_id)
            raise
        await settle_leg(signal.signal_id, request.account_id)
        filled = sum((q for q, _ in fills), Decimal(0))
        sendable = floor_to_step(remaining, request.lot_step)
        dust = remaining if sendable < request.min_lot else remaining - sendable
        return CompletionResult(
            account_id=request.account_id,
            filled=filled,
            average_price=average_price(fills),
            unfilled=remaining,
            dust=dust,
            attempts=len(ids),
            stopped=stopped,
            detail=detail,
            client_order_ids=ids,
        )


async def complete_partial_fill(
    signal: Signal,
    *,
    account_id: str,
    broker: str,
    broker_symbol: str,
    first: OrderOutcome,
    min_lot: Decimal,
    lot_step: Decimal,
    execution: ExecutionSettings,
    ref: str,
    entry_deadline: datetime | None = None,
) -> CompletionResult:
    """Run the completion child for what the first order left unfilled; ``ref`` names the leg
    in the child's workflow id."""
    remaining = first.quantity - first.filled_quantity
    return await workflow.execute_child_workflow(
        PartialFillCompletionWorkflow.run,
        CompletionInput(
            signal=signal,
            account_id=account_id,
            broker=broker,
            broker_symbol=broker_symbol,
            remaining=remaining,
            min_lot=min_lot,
            lot_step=lot_step,
            first_sequence=2,
            execution=execution,
            entry_deadline=entry_deadline,
        ),
        id=ids.child_workflow_id(signal.signal_id, ref, "completion"),
        parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
        search_attributes=child_search_attributes(signal),
        static_summary=(
            f"completion of {account_id}'s {remaining} lots (signal {signal.signal_id})"
        ),
    )

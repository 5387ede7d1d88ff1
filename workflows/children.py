"""Child workflows of a signal: partial-fill completion and failed-order rerouting.

Both run under the signal (or its batch child) with deterministic ids —
``signal-{id}/leg-{n}/completion``, ``signal-{id}/leg-{n}/reroute`` and, for a rerouted order
completed at its k-th candidate, ``signal-{id}/leg-{n}/reroute-{k}/completion`` — so each is
visible and replayable on its own, and all carry the SignalId search attribute. Ids name the
leg, not the account: ids are not encrypted. (Runs recorded before that named the account.)
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orchestrator.domain import planning
    from orchestrator.domain.book import BookSnapshot, spec_key
    from orchestrator.domain.contracts.payloads import (
        ActivityName,
        CompletionInput,
        RerouteInput,
        ReserveRiskRequest,
        SnapshotRequest,
    )
    from orchestrator.domain.ids import client_order_id
    from orchestrator.domain.report import (
        AccountReport,
        CompletionResult,
        CompletionStop,
        LegStatus,
        RerouteHop,
        RerouteOutcome,
        RerouteResult,
    )
    from orchestrator.domain.values import DenialReason
    from workflows.legs import (
        BOOK_READ,
        DATABASE_RETRY,
        account_report,
        cancel_order,
        complete_partial_fill,
        fill_status,
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
                sendable = planning.floor_to_step(remaining, request.lot_step)
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
        sendable = planning.floor_to_step(remaining, request.lot_step)
        dust = remaining if sendable < request.min_lot else remaining - sendable
        return CompletionResult(
            account_id=request.account_id,
            filled=filled,
            average_price=(sum((q * p for q, p in fills), Decimal(0)) / filled)
            if filled > 0
            else None,
            unfilled=remaining,
            dust=dust,
            attempts=len(ids),
            stopped=stopped,
            detail=detail,
            client_order_ids=ids,
        )


@workflow.defn
class OrderRerouteWorkflow:
    """Move a failed leg's risk to the plan's reserve accounts: for each, a fresh eligibility
    check, then a size by the one sizing rule with at most what is left of the reroute fraction
    of the failed order's risk at the stop, converted through the target's own contract and
    capped by every limit of the target; the reservation, the order and any completion. What
    a target cannot take moves on to the next, within the same number of tries."""

    @workflow.run
    async def run(self, request: RerouteInput) -> RerouteResult:
        signal, execution = request.signal, request.execution
        sizing = planning.RerouteSizing(
            original_risk=request.original_risk, fraction=execution.reroute_fraction
        )
        hops: list[RerouteHop] = []
        lines: list[AccountReport] = []

        def hop(to: str, outcome: LegStatus, reason: str, quantity: Decimal = Decimal(0)) -> None:
            hops.append(
                RerouteHop(
                    to_account=to,
                    outcome=outcome,
                    reason=reason,
                    quantity=quantity,
                    filled=Decimal(0),
                )
            )

        for candidate in request.candidates:
            if len(hops) >= execution.reroute_max_accounts or sizing.done:
                break
            snapshot = await workflow.execute_activity(
                ActivityName.LOAD_SNAPSHOT,
                SnapshotRequest(
                    signal_id=signal.signal_id, symbol=signal.symbol, account_ids=[candidate]
                ),
                result_type=BookSnapshot,
                start_to_close_timeout=BOOK_READ,
                schedule_to_close_timeout=timedelta(minutes=5),
                retry_policy=DATABASE_RETRY,
                summary=f"snapshot {candidate}",
            )
            if snapshot.halted:
                hop(candidate, LegStatus.DENIED, "HALTED: trading halted")
                break
            if not snapshot.accounts:
                hop(candidate, LegStatus.DENIED, "account no longer in the book")
                continue
            account = snapshot.accounts[0]
            denial = planning.check_eligibility(
                signal, account, snapshot.specs, request.settings, workflow.now()
            )
            if denial is not None:
                hop(candidate, LegStatus.DENIED, f"{denial.reason}: {denial.detail}")
                continue
            spec = snapshot.specs[spec_key(account.broker, account.broker_symbol or "")]
            decision = sizing.size(signal, account, spec)
            if decision.denial is not None:
                hop(candidate, LegStatus.DENIED, f"{decision.denial}: {decision.detail}")
                continue
            quantity = decision.lots
            risk, margin = planning.commitment(signal, spec, quantity)
            order_id = client_order_id(signal.signal_id, candidate, 1)
            order = order_request(
                signal,
                account_id=candidate,
                broker=account.broker,
                broker_symbol=spec.symbol,
                quantity=quantity,
                business_sequence=1,
                client_order_id=order_id,
            )
            attempt = await place_order(
                order.model_copy(
                    update={
                        "reservation": ReserveRiskRequest(
                            signal_id=signal.signal_id,
                            account_id=candidate,
                            origin_account_id=request.from_account,
                            client_order_id=order_id,
                            quantity=quantity,
                            risk_amount=risk,
                            margin=margin,
                        )
                    }
                ),
                execution,
            )
            if attempt.denied is not None or attempt.refused is not None:
                code, detail = attempt.denied or attempt.refused or (DenialReason.LEG_CLOSED, "")
                hop(candidate, LegStatus.DENIED, f"{code}: {detail}", quantity)
                if code is DenialReason.HALTED:
                    break
                continue
            if attempt.rejected is not None:
                hop(candidate, LegStatus.REJECTED, attempt.rejected, quantity)
                continue
            outcome = attempt.outcome
            if outcome is None:
                # Ambiguous failure: never send the same risk elsewhere too.
                await cancel_order(
                    signal.signal_id,
                    candidate,
                    order_id,
                    "reroute order failed",
                    queue=execution.broker_queue(account.broker),
                )
                hop(candidate, LegStatus.FAILED, attempt.failure or "order failed", quantity)
                return self._result(request, sizing, hops, lines, RerouteOutcome.FAILED)
            completion = None
            if 0 < outcome.filled_quantity < outcome.quantity:
                completion = await complete_partial_fill(
                    signal,
                    account_id=candidate,
                    broker=account.broker,
                    broker_symbol=spec.symbol,
                    first=outcome,
                    min_lot=spec.min_lot,
                    lot_step=spec.lot_step,
                    execution=execution,
                    ref=f"{request.leg_ref or request.from_account}/reroute-{len(hops) + 1}",
                )
            line = account_report(
                signal,
                account_id=candidate,
                status=LegStatus.FILLED,
                requested=quantity,
                tick_size=spec.tick_size,
                started_at=request.started_at,
                outcome=outcome,
                completion=completion,
                reason=f"rerouted from {request.from_account}: {request.reason}",
                client_order_id=order_id,
                size=decision.rationale,
                rerouted_from=request.from_account,
            )
            status = fill_status(quantity, line.filled)
            line = line.model_copy(update={"status": status})
            placed = sizing.filled(signal, spec, decision, line.filled)
            hops.append(
                RerouteHop(
                    to_account=candidate,
                    outcome=status,
                    reason=f"bound by {decision.rationale.binding}",
                    quantity=quantity,
                    filled=line.filled,
                    risk=risk,
                    risk_filled=planning.quantize(placed),
                )
            )
            if line.filled > 0:
                lines.append(line)
        if sizing.placed <= 0:
            outcome_kind = RerouteOutcome.NO_ALTERNATIVE_ACCOUNT
        elif sizing.done:
            outcome_kind = RerouteOutcome.PLACED
        else:
            outcome_kind = RerouteOutcome.PARTLY_PLACED
        return self._result(request, sizing, hops, lines, outcome_kind)

    @staticmethod
    def _result(
        request: RerouteInput,
        sizing: planning.RerouteSizing,
        hops: list[RerouteHop],
        lines: list[AccountReport],
        outcome: RerouteOutcome,
    ) -> RerouteResult:
        return RerouteResult(
            from_account=request.from_account,
            reason=request.reason,
            hops=hops,
            outcome=outcome,
            risk_original=request.original_risk,
            risk_carried=planning.quantize(sizing.carried),
            risk_placed=planning.quantize(sizing.placed),
            reports=lines,
        )

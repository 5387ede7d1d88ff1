"""``OrderRerouteWorkflow``: a failed leg's risk moved to the plan's reserve accounts, a child
of the workflow that runs the leg (``signal-{id}/leg-{n}/reroute``)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orchestrator.domain import expiry, planning
    from orchestrator.domain.book import BookSnapshot, spec_key
    from orchestrator.domain.contracts.activities import Execution
    from orchestrator.domain.contracts.payloads import (
        RerouteInput,
        ReserveRiskRequest,
        SnapshotRequest,
    )
    from orchestrator.domain.ids import client_order_id, reroute_ref
    from orchestrator.domain.positions import Contract
    from orchestrator.domain.report import (
        AccountReport,
        LegStatus,
        RerouteHop,
        RerouteOutcome,
        RerouteResult,
    )
    from orchestrator.domain.values import DenialReason
    from workflows.completion import complete_partial_fill
    from workflows.steps import (
        BOOK_READ,
        DATABASE_RETRY,
        account_report,
        cancel_order,
        fill_status,
        order_request,
        place_order,
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
            if len(hops) >= execution.reroute_max_accounts or sizing.placed_all:
                break
            snapshot: BookSnapshot = await workflow.execute_activity_method(
                Execution.load_snapshot,
                SnapshotRequest(
                    signal_id=signal.signal_id,
                    symbol=signal.symbol,
                    # The failed leg's account too: its currency is the carried risk's.
                    account_ids=[candidate, request.from_account],
                ),
                start_to_close_timeout=BOOK_READ,
                schedule_to_close_timeout=timedelta(minutes=5),
                retry_policy=DATABASE_RETRY,
                summary=f"snapshot {candidate}",
            )
            if snapshot.halted:
                hop(candidate, LegStatus.DENIED, "HALTED: trading halted")
                break
            accounts = {a.account_id: a for a in snapshot.accounts}
            account = accounts.get(candidate)
            if account is None:
                hop(candidate, LegStatus.DENIED, "account no longer in the book")
                continue
            origin = accounts.get(request.from_account)
            if origin is not None and origin.currency != account.currency:
                # No exchange rate here: risk in one currency cannot cap risk in another.
                hop(
                    candidate,
                    LegStatus.DENIED,
                    f"{DenialReason.CURRENCY_DIFFERS}: the risk to carry is in {origin.currency}, "
                    f"this account trades in {account.currency}",
                )
                continue
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
            expired = expiry.expired_detail(request.entry_deadline, workflow.now())
            if expired is not None:
                # Every later target would be later still.
                hop(candidate, LegStatus.DENIED, f"{DenialReason.EXPIRED}: {expired}", quantity)
                break
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
                    ref=reroute_ref(request.leg_ref or request.from_account, len(hops) + 1),
                    entry_deadline=request.entry_deadline,
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
                contract=Contract(
                    tick_size=spec.tick_size,
                    tick_value=spec.tick_value,
                    lot_step=spec.lot_step,
                    min_lot=spec.min_lot,
                ),
                broker=account.broker,
                broker_symbol=spec.symbol,
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

"""One account's leg, run as a coroutine inside a signal (or batch) workflow.

durable timer → atomic risk reservation → place and follow the order → report line.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from orchestrator.models import (
        AccountReport,
        ActivityName,
        CancelOrderRequest,
        ExecutionSettings,
        LegProgress,
        LegStatus,
        OrderOutcome,
        PlaceOrderRequest,
        PlannedLeg,
        ReserveRiskRequest,
        ReserveRiskResult,
        Side,
        Signal,
    )

BROKER_REJECTED = "BrokerRejected"
"""Error type the order activity raises for a broker's refusal (permanent, not retried)."""
NON_RETRYABLE_ORDER_ERRORS = [BROKER_REJECTED, "LedgerInconsistent"]

DATABASE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)


class LegRunner:
    """Runs legs and keeps their live progress for the status query."""

    def __init__(self, signal: Signal, execution: ExecutionSettings, started_at: datetime):
        self._signal = signal
        self._execution = execution
        self._started_at = started_at
        self.progress: dict[str, LegProgress] = {}

    def register(self, legs: list[PlannedLeg], timers_from: datetime) -> None:
        for leg in legs:
            self.progress[leg.account_id] = LegProgress(
                account_id=leg.account_id,
                status=LegStatus.WAITING,
                quantity=leg.quantity,
                delay_ms=leg.delay_ms,
                due_at=timers_from + timedelta(milliseconds=leg.delay_ms),
                client_order_id=leg.client_order_id,
            )

    async def run(self, leg: PlannedLeg) -> AccountReport:
        if leg.delay_ms > 0:
            await workflow.sleep(
                timedelta(milliseconds=leg.delay_ms), summary=f"delay {leg.account_id}"
            )

        self._update(leg, LegStatus.RESERVING)
        reservation = await workflow.execute_activity(
            ActivityName.RESERVE_RISK,
            ReserveRiskRequest(
                signal_id=self._signal.signal_id,
                account_id=leg.account_id,
                client_order_id=leg.client_order_id,
                quantity=leg.quantity,
                risk_amount=leg.risk_amount,
                margin=leg.margin,
            ),
            result_type=ReserveRiskResult,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(minutes=5),
            retry_policy=DATABASE_RETRY,
            summary=f"reserve {leg.account_id}",
        )
        if not reservation.reserved:
            self._update(leg, LegStatus.DENIED, reason=reservation.detail)
            return self._report(leg, LegStatus.DENIED, denial=reservation, outcome=None)

        self._update(leg, LegStatus.WORKING)
        try:
            outcome = await workflow.execute_activity(
                ActivityName.PLACE_AND_FOLLOW_ORDER,
                self._order_request(leg),
                result_type=OrderOutcome,
                start_to_close_timeout=timedelta(seconds=self._execution.order_start_to_close_s),
                schedule_to_close_timeout=timedelta(
                    seconds=self._execution.order_schedule_to_close_s
                ),
                heartbeat_timeout=timedelta(seconds=self._execution.order_heartbeat_s),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=30),
                    non_retryable_error_types=NON_RETRYABLE_ORDER_ERRORS,
                ),
                summary=f"order {leg.client_order_id}",
            )
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == BROKER_REJECTED:
                self._update(leg, LegStatus.REJECTED, reason=cause.message)
                return self._report(leg, LegStatus.REJECTED, reason=cause.message)
            failure = f"order could not be completed: {cause or err}"
            leftover = await self._cancel_leftover(leg, failure)
            self._update(leg, LegStatus.FAILED, reason=failure)
            return self._report(leg, LegStatus.FAILED, reason=failure, outcome=leftover)

        status = _leg_status(outcome)
        reason = None if status is LegStatus.FILLED else f"order ended {outcome.status}"
        self._update(leg, status, reason=reason, filled=outcome.filled_quantity)
        return self._report(leg, status, outcome=outcome, reason=reason)

    async def _cancel_leftover(self, leg: PlannedLeg, reason: str) -> OrderOutcome | None:
        """After an order activity gave up, make sure nothing of the leg works at the broker."""
        result: OrderOutcome | None = await workflow.execute_activity(
            ActivityName.CANCEL_ORDER,
            CancelOrderRequest(
                signal_id=self._signal.signal_id,
                account_id=leg.account_id,
                client_order_id=leg.client_order_id,
                reason=reason,
            ),
            result_type=OrderOutcome | None,  # type: ignore[arg-type]
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DATABASE_RETRY,
            summary=f"cancel {leg.client_order_id}",
        )
        return result

    def _order_request(self, leg: PlannedLeg) -> PlaceOrderRequest:
        signal = self._signal
        return PlaceOrderRequest(
            signal_id=signal.signal_id,
            account_id=leg.account_id,
            client_order_id=leg.client_order_id,
            business_sequence=1,
            broker=leg.broker,
            broker_symbol=leg.broker_symbol,
            side=signal.side,
            order_type=signal.order_type,
            quantity=leg.quantity,
            limit_price=signal.entry if signal.order_type.value == "LIMIT" else None,
            reference_price=signal.entry,
        )

    def _update(
        self,
        leg: PlannedLeg,
        status: LegStatus,
        *,
        reason: str | None = None,
        filled: Decimal | None = None,
    ) -> None:
        current = self.progress[leg.account_id]
        self.progress[leg.account_id] = current.model_copy(
            update={
                "status": status,
                "reason": reason,
                "filled": current.filled if filled is None else filled,
            }
        )

    def _report(
        self,
        leg: PlannedLeg,
        status: LegStatus,
        *,
        outcome: OrderOutcome | None = None,
        reason: str | None = None,
        denial: ReserveRiskResult | None = None,
    ) -> AccountReport:
        elapsed = workflow.now() - self._started_at
        average = outcome.average_price if outcome else None
        slippage = None
        if average is not None:
            # Adverse is positive: paying more on a buy, receiving less on a sell.
            entry = self._signal.entry
            slippage = average - entry if self._signal.side is Side.BUY else entry - average
        return AccountReport(
            account_id=leg.account_id,
            status=status,
            requested=leg.quantity,
            filled=outcome.filled_quantity if outcome else Decimal(0),
            average_price=average,
            slippage=slippage,
            slippage_ticks=(slippage / leg.tick_size) if slippage is not None else None,
            delay_ms=leg.delay_ms,
            latency_ms=int(elapsed / timedelta(milliseconds=1)),
            client_order_id=leg.client_order_id,
            denial=denial.denial if denial else None,
            reason=denial.detail if denial else reason,
            size=leg.size,
            delay=leg.delay,
        )


def _leg_status(outcome: OrderOutcome) -> LegStatus:
    if outcome.filled_quantity >= outcome.quantity:
        return LegStatus.FILLED
    if outcome.filled_quantity > 0:
        return LegStatus.PARTIALLY_FILLED
    return LegStatus.CANCELLED

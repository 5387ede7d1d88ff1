"""One account's leg, run as a coroutine inside a signal (or batch) workflow.

durable timer → one activity that reserves the leg's risk, passes the last gate, writes the
order and sends it, then follows it (for legs due together, one activity for all of their
orders: ``workflows/slices.py``); a partial fill goes to ``PartialFillCompletionWorkflow``,
a broker rejection or capacity lost since planning to ``OrderRerouteWorkflow``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError, is_cancelled_exception
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from orchestrator.domain import expiry, ids
    from orchestrator.domain.contracts import summaries
    from orchestrator.domain.contracts.operators import PauseAccount, StopResult
    from orchestrator.domain.contracts.payloads import RerouteInput, ReserveRiskRequest
    from orchestrator.domain.orders import OrderOutcome
    from orchestrator.domain.planning.decisions import LegOrder, PlannedLeg
    from orchestrator.domain.positions import Contract
    from orchestrator.domain.progress import LegProgress
    from orchestrator.domain.report import AccountReport, CompletionResult, LegStatus
    from orchestrator.domain.settings import ExecutionSettings, PlanSettings
    from orchestrator.domain.signal import Signal
    from orchestrator.domain.values import DenialReason
    from workflows.completion import complete_partial_fill
    from workflows.controls import Controls, Stop
    from workflows.keeper import ONE_KEEPER_SIGNAL_PER_FILL, KeeperLink
    from workflows.order_slots import OrderSlots
    from workflows.reroute import OrderRerouteWorkflow
    from workflows.slices import Slicer
    from workflows.steps import (
        account_report,
        cancel_order,
        child_search_attributes,
        fill_status,
        order_request,
        place_order,
    )


REROUTABLE_DENIALS = frozenset(
    {
        DenialReason.MAX_POSITIONS,
        DenialReason.RISK_BUDGET_EXHAUSTED,
        DenialReason.INSUFFICIENT_MARGIN,
        DenialReason.DRAWDOWN_LIMIT,
        DenialReason.ACCOUNT_DISABLED,
    }
)
"""Pre-trade failures after the timer that move the leg to another account. A pause or a halt
does not: the operator stopped trading, not just this account's capacity."""


def contract_of(leg: LegOrder) -> Contract:
    return Contract(
        tick_size=leg.tick_size,
        tick_value=leg.tick_value,
        lot_step=leg.lot_step,
        min_lot=leg.min_lot,
    )


# --------------------------------------------------------------------------------------------
# The leg

WAITING_STATES = frozenset({LegStatus.WAITING})


class LegRunner:
    """Runs legs and keeps their live progress for the status query."""

    def __init__(
        self,
        signal: Signal,
        *,
        settings: PlanSettings,
        execution: ExecutionSettings,
        started_at: datetime,
        reserve: list[str],
        controls: Controls,
        entry_deadline: datetime | None = None,
        batch: bool = False,
    ):
        self._signal = signal
        self._settings = settings
        self._execution = execution
        self._started_at = started_at
        self._reserve = reserve
        self._controls = controls
        self._entry_deadline = entry_deadline
        self._batch = batch
        self._tasks: dict[str, asyncio.Task[list[AccountReport]]] = {}
        self._slots: OrderSlots | None = None
        self._slicer: Slicer | None = None
        self._keeper = KeeperLink(signal, execution)
        self.progress: dict[str, LegProgress] = {}

    async def run_all(self, legs: Sequence[LegOrder]) -> list[AccountReport]:
        """Run every leg as its own task (so operators can stop working ones), with at most
        ``max_orders_in_flight`` of their orders working at once."""
        self.register(legs, workflow.now())
        # Legs due together place their first orders together (workflows/slices.py).
        self._slicer = Slicer(self._execution)
        limit = self._execution.max_orders_in_flight
        if len(legs) > limit:
            self._slots = OrderSlots(limit)
        for leg in legs:
            self._tasks[leg.account_id] = asyncio.create_task(self.run(leg))
        runs = await asyncio.gather(*self._tasks.values())
        # A batch's keeper holds its own legs' positions only (and their reroutes').
        await self._keeper.entries_done([leg.account_id for leg in legs] if self._batch else None)
        return [line for lines in runs for line in lines]

    def note_pause_after_send(self, pause: PauseAccount) -> None:
        """A pause never touches an order already at the broker; the leg's status says so."""
        progress = self.progress.get(pause.account_id)
        if progress is not None and progress.status is LegStatus.WORKING:
            self.progress[pause.account_id] = progress.model_copy(
                update={
                    "reason": f"paused by {pause.operator or 'unknown'} after its order was "
                    "sent: the order is not touched"
                }
            )

    def stop(self, *, cancel_working: bool) -> StopResult:
        """Apply a halt or cancel already recorded in the controls: waiting legs wake and stop
        in this workflow task; with ``cancel_working``, working legs are cancelled, which
        cancels their orders at the broker (and their children)."""
        stopped = cancelled = 0
        for account_id, progress in self.progress.items():
            if progress.status in WAITING_STATES:
                stopped += 1
            elif progress.status is LegStatus.WORKING and cancel_working:
                task = self._tasks.get(account_id)
                if task is not None and not task.done():
                    task.cancel()
                    cancelled += 1
        return StopResult(
            workflow_id=workflow.info().workflow_id,
            legs_stopped=stopped,
            orders_cancelled=cancelled,
        )

    def register(self, legs: Sequence[LegOrder], timers_from: datetime) -> None:
        for leg in legs:
            self.progress[leg.account_id] = LegProgress(
                account_id=leg.account_id,
                status=LegStatus.WAITING,
                quantity=leg.quantity,
                delay_ms=leg.delay_ms,
                due_at=timers_from + timedelta(milliseconds=leg.delay_ms),
                client_order_id=leg.client_order_id,
            )

    async def run(self, leg: LegOrder) -> list[AccountReport]:
        """The leg's report line, plus the line of the account a reroute moved it to."""
        try:
            return await self._run(leg)
        except asyncio.CancelledError:
            # Cancelled while its order worked: the order was cancelled at the broker on the
            # way out (see place_order); its fills so far stay booked.
            return await self._cancelled(leg)
        except ChildWorkflowError as err:
            # Cancelled while a child worked for it (a completion, a reroute): the child
            # cancelled its order at the broker and ended cancelled. The leg ends cancelled,
            # not the whole signal.
            if not (
                is_cancelled_exception(err) and self._controls.stop_for(leg.account_id) is not None
            ):
                raise
            return await self._cancelled(leg)

    async def _cancelled(self, leg: LegOrder) -> list[AccountReport]:
        stop = self._controls.stop_for(leg.account_id)
        reason = stop.reason if stop else "cancelled"
        # What it filled before is a position: the keeper finds it in the ledger.
        await self._keeper.started()
        self._update(leg, LegStatus.CANCELLED, reason=reason)
        return [self._report(leg, LegStatus.CANCELLED, reason=reason)]

    async def _run(self, leg: LegOrder) -> list[AccountReport]:
        signal = self._signal
        slicer = self._slicer
        if leg.delay_ms > 0:
            # One durable timer, woken early when an operator stops this leg (or a slice
            # forming takes it: it was due within the slice's window anyway).
            due_at = self.progress[leg.account_id].due_at
            if slicer is not None:
                slicer.timer_started(leg.account_id, due_at)
            try:
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        lambda: (
                            self._controls.stop_for(leg.account_id) is not None
                            or (slicer is not None and slicer.pulled(due_at))
                        ),
                        timeout=timedelta(milliseconds=leg.delay_ms),
                        timeout_summary=summaries.delay_timer(leg.account_id),
                    )
            finally:
                if slicer is not None:
                    slicer.woke(leg.account_id)
        stop = self._controls.stop_for(leg.account_id)
        if stop is None and self._slots is not None:
            stop = await self._take_slot(leg)
        if stop is not None:
            self._update(leg, stop.status, reason=stop.reason)
            line = self._report(leg, stop.status, reason=stop.reason)
            if stop.reroute or (
                stop.status is LegStatus.SKIPPED_PAUSED
                and (leg.reroute_on_pause or signal.reroute_on_pause)
            ):
                return await self._reroute(leg, line, stop.reason)
            return [line]
        expired = expiry.expired_detail(self._entry_deadline, workflow.now())
        if expired is not None:
            # Decided here, after the timer and any wait for a slot: the order never leaves,
            # and nothing is rerouted (a reroute's order would be as late).
            if self._slots is not None:
                self._slots.release()
            self._update(leg, LegStatus.DENIED, reason=expired)
            return [
                self._report(leg, LegStatus.DENIED, reason=expired, denial=DenialReason.EXPIRED)
            ]

        reservation = ReserveRiskRequest(
            signal_id=signal.signal_id,
            account_id=leg.account_id,
            client_order_id=leg.client_order_id,
            quantity=leg.quantity,
            risk_amount=leg.risk_amount,
            margin=leg.margin,
        )
        request = order_request(
            signal,
            account_id=leg.account_id,
            broker=leg.broker,
            broker_symbol=leg.broker_symbol,
            quantity=leg.quantity,
            business_sequence=1,
            client_order_id=leg.client_order_id,
        )
        try:
            # Reserve, pass the gate, write the order and send it: one activity.
            self._update(leg, LegStatus.WORKING)
            first = request.model_copy(update={"reservation": reservation})
            attempt = await (
                slicer.place(first) if slicer is not None else place_order(first, self._execution)
            )
            denied = attempt.denied
        finally:
            if self._slots is not None:  # this leg holds one (see _take_slot)
                self._slots.release()
        if denied is not None:
            denial, detail = denied
            self._update(leg, LegStatus.DENIED, reason=detail)
            line = self._report(leg, LegStatus.DENIED, reason=detail, denial=denial)
            if denial in REROUTABLE_DENIALS:
                return await self._reroute(leg, line, f"{denial}: {detail}")
            return [line]

        if attempt.refused is not None:
            code, detail = attempt.refused
            status = LegStatus.HALTED if code is DenialReason.HALTED else LegStatus.DENIED
            self._update(leg, status, reason=detail)
            return [self._report(leg, status, reason=detail, denial=code)]
        if attempt.rejected is not None:
            self._update(leg, LegStatus.REJECTED, reason=attempt.rejected)
            line = self._report(leg, LegStatus.REJECTED, reason=attempt.rejected)
            return await self._reroute(leg, line, attempt.rejected)
        if attempt.outcome is None:
            failure = f"order could not be completed: {attempt.failure}"
            leftover = await cancel_order(
                signal.signal_id,
                leg.account_id,
                leg.client_order_id,
                failure,
                queue=self._execution.broker_queue(leg.broker),
            )
            self._update(leg, LegStatus.FAILED, reason=failure)
            return [self._report(leg, LegStatus.FAILED, reason=failure, outcome=leftover)]

        outcome = attempt.outcome
        completion = None
        partial = 0 < outcome.filled_quantity < outcome.quantity
        if (
            outcome.filled_quantity > 0
            and outcome.average_price is not None
            and (partial or not workflow.patched(ONE_KEEPER_SIGNAL_PER_FILL))
        ):
            # A position from the first fill on: protected before any completion. An order
            # filled whole needs no completion: the keeper hears of it once, from its line.
            await self._keeper.opened(
                leg.account_id,
                broker=leg.broker,
                broker_symbol=leg.broker_symbol,
                contract=contract_of(leg),
                filled=outcome.filled_quantity,
                average=outcome.average_price,
            )
        if partial:
            self._update(leg, LegStatus.WORKING, reason="completing a partial fill")
            completion = await complete_partial_fill(
                signal,
                account_id=leg.account_id,
                broker=leg.broker,
                broker_symbol=leg.broker_symbol,
                first=outcome,
                min_lot=leg.min_lot,
                lot_step=leg.lot_step,
                execution=self._execution,
                ref=ids.leg_ref(leg.sequence),
                entry_deadline=self._entry_deadline,
            )
        filled = outcome.filled_quantity + (completion.filled if completion else Decimal(0))
        status = fill_status(leg.quantity, filled)
        reason = None
        if status is not LegStatus.FILLED:
            reason = (
                f"completion {completion.stopped}: {completion.detail}"
                if completion is not None
                else f"order ended {outcome.status}"
            )
        self._update(leg, status, reason=reason, filled=filled)
        line = self._report(leg, status, outcome=outcome, completion=completion, reason=reason)
        return [await self._keeper.position_line(line)]

    async def _take_slot(self, leg: LegOrder) -> Stop | None:
        """Hold one of the workflow's order slots, waiting for one if all are taken; or the
        operator's stop, if one came first (a slot handed over meanwhile passes on)."""
        assert self._slots is not None
        account_id = leg.account_id
        if self._slots.full:
            self._update(
                leg,
                LegStatus.WAITING,
                reason=f"waiting for an order slot: {self._execution.max_orders_in_flight} "
                "orders of this workflow are working",
            )
        held = await self._slots.acquire(
            account_id, lambda: self._controls.stop_for(account_id) is not None
        )
        stop = self._controls.stop_for(account_id)
        if stop is not None and held:
            self._slots.release()
        return stop

    async def _reroute(self, leg: LegOrder, line: AccountReport, why: str) -> list[AccountReport]:
        signal = self._signal
        ref = ids.leg_ref(leg.sequence)
        result = await workflow.execute_child_workflow(
            OrderRerouteWorkflow.run,
            RerouteInput(
                signal=signal,
                from_account=leg.account_id,
                reason=why,
                original_quantity=leg.quantity,
                original_risk=leg.risk_amount,
                candidates=self._reserve,
                settings=self._settings,
                execution=self._execution,
                started_at=self._started_at,
                leg_ref=ref,
                entry_deadline=self._entry_deadline,
            ),
            id=ids.child_workflow_id(signal.signal_id, ref, "reroute"),
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
            search_attributes=child_search_attributes(signal),
            static_summary=(
                f"reroute of {leg.account_id}'s order ({leg.quantity} lots, risk "
                f"{leg.risk_amount}) for signal {signal.signal_id}: {why}"
            )[:400],
        )
        self._update(leg, line.status, reason=f"{line.reason} → reroute {result.outcome}")
        moved = [await self._keeper.position_line(target) for target in result.reports]
        return [line.model_copy(update={"reroute": result}), *moved]

    def _update(
        self,
        leg: LegOrder,
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
        leg: LegOrder,
        status: LegStatus,
        *,
        outcome: OrderOutcome | None = None,
        completion: CompletionResult | None = None,
        reason: str | None = None,
        denial: DenialReason | None = None,
    ) -> AccountReport:
        return account_report(
            self._signal,
            account_id=leg.account_id,
            status=status,
            requested=leg.quantity,
            tick_size=leg.tick_size,
            started_at=self._started_at,
            outcome=outcome,
            completion=completion,
            reason=reason,
            denial=denial,
            client_order_id=leg.client_order_id,
            size=leg.size if isinstance(leg, PlannedLeg) else None,
            delay=leg.delay if isinstance(leg, PlannedLeg) else None,
            delay_ms=leg.delay_ms,
            contract=contract_of(leg),
            broker=leg.broker,
            broker_symbol=leg.broker_symbol,
        )

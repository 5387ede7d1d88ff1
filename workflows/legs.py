"""One account's leg, run as a coroutine inside a signal (or batch) workflow, and the steps
shared with the completion and reroute children.

durable timer → atomic risk reservation → place and follow the order; then a partial fill
goes to PartialFillCompletionWorkflow, a broker rejection or lost capacity to
OrderRerouteWorkflow.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.workflow import ActivityCancellationType, ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from orchestrator.domain import search_attributes as sa
    from orchestrator.domain.contracts.operators import (
        CancelSignalRequest,
        HaltRequest,
        PauseAccount,
        StopResult,
    )
    from orchestrator.domain.contracts.payloads import (
        ActivityName,
        CancelOrderRequest,
        CompletionInput,
        ErrorType,
        OrderOutcome,
        PlaceOrderRequest,
        RerouteInput,
        ReserveRiskRequest,
        ReserveRiskResult,
        SettleLegRequest,
    )
    from orchestrator.domain.planning.decisions import (
        DelayRationale,
        LegOrder,
        PlannedLeg,
        SizeRationale,
    )
    from orchestrator.domain.progress import LegProgress
    from orchestrator.domain.report import AccountReport, CompletionResult, LegStatus, RerouteResult
    from orchestrator.domain.settings import ExecutionSettings, PlanSettings
    from orchestrator.domain.signal import Signal
    from orchestrator.domain.values import DenialReason, Side

NON_RETRYABLE_ORDER_ERRORS = [
    ErrorType.BROKER_REJECTED,
    ErrorType.ORDER_REFUSED,
    ErrorType.RESERVATION_DENIED,
    ErrorType.LEDGER_INCONSISTENT,
]

DATABASE_STEP = timedelta(seconds=10)
"""start-to-close of a short database step (reserve, settle): a step lost with its worker is
retried on another after this long, so keep it short (the fault suite measures recovery)."""
BOOK_READ = timedelta(seconds=20)
"""start-to-close of reading the book (snapshot, correlation)."""

DATABASE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
ORDER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=NON_RETRYABLE_ORDER_ERRORS,
)

COMPLETION_WORKFLOW = "PartialFillCompletionWorkflow"
REROUTE_WORKFLOW = "OrderRerouteWorkflow"
"""Children are started by type name: they live in ``workflows.children``, which builds on
this module."""

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


# --------------------------------------------------------------------------------------------
# Steps shared by legs and children


@dataclass(frozen=True)
class OrderAttempt:
    """How one place-and-follow attempt ended, classified where it happened."""

    outcome: OrderOutcome | None = None
    rejected: str | None = None
    """The broker's rejection text, verbatim."""
    refused: tuple[DenialReason, str] | None = None
    """Our own last gate refused to send it (halted, account paused): never sent."""
    denied: tuple[DenialReason, str] | None = None
    """The leg's risk reservation, asked for by the order request, was denied: never sent."""
    failure: str | None = None
    timed_out: bool = False


async def place_order(
    request: PlaceOrderRequest,
    execution: ExecutionSettings,
    *,
    deadline: timedelta | None = None,
) -> OrderAttempt:
    """Place and follow one order. With ``deadline``, an order still working then is
    cancelled at the broker (the activity is cancelled and waited for)."""
    queue = execution.broker_queue(request.broker)
    handle = workflow.start_activity(
        ActivityName.PLACE_AND_FOLLOW_ORDER,
        request,
        task_queue=queue,
        result_type=OrderOutcome,
        start_to_close_timeout=timedelta(seconds=execution.order_start_to_close_s),
        schedule_to_close_timeout=timedelta(seconds=execution.order_schedule_to_close_s),
        heartbeat_timeout=timedelta(seconds=execution.order_heartbeat_s),
        retry_policy=ORDER_RETRY,
        cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        summary=f"order {request.client_order_id}",
    )
    timed_out = False
    try:
        if deadline is not None:
            try:
                await workflow.wait_condition(
                    handle.done, timeout=deadline, timeout_summary="completion deadline"
                )
            except TimeoutError:  # the builtin one: wait_condition timed out
                timed_out = True
                handle.cancel()
        return OrderAttempt(outcome=await handle)
    except asyncio.CancelledError:
        # The workflow itself is being cancelled. Never leave the order working: cancel the
        # activity, then cancel at the broker by client order id.
        handle.cancel()
        with contextlib.suppress(ActivityError, asyncio.CancelledError):
            await handle
        await _cancel_at_broker(request, queue)
        raise
    except ActivityError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type == ErrorType.BROKER_REJECTED:
            return OrderAttempt(rejected=cause.message)
        if isinstance(cause, ApplicationError) and cause.type == ErrorType.ORDER_REFUSED:
            code, detail = cause.details[0], cause.details[1]
            return OrderAttempt(refused=(DenialReason(code), str(detail)))
        if isinstance(cause, ApplicationError) and cause.type == ErrorType.RESERVATION_DENIED:
            code, detail = cause.details[0], cause.details[1]
            return OrderAttempt(denied=(DenialReason(code), str(detail)))
        if isinstance(cause, CancelledError) and not timed_out:
            # This leg (or the workflow) is being cancelled; the cancellation reached us
            # through the activity's result.
            await _cancel_at_broker(request, queue)
            raise asyncio.CancelledError(str(cause)) from err
        return OrderAttempt(failure=str(cause or err), timed_out=timed_out)


async def _cancel_at_broker(request: PlaceOrderRequest, queue: str | None) -> None:
    """Cancel by client order id ourselves: a server may record the activity cancelled before
    its thread has reached the broker, so the activity's own cancel is not enough."""
    await cancel_order(
        request.signal_id, request.account_id, request.client_order_id, "cancelled", queue=queue
    )


async def cancel_order(
    signal_id: str, account_id: str, client_order_id: str, reason: str, *, queue: str | None
) -> OrderOutcome | None:
    """Cancel what the broker holds under the id, book it and settle the leg."""
    result: OrderOutcome | None = await workflow.execute_activity(
        ActivityName.CANCEL_ORDER,
        CancelOrderRequest(
            signal_id=signal_id,
            account_id=account_id,
            client_order_id=client_order_id,
            reason=reason,
        ),
        result_type=OrderOutcome | None,  # type: ignore[arg-type]
        task_queue=queue,
        start_to_close_timeout=timedelta(seconds=30),
        retry_policy=DATABASE_RETRY,
        summary=f"cancel {client_order_id}",
    )
    return result


async def reserve_risk(request: ReserveRiskRequest) -> ReserveRiskResult:
    result: ReserveRiskResult = await workflow.execute_activity(
        ActivityName.RESERVE_RISK,
        request,
        result_type=ReserveRiskResult,
        start_to_close_timeout=DATABASE_STEP,
        schedule_to_close_timeout=timedelta(minutes=5),
        retry_policy=DATABASE_RETRY,
        summary=f"reserve {request.account_id}",
    )
    return result


async def settle_leg(signal_id: str, account_id: str) -> None:
    await workflow.execute_activity(
        ActivityName.SETTLE_LEG,
        SettleLegRequest(signal_id=signal_id, account_id=account_id),
        start_to_close_timeout=DATABASE_STEP,
        retry_policy=DATABASE_RETRY,
        summary=f"settle {account_id}",
    )


def order_request(
    signal: Signal,
    *,
    account_id: str,
    broker: str,
    broker_symbol: str,
    quantity: Decimal,
    business_sequence: int,
    client_order_id: str,
    settles_leg: bool = True,
) -> PlaceOrderRequest:
    return PlaceOrderRequest(
        signal_id=signal.signal_id,
        account_id=account_id,
        client_order_id=client_order_id,
        business_sequence=business_sequence,
        broker=broker,
        broker_symbol=broker_symbol,
        side=signal.side,
        order_type=signal.order_type,
        quantity=quantity,
        limit_price=signal.entry if signal.order_type.value == "LIMIT" else None,
        reference_price=signal.entry,
        settles_leg=settles_leg,
    )


ONE_ACTIVITY_PER_LEG = "one-activity-per-leg"
"""Patch: a leg's reservation is made by its order activity, not by an activity of its own."""

ORDERS_IN_FLIGHT = "orders-in-flight"
"""Patch: a signal keeps at most ``ExecutionSettings.max_orders_in_flight`` first orders working
at once, shared out among its batches; legs past it wait their turn (runs recorded before sent
every order as soon as its leg came due)."""

OPAQUE_CHILD_IDS = "opaque-child-ids"
"""Patch: child workflow ids name a leg (``leg-3``), not an account."""


def child_workflow_id(signal_id: str, *, account_id: str, ref: str, kind: str) -> str:
    """``signal-{id}/{ref}/{kind}``. Workflow ids are not encrypted (the codec covers payloads
    only), so they carry a leg reference, never an account id. Runs recorded before the patch
    used the account id and keep it on replay."""
    scope = ref if workflow.patched(OPAQUE_CHILD_IDS) else account_id
    return f"signal-{signal_id}/{scope}/{kind}"


def child_search_attributes(signal: Signal) -> TypedSearchAttributes:
    return TypedSearchAttributes([SearchAttributePair(sa.SIGNAL_ID, signal.signal_id)])


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
) -> CompletionResult:
    """Run the completion child for what the first order left unfilled; ``ref`` names the leg
    in the child's workflow id."""
    result: CompletionResult = await workflow.execute_child_workflow(
        COMPLETION_WORKFLOW,
        CompletionInput(
            signal=signal,
            account_id=account_id,
            broker=broker,
            broker_symbol=broker_symbol,
            remaining=first.quantity - first.filled_quantity,
            min_lot=min_lot,
            lot_step=lot_step,
            first_sequence=2,
            execution=execution,
        ),
        id=child_workflow_id(signal.signal_id, account_id=account_id, ref=ref, kind="completion"),
        result_type=CompletionResult,
        parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
        search_attributes=child_search_attributes(signal),
        static_summary=(
            f"completion of {account_id}'s {first.quantity - first.filled_quantity} lots "
            f"(signal {signal.signal_id})"
        ),
    )
    return result


def leg_ref(leg: LegOrder) -> str:
    return f"leg-{leg.sequence}"


def account_report(
    signal: Signal,
    *,
    account_id: str,
    status: LegStatus,
    requested: Decimal,
    tick_size: Decimal,
    started_at: datetime,
    outcome: OrderOutcome | None = None,
    completion: CompletionResult | None = None,
    reason: str | None = None,
    denial: DenialReason | None = None,
    client_order_id: str | None = None,
    size: SizeRationale | None = None,
    delay: DelayRationale | None = None,
    delay_ms: int | None = None,
    reroute: RerouteResult | None = None,
    rerouted_from: str | None = None,
) -> AccountReport:
    """One report line: fills of the first order and of its completion, volume-weighted."""
    fills: list[tuple[Decimal, Decimal]] = []
    if outcome is not None and outcome.average_price is not None:
        fills.append((outcome.filled_quantity, outcome.average_price))
    if completion is not None and completion.average_price is not None:
        fills.append((completion.filled, completion.average_price))
    filled = sum((q for q, _ in fills), Decimal(0))
    average = sum((q * p for q, p in fills), Decimal(0)) / filled if filled > 0 else None
    slippage = None
    if average is not None:
        # Adverse is positive: paying more on a buy, receiving less on a sell.
        slippage = average - signal.entry if signal.side is Side.BUY else signal.entry - average
    return AccountReport(
        account_id=account_id,
        status=status,
        requested=requested,
        filled=filled,
        average_price=average,
        slippage=slippage,
        slippage_ticks=(slippage / tick_size) if slippage is not None else None,
        delay_ms=delay.delay_ms if delay else delay_ms,
        latency_ms=int((workflow.now() - started_at) / timedelta(milliseconds=1)),
        client_order_id=client_order_id,
        denial=denial,
        reason=reason,
        size=size,
        delay=delay,
        completion=completion,
        reroute=reroute,
        rerouted_from=rerouted_from,
    )


def fill_status(requested: Decimal, filled: Decimal) -> LegStatus:
    if filled >= requested:
        return LegStatus.FILLED
    if filled > 0:
        return LegStatus.PARTIALLY_FILLED
    return LegStatus.CANCELLED


# --------------------------------------------------------------------------------------------
# Operator controls


@dataclass(frozen=True)
class Stop:
    status: LegStatus
    reason: str
    reroute: bool = False


class Controls:
    """What operators have told this workflow: paused accounts, halt, cancel."""

    def __init__(self) -> None:
        self.paused: dict[str, PauseAccount] = {}
        self.halt: HaltRequest | None = None
        self.cancel: CancelSignalRequest | None = None

    def stop_for(self, account_id: str) -> Stop | None:
        """Whether a leg of ``account_id`` that has not sent its order must stop now."""
        if self.cancel is not None:
            return Stop(LegStatus.CANCELLED, _by("signal cancelled", self.cancel))
        if self.halt is not None:
            return Stop(LegStatus.HALTED, _by("trading halted", self.halt))
        pause = self.paused.get(account_id)
        if pause is not None:
            return Stop(LegStatus.SKIPPED_PAUSED, _by("account paused", pause), pause.reroute)
        return None


def _by(what: str, action: PauseAccount | HaltRequest | CancelSignalRequest) -> str:
    return f"{what} by {action.operator or 'unknown'}: {action.reason or 'no reason given'}"


# --------------------------------------------------------------------------------------------
# Orders in flight


def orders_per_batch(execution: ExecutionSettings, batches: int) -> int:
    """Each batch's share of the signal's ``max_orders_in_flight`` (at least one)."""
    return max(1, execution.max_orders_in_flight // batches)


class OrderSlots:
    """At most ``limit`` orders of one workflow working at once, handed out first come, first
    served. A leg due while all are taken waits (still WAITING), and an operator's stop wakes
    it like a timer's. Deterministic: grants follow the order in which legs asked, and a slot
    freed is handed to the next leg in the same workflow task.

    It keeps the backlog in the workflow rather than in the task queue: a server matches a task
    to a waiting poller at once, but one it cannot match goes to its backlog, which costs it
    more per task the longer the backlog grows (measured in ``make bench``)."""

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiting: deque[str] = deque()
        self._granted: set[str] = set()

    @property
    def full(self) -> bool:
        """A leg asking now would wait."""
        return self._free == 0 or bool(self._waiting)

    async def acquire(self, key: str, stopped: Callable[[], bool]) -> bool:
        """Wait for a slot for ``key``: True once it holds one (to be released), False when
        ``stopped`` became true first (it holds none)."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return True
        self._waiting.append(key)
        try:
            await workflow.wait_condition(lambda: key in self._granted or stopped())
        except BaseException:
            self._leave(key)
            raise
        if key in self._granted:
            self._granted.discard(key)
            return True
        self._leave(key)
        return False

    def release(self) -> None:
        if self._waiting:
            self._granted.add(self._waiting.popleft())
        else:
            self._free += 1

    def _leave(self, key: str) -> None:
        """``key`` stops waiting: out of the queue, or, if a slot was already granted to it,
        the slot passes on."""
        if key in self._granted:
            self._granted.discard(key)
            self.release()
        else:
            self._waiting.remove(key)


# --------------------------------------------------------------------------------------------
# The leg

WAITING_STATES = frozenset({LegStatus.WAITING, LegStatus.RESERVING})


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
    ):
        self._signal = signal
        self._settings = settings
        self._execution = execution
        self._started_at = started_at
        self._reserve = reserve
        self._controls = controls
        self._tasks: dict[str, asyncio.Task[list[AccountReport]]] = {}
        self._slots: OrderSlots | None = None
        self.progress: dict[str, LegProgress] = {}

    async def run_all(self, legs: Sequence[LegOrder]) -> list[AccountReport]:
        """Run every leg as its own task (so operators can stop working ones), with at most
        ``max_orders_in_flight`` of their orders working at once."""
        self.register(legs, workflow.now())
        limit = self._execution.max_orders_in_flight
        if len(legs) > limit and workflow.patched(ORDERS_IN_FLIGHT):
            self._slots = OrderSlots(limit)
        for leg in legs:
            self._tasks[leg.account_id] = asyncio.create_task(self.run(leg))
        runs = await asyncio.gather(*self._tasks.values())
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
            stop = self._controls.stop_for(leg.account_id)
            reason = stop.reason if stop else "cancelled"
            self._update(leg, LegStatus.CANCELLED, reason=reason)
            return [self._report(leg, LegStatus.CANCELLED, reason=reason)]

    async def _run(self, leg: LegOrder) -> list[AccountReport]:
        signal = self._signal
        if leg.delay_ms > 0:
            # One durable timer, woken early when an operator stops this leg.
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._controls.stop_for(leg.account_id) is not None,
                    timeout=timedelta(milliseconds=leg.delay_ms),
                    timeout_summary=f"delay {leg.account_id}",
                )
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
            if workflow.patched(ONE_ACTIVITY_PER_LEG):
                # Reserve, pass the gate, write the order and send it: one activity.
                self._update(leg, LegStatus.WORKING)
                attempt = await place_order(
                    request.model_copy(update={"reservation": reservation}), self._execution
                )
                denied = attempt.denied
            else:  # recorded before: the reservation was an activity of its own
                self._update(leg, LegStatus.RESERVING)
                reserved = await reserve_risk(reservation)
                denied = None
                if not reserved.reserved:
                    denied = (reserved.denial or DenialReason.LEG_CLOSED, reserved.detail)
                else:
                    self._update(leg, LegStatus.WORKING)
                    attempt = await place_order(request, self._execution)
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
        if 0 < outcome.filled_quantity < outcome.quantity:
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
                ref=leg_ref(leg),
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
        return [self._report(leg, status, outcome=outcome, completion=completion, reason=reason)]

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
        result = await workflow.execute_child_workflow(
            REROUTE_WORKFLOW,
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
                leg_ref=leg_ref(leg),
            ),
            id=child_workflow_id(
                signal.signal_id, account_id=leg.account_id, ref=leg_ref(leg), kind="reroute"
            ),
            result_type=RerouteResult,
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
            search_attributes=child_search_attributes(signal),
            static_summary=(
                f"reroute of {leg.account_id}'s order ({leg.quantity} lots, risk "
                f"{leg.risk_amount}) for signal {signal.signal_id}: {why}"
            )[:400],
        )
        self._update(leg, line.status, reason=f"{line.reason} → reroute {result.outcome}")
        return [line.model_copy(update={"reroute": result}), *result.reports]

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
        )

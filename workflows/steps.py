"""Steps every workflow of a signal takes: placing and following an order, cancelling one,
settling a leg, reading the book in pages; and the report line of an account.

Each is an activity called by its definition (``orchestrator.domain.contracts.activities``), with
the timeouts and retry policy written once here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from orchestrator.domain import search_attributes as sa
    from orchestrator.domain.book import BookSnapshot
    from orchestrator.domain.contracts.activities import Execution
    from orchestrator.domain.contracts.payloads import (
        CancelOrderRequest,
        ErrorType,
        PlaceOrderRequest,
        SettleLegRequest,
    )
    from orchestrator.domain.correlation import CorrelationResult
    from orchestrator.domain.orders import OrderOutcome, average_price
    from orchestrator.domain.planning.decisions import DelayRationale, SizeRationale
    from orchestrator.domain.positions import Contract
    from orchestrator.domain.report import (
        AccountReport,
        CompletionResult,
        LegStatus,
        RerouteResult,
    )
    from orchestrator.domain.settings import ExecutionSettings
    from orchestrator.domain.signal import Signal
    from orchestrator.domain.values import DenialReason, OrderType, Side

NON_RETRYABLE_ORDER_ERRORS = [
    ErrorType.BROKER_REJECTED,
    ErrorType.ORDER_REFUSED,
    ErrorType.RESERVATION_DENIED,
    ErrorType.LEDGER_INCONSISTENT,
]

DATABASE_STEP = timedelta(seconds=10)
"""start-to-close of a short database step (settle, settings): a step lost with its worker is
retried on another after this long, so keep it short (the fault suite measures recovery)."""
BOOK_READ = timedelta(seconds=20)
"""start-to-close of reading the book (snapshot, correlation)."""
CONTROL_STEP = timedelta(minutes=2)
"""start-to-close of an operator-control step (recording an action, the kill switch's
broadcast to every running signal)."""

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


# --------------------------------------------------------------------------------------------
# Orders


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
    handle = workflow.start_activity_method(
        Execution.place_and_follow_order,
        request,
        task_queue=queue,
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
    return await workflow.execute_activity_method(
        Execution.cancel_order,
        CancelOrderRequest(
            signal_id=signal_id,
            account_id=account_id,
            client_order_id=client_order_id,
            reason=reason,
        ),
        task_queue=queue,
        start_to_close_timeout=timedelta(seconds=30),
        retry_policy=DATABASE_RETRY,
        summary=f"cancel {client_order_id}",
    )


async def settle_leg(signal_id: str, account_id: str) -> None:
    await workflow.execute_activity_method(
        Execution.settle_leg,
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
        limit_price=signal.entry if signal.order_type is OrderType.LIMIT else None,
        reference_price=signal.entry,
        settles_leg=settles_leg,
    )


# --------------------------------------------------------------------------------------------
# The book, in pages

Page = TypeVar("Page", BookSnapshot, CorrelationResult)


async def read_pages(read: Callable[[int], Awaitable[Page]]) -> list[Page]:
    """Every page of a paged book read: the first alone (it says how many there are), then the
    rest at once."""
    pages = [await read(0)]
    pages.extend(await asyncio.gather(*(read(n) for n in range(1, pages[0].pages))))
    return pages


# --------------------------------------------------------------------------------------------
# Children and report lines


def child_search_attributes(signal: Signal) -> TypedSearchAttributes:
    return TypedSearchAttributes([SearchAttributePair(sa.SIGNAL_ID, signal.signal_id)])


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
    contract: Contract | None = None,
    broker: str | None = None,
    broker_symbol: str | None = None,
) -> AccountReport:
    """One report line: fills of the first order and of its completion, volume-weighted."""
    fills: list[tuple[Decimal, Decimal]] = []
    if outcome is not None and outcome.average_price is not None:
        fills.append((outcome.filled_quantity, outcome.average_price))
    if completion is not None and completion.average_price is not None:
        fills.append((completion.filled, completion.average_price))
    filled = sum((q for q, _ in fills), Decimal(0))
    average = average_price(fills)
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
        contract=contract,
        broker=broker,
        broker_symbol=broker_symbol,
    )


def fill_status(requested: Decimal, filled: Decimal) -> LegStatus:
    if filled >= requested:
        return LegStatus.FILLED
    if filled > 0:
        return LegStatus.PARTIALLY_FILLED
    return LegStatus.CANCELLED

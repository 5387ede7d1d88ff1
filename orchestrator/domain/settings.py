"""The settings a signal is planned and executed with, as its workflow carries them. Their
values come from the worker's environment (``orchestrator.config.Settings``), which holds every
default; the bounds are written once, here, as the field types both use.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import (
    Field,
    model_validator,
)

from orchestrator.domain.limits import MAX_BATCH_LEGS
from orchestrator.domain.positions import RefusedStop
from orchestrator.domain.values import Fraction, Model

# The bounds of every setting, written once: the payloads below and the environment's
# ``orchestrator.config.Settings`` (which holds the defaults) both use these types.

PlanVersion = Annotated[int, Field(ge=1)]
DelayMs = Annotated[int, Field(ge=0)]
DelaySeconds = Annotated[Decimal, Field(ge=0)]
SizeVariance = Annotated[Decimal, Field(ge=0, lt=1, decimal_places=4)]
"""Bound of the symmetric size variance: 0.10 draws a factor in [0.90, 1.10]. At most 4
decimals, so the drawn factor (6 places) never leaves the bound."""
CorrelationThreshold = Fraction
LookbackDays = Annotated[int, Field(ge=2)]
MinObservations = Annotated[int, Field(ge=2)]
DataAgeSeconds = Annotated[int, Field(ge=1)]
LegCap = Annotated[int, Field(ge=1)]
BatchSize = Annotated[int, Field(ge=1, le=MAX_BATCH_LEGS)]
"""Legs per batch child: at most :data:`~orchestrator.domain.limits.MAX_BATCH_LEGS`, so a batch's
history and pending work stay within Temporal's limits."""
Seconds = Annotated[int, Field(ge=1)]
PollMs = Annotated[int, Field(ge=1)]
Attempts = Annotated[int, Field(ge=1, le=20)]
RerouteFraction = Annotated[Decimal, Field(gt=0, le=1)]
OrdersInFlight = Annotated[int, Field(ge=1)]
EntryTtlSeconds = Annotated[int, Field(ge=0)]
"""0: entries never expire."""
OrdersPerSecond = Annotated[float, Field(ge=0)]
"""0: no pacing."""


class PlanSettings(Model):
    """Every knob planning reads. Recorded in the workflow's history, so replay sees the same.
    No defaults here: ``orchestrator.config.Settings.plan_settings()`` makes them."""

    plan_version: PlanVersion
    delay_min_ms: DelayMs
    delay_max_ms: DelayMs
    size_variance: SizeVariance
    correlation_threshold: CorrelationThreshold
    correlated_min_gap_ms: DelayMs
    correlation_lookback_days: LookbackDays
    correlation_min_observations: MinObservations
    max_account_data_age_s: DataAgeSeconds
    max_legs: LegCap | None
    """Cap on legs per signal; further eligible accounts become the reroute reserve."""
    batch_size: BatchSize
    """Legs per batch child workflow once a signal has more legs than this."""

    @model_validator(mode="after")
    def _bounds_ordered(self) -> PlanSettings:
        if self.delay_min_ms > self.delay_max_ms:
            raise ValueError("delay_min_ms must not exceed delay_max_ms")
        return self


class ExecutionSettings(Model):
    """Timeouts and retry bounds of the broker activities, recorded in the workflow's history.
    No defaults here: ``orchestrator.config.Settings.execution_settings()`` makes them."""

    order_start_to_close_s: Seconds
    order_schedule_to_close_s: Seconds
    """Give up on placing an order after this long across retries; the leg then ends FAILED
    and any order the broker holds for it is cancelled."""
    order_heartbeat_s: Seconds
    """Cancellation reaches a working order within about 0.8 × this."""
    poll_interval_ms: PollMs
    completion_max_attempts: Attempts
    completion_deadline_s: Seconds
    """A completion stops placing orders after this long; a working order is cancelled."""
    reroute_fraction: RerouteFraction
    """The share of a failed order's risk at the stop a reroute may place elsewhere."""
    reroute_max_accounts: Attempts
    max_orders_in_flight: OrdersInFlight
    """First orders one signal keeps working at once; a large signal's batches each take an
    equal share. Legs due past it wait their turn, in the order they came due."""
    on_refused_stop: RefusedStop
    """A position whose stop the broker refuses is closed at market, or kept UNPROTECTED."""
    broker_task_queues: dict[str, str]
    """Broker name → task queue of the worker that holds that broker's session (a FIX session
    lives in one process). Order and cancel activities of its accounts go there; brokers not
    listed use the workflow's own task queue."""

    entry_ttl_s: EntryTtlSeconds
    """An entry order (a leg's first, a completion's, a reroute target's) not sent within this
    many seconds of the signal workflow's start is denied EXPIRED; 0: never. A signal's own
    ``valid_until`` overrides it. The worker's comes from ``TEO_ENTRY_TTL_S``."""

    exit_delay_min_ms: DelayMs
    exit_delay_max_ms: DelayMs
    """A CLOSE's (or FLATTEN's) closing orders wait a delay drawn in these bounds, per account
    (the workflow's seeded random: the same on replay); 0 and 0: no staggering, all at once."""

    slice_window_ms: DelayMs
    """Legs due within this many milliseconds of the first due leg go to the broker together,
    in one slice (one activity): 0 gathers the legs due in the same workflow task (every
    zero-delay leg); more also wakes legs whose timers would fire within the window."""

    broker_orders_per_s: OrdersPerSecond
    """The pace each worker sends a broker's new orders at (0: as fast as they come); the
    workflow sizes a slice's timeout by it."""

    def broker_queue(self, broker: str) -> str | None:
        return self.broker_task_queues.get(broker)


class ServiceSettings(Model):
    """The settings a signal is planned and executed with: the worker's, read by the signal
    workflow's first activity, so every way in (starter, webhook, ``temporal`` CLI, Web UI)
    plans the same book the same way, whatever the submitter's environment."""

    plan: PlanSettings
    execution: ExecutionSettings

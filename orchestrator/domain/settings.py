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

from orchestrator.domain.values import Fraction, Model


class PlanSettings(Model):
    """Every knob planning reads. Recorded in the workflow input, so replay sees the same."""

    plan_version: Annotated[int, Field(ge=1)] = 1
    delay_min_ms: Annotated[int, Field(ge=0)] = 1_000
    delay_max_ms: Annotated[int, Field(ge=0)] = 30_000
    size_variance: Annotated[Decimal, Field(ge=0, lt=1, decimal_places=4)] = Decimal("0.10")
    """Bound of the symmetric size variance: 0.10 draws a factor in [0.90, 1.10]. At most
    4 decimals, so the drawn factor (6 places) never leaves the bound."""
    correlation_threshold: Fraction = Decimal("0.7")
    correlated_min_gap_ms: Annotated[int, Field(ge=0)] = 5_000
    correlation_lookback_days: Annotated[int, Field(ge=2)] = 60
    correlation_min_observations: Annotated[int, Field(ge=2)] = 20
    max_account_data_age_s: Annotated[int, Field(ge=1)] = 900
    max_legs: Annotated[int, Field(ge=1)] | None = None
    """Cap on legs per signal; further eligible accounts become the reroute reserve."""
    batch_size: Annotated[int, Field(ge=1, le=1000)] = 300
    """Legs per batch child workflow once a signal has more legs than this."""

    @model_validator(mode="after")
    def _bounds_ordered(self) -> PlanSettings:
        if self.delay_min_ms > self.delay_max_ms:
            raise ValueError("delay_min_ms must not exceed delay_max_ms")
        return self


class ExecutionSettings(Model):
    """Timeouts and retry bounds of the broker activities, recorded in the workflow input."""

    order_start_to_close_s: Annotated[int, Field(ge=1)] = 120
    order_schedule_to_close_s: Annotated[int, Field(ge=1)] = 600
    """Give up on placing an order after this long across retries; the leg then ends FAILED
    and any order the broker holds for it is cancelled."""
    order_heartbeat_s: Annotated[int, Field(ge=1)] = 10
    """Cancellation reaches a working order within about 0.8 × this."""
    poll_interval_ms: Annotated[int, Field(ge=1)] = 200
    completion_max_attempts: Annotated[int, Field(ge=1, le=20)] = 3
    completion_deadline_s: Annotated[int, Field(ge=1)] = 120
    """A completion stops placing orders after this long; a working order is cancelled."""
    reroute_fraction: Annotated[Decimal, Field(gt=0, le=1)] = Decimal("0.95")
    """The share of a failed order's risk at the stop a reroute may place elsewhere."""
    reroute_max_accounts: Annotated[int, Field(ge=1, le=20)] = 3
    max_orders_in_flight: Annotated[int, Field(ge=1)] = 600
    """First orders one signal keeps working at once; a large signal's batches each take an
    equal share. Legs due past it wait their turn, in the order they came due."""
    broker_task_queues: dict[str, str] = {}
    """Broker name → task queue of the worker that holds that broker's session (a FIX session
    lives in one process). Order and cancel activities of its accounts go there; brokers not
    listed use the workflow's own task queue."""

    def broker_queue(self, broker: str) -> str | None:
        return self.broker_task_queues.get(broker)


class ServiceSettings(Model):
    """The settings a signal is planned and executed with: the worker's, read by the signal
    workflow's first activity, so every way in (starter, webhook, ``temporal`` CLI, Web UI)
    plans the same book the same way, whatever the submitter's environment."""

    plan: PlanSettings
    execution: ExecutionSettings

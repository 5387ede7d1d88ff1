"""Pure planning of one signal across a book of accounts: eligibility, sizing, scheduling and
the plan that joins them (see :mod:`.plan`). Its modules import nothing of ours but the domain."""

from orchestrator.domain.planning.eligibility import (
    AccountCapacity,
    capacity_denial,
    check_eligibility,
    drawdown_of,
    reduce_only_denial,
    remaining_budget,
)
from orchestrator.domain.planning.plan import (
    correlation_request,
    correlation_settings,
    plan_seed,
    plan_signal,
)
from orchestrator.domain.planning.rules import RULES_VERSION, rules_marker, rules_version_of
from orchestrator.domain.planning.schedule import schedule_delays
from orchestrator.domain.planning.sizing import (
    CARRIED_RISK,
    RerouteSizing,
    SizeDecision,
    commitment,
    draw_variance,
    floor_to_step,
    per_lot_risk,
    quantize,
    size_order,
)

__all__ = [
    "CARRIED_RISK",
    "RULES_VERSION",
    "AccountCapacity",
    "RerouteSizing",
    "SizeDecision",
    "capacity_denial",
    "check_eligibility",
    "commitment",
    "correlation_request",
    "correlation_settings",
    "draw_variance",
    "drawdown_of",
    "floor_to_step",
    "per_lot_risk",
    "plan_seed",
    "plan_signal",
    "quantize",
    "reduce_only_denial",
    "remaining_budget",
    "rules_marker",
    "rules_version_of",
    "schedule_delays",
    "size_order",
]

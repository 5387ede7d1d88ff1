"""The audit of one signal, read from its workflow histories (the signal's and all its
children's): the decision trail in order, replay against the current code, a value-level check
of the plan and of every reroute, and a check that the orders' fills add up to the report."""

from orchestrator.services.audit.check import audit_histories
from orchestrator.services.audit.describe import render
from orchestrator.services.audit.document import (
    AccountAudit,
    Audit,
    Difference,
    TrailEntry,
    UnreadableHistory,
    ValueCheck,
    ValueVerdict,
)

__all__ = [
    "AccountAudit",
    "Audit",
    "Difference",
    "TrailEntry",
    "UnreadableHistory",
    "ValueCheck",
    "ValueVerdict",
    "audit_histories",
    "render",
]

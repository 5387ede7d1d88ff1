"""The custom search attributes that make signal runs findable in the Temporal UI and CLI."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from orchestrator.domain.report import SignalStatus
from orchestrator.domain.signal import Signal

SIGNAL_ID = SearchAttributeKey.for_keyword("SignalId")
SYMBOL = SearchAttributeKey.for_keyword("Symbol")
SIDE = SearchAttributeKey.for_keyword("Side")
SIGNAL_STATUS = SearchAttributeKey.for_keyword("SignalStatus")
PLANNING_RULES = SearchAttributeKey.for_keyword("PlanningRules")
"""The planning rules a signal was planned under (``v2``), readable in the Web UI."""

ALL = (SIGNAL_ID, SYMBOL, SIDE, SIGNAL_STATUS, PLANNING_RULES)


def for_signal(signal: Signal, status: SignalStatus) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(SIGNAL_ID, signal.signal_id),
            SearchAttributePair(SYMBOL, signal.symbol),
            SearchAttributePair(SIDE, signal.side.value),
            SearchAttributePair(SIGNAL_STATUS, status.value),
        ]
    )

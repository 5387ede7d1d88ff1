"""Summaries Temporal shows beside commands (timers, activities, children) that something else
reads back: written and parsed here only."""

from __future__ import annotations

DELAY_TIMER = "delay "
"""A leg's delay timer: ``delay {account}``, read back by the audit to compare delays."""


def delay_timer(account_id: str) -> str:
    return f"{DELAY_TIMER}{account_id}"


def delay_timer_account(summary: str) -> str | None:
    """The account a delay timer's summary names; ``None`` for another timer."""
    return summary.removeprefix(DELAY_TIMER) if summary.startswith(DELAY_TIMER) else None

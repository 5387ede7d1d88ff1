"""Entries expire: an entry order that could not leave by its signal's deadline is never sent.

The deadline is decided once per signal, in its workflow, from the workflow's start time and
the entry TTL (or the signal's own ``valid_until``); each check compares it with
``workflow.now()``. Both are in the history, so a replay decides the same.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from orchestrator.domain.signal import Signal


def entry_deadline(signal: Signal, ttl_s: int, started_at: datetime) -> datetime | None:
    """When the signal's entries stop leaving: its ``valid_until`` if it has one, else
    ``started_at`` plus ``ttl_s`` seconds; ``None`` (never) when the TTL is 0 and the signal
    sets none."""
    if signal.valid_until is not None:
        return signal.valid_until
    if ttl_s <= 0:
        return None
    return started_at + timedelta(seconds=ttl_s)


def expired_detail(deadline: datetime | None, now: datetime) -> str | None:
    """Why an entry due ``now`` must not leave, or ``None`` when it may (the deadline itself
    is exclusive: an entry due exactly then is too late)."""
    if deadline is None or now < deadline:
        return None
    late = now - deadline
    return (
        f"entry expired: not sent by {deadline.isoformat(timespec='seconds')} "
        f"({_seconds(late)} late); the market has moved on"
    )


def _seconds(delta: timedelta) -> str:
    return f"{delta.total_seconds():.3f}".rstrip("0").rstrip(".") + " s"

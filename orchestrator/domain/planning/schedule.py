"""Scheduling: a delay per account within bounds, correlated accounts spread apart."""

from __future__ import annotations

import random
from collections import defaultdict

from orchestrator.domain.planning.decisions import (
    DelayRationale,
)
from orchestrator.domain.settings import PlanSettings


def schedule_delays(
    rng: random.Random,
    account_ids: list[str],
    groups: dict[str, str | None],
    settings: PlanSettings,
) -> dict[str, DelayRationale]:
    """A delay per account within [min, max]; members of one correlated group are spread so
    consecutive ones are at least the correlated gap apart.

    When a group is too large for the window ((k−1) × gap > max − min) the gap is shrunk to fit
    and the rationale records the gap actually kept, so bounds are never exceeded silently.
    """
    lo, hi = settings.delay_min_ms, settings.delay_max_ms
    members: dict[str, list[str]] = defaultdict(list)
    singles: list[str] = []
    for account_id in sorted(account_ids):
        group = groups.get(account_id)
        if group is None:
            singles.append(account_id)
        else:
            members[group].append(account_id)
    for group in [g for g, m in members.items() if len(m) == 1]:
        singles.extend(members.pop(group))
    singles.sort()

    result: dict[str, DelayRationale] = {}
    for account_id in singles:
        result[account_id] = DelayRationale(
            delay_ms=rng.randint(lo, hi), group=None, group_size=1, effective_gap_ms=0
        )
    for group in sorted(members):
        ids = members[group]
        k = len(ids)
        gap = min(settings.correlated_min_gap_ms, (hi - lo) // (k - 1))
        draws = sorted(rng.randint(lo, hi - (k - 1) * gap) for _ in range(k))
        order = list(ids)
        rng.shuffle(order)
        for i, account_id in enumerate(order):
            result[account_id] = DelayRationale(
                delay_ms=draws[i] + i * gap, group=group, group_size=k, effective_gap_ms=gap
            )
    return result

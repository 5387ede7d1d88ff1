"""Correlation of account returns (numpy): groups, strongest peers, too-short histories flagged.

Runs in an activity, never in workflow code. Floats live only inside this module; results cross
the boundary as ``Decimal``. The output is O(N) — a group id, the maximum correlation and a
capped peer list per account — never the O(N²) matrix, which would not fit a workflow payload.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from orchestrator.models import AccountCorrelation, CorrelationResult

_PLACES = Decimal("0.0001")


def correlate(
    account_ids: list[str],
    days: list[date],
    returns: dict[str, dict[date, Decimal]],
    *,
    threshold: Decimal,
    min_observations: int,
    max_peers: int,
) -> CorrelationResult:
    """Pearson correlation over ``days``; missing days are skipped pairwise by zero-filling the
    demeaned series (the usual approximation for sparse gaps).

    Accounts with fewer than ``min_observations`` returns are flagged ``insufficient_history``
    and left ungrouped: we do not guess a correlation we cannot measure.
    """
    ids = sorted(account_ids)
    index = {d: i for i, d in enumerate(days)}
    matrix = np.full((len(days), len(ids)), np.nan)
    for j, account_id in enumerate(ids):
        for day, value in returns.get(account_id, {}).items():
            i = index.get(day)
            if i is not None:
                matrix[i, j] = float(value)
    observations = np.sum(~np.isnan(matrix), axis=0) if days else np.zeros(len(ids), dtype=int)
    usable = observations >= min_observations

    corr = _correlation_matrix(matrix[:, usable]) if usable.any() else np.zeros((0, 0))
    usable_ids = [a for a, ok in zip(ids, usable, strict=True) if ok]
    groups = _groups(corr, float(threshold))

    results: list[AccountCorrelation] = []
    position = {a: k for k, a in enumerate(usable_ids)}
    for j, account_id in enumerate(ids):
        k = position.get(account_id)
        if k is None:
            results.append(
                AccountCorrelation(
                    account_id=account_id,
                    group=None,
                    max_correlation=None,
                    peers=[],
                    observations=int(observations[j]),
                    insufficient_history=True,
                )
            )
            continue
        row = corr[k].copy()
        row[k] = -np.inf
        above = np.flatnonzero(row >= float(threshold))
        strongest = above[np.argsort(-row[above], kind="stable")][:max_peers]
        best = float(np.max(row)) if len(row) > 1 else None
        root = groups[k]
        in_group = int(np.sum(groups == root)) > 1
        results.append(
            AccountCorrelation(
                account_id=account_id,
                group=f"G-{usable_ids[root]}" if in_group else None,
                max_correlation=(
                    Decimal(repr(best)).quantize(_PLACES) if best is not None else None
                ),
                peers=[usable_ids[p] for p in strongest],
                observations=int(observations[j]),
                insufficient_history=False,
            )
        )
    return CorrelationResult(threshold=threshold, accounts=results)


def _correlation_matrix(matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    centred = matrix - np.nanmean(matrix, axis=0)
    centred = np.nan_to_num(centred, nan=0.0)
    norms = np.sqrt(np.sum(centred * centred, axis=0))
    norms[norms == 0] = np.inf  # a constant series correlates with nothing
    scaled = centred / norms
    result: npt.NDArray[np.float64] = np.clip(scaled.T @ scaled, -1.0, 1.0)
    return result


def _groups(corr: npt.NDArray[np.float64], threshold: float) -> npt.NDArray[np.intp]:
    """Connected components of the graph "correlation ≥ threshold" (union-find).

    Each component is named by its smallest member index, so names do not depend on the
    order pairs are visited.
    """
    n = corr.shape[0]
    parent = np.arange(n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = int(parent[x])
        return x

    rows, cols = np.nonzero(np.triu(corr >= threshold, k=1))
    for a, b in zip(rows.tolist(), cols.tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(n)], dtype=np.intp)

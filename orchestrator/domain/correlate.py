"""Correlation of account returns (numpy): groups, strongest peers, too-short histories flagged.

Runs in an activity, never in workflow code. Floats live only inside this module; results cross
the boundary as ``Decimal``. The output is O(N) — a group id, the maximum correlation and a
capped peer list per account — never the O(N²) matrix, which would not fit a workflow payload.

Nothing loops in Python per return or per pair of accounts: 5,000 accounts × 250 days take under
a second, a third of it converting the 1.25M ``Decimal`` returns to floats. The matrix is scanned
in blocks of rows, so besides the matrix itself the temporaries stay small. The results are those
of the former loop-based implementation to the bit (``tests/unit/test_correlation_equivalence.py``
keeps it as the reference): mind the order of the float operations.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from itertools import chain, repeat

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_array
from scipy.sparse.csgraph import connected_components

from orchestrator.domain.correlation import AccountCorrelation, CorrelationResult

_PLACES = Decimal("0.0001")
_BLOCK_CELLS = 1 << 21
"""Rows of the correlation matrix are scanned in blocks of about this many cells (16 MiB)."""
_HEAVY_SHARE = 16
"""A row with more than ``max_peers`` and more than 1/16 of its cells above the threshold has
its strongest cells picked by partition (linear), not by sorting them all."""

Floats = npt.NDArray[np.float64]
Flags = npt.NDArray[np.bool_]
Indices = npt.NDArray[np.intp]


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
    matrix = _returns_matrix(ids, days, returns)
    observations = np.sum(~np.isnan(matrix), axis=0) if days else np.zeros(len(ids), dtype=int)
    usable = observations >= min_observations

    corr = _correlation_matrix(matrix[:, usable]) if usable.any() else np.zeros((0, 0))
    del matrix
    usable_ids = [a for a, ok in zip(ids, usable, strict=True) if ok]
    np.fill_diagonal(corr, -np.inf)  # an account is not its own peer
    cut = float(threshold)
    best, peers, first_links = _scan(corr, cut, max_peers)
    roots, grouped = _groups(corr, cut, first_links)
    del corr

    results: list[AccountCorrelation] = []
    position = {a: k for k, a in enumerate(usable_ids)}
    counts = observations.tolist()
    for j, account_id in enumerate(ids):
        k = position.get(account_id)
        if k is None:
            results.append(
                AccountCorrelation(
                    account_id=account_id,
                    group=None,
                    max_correlation=None,
                    peers=[],
                    observations=counts[j],
                    insufficient_history=True,
                )
            )
            continue
        results.append(
            AccountCorrelation(
                account_id=account_id,
                group=f"G-{usable_ids[roots[k]]}" if grouped[k] else None,
                max_correlation=(
                    Decimal(repr(best[k])).quantize(_PLACES) if len(usable_ids) > 1 else None
                ),
                peers=[usable_ids[p] for p in peers[k]],
                observations=counts[j],
                insufficient_history=False,
            )
        )
    return CorrelationResult(threshold=threshold, accounts=results)


def _returns_matrix(
    ids: list[str], days: list[date], returns: dict[str, dict[date, Decimal]]
) -> Floats:
    """Days × accounts, ``NaN`` where an account has no return that day. Returns on days not
    in ``days`` are ignored; accounts absent from ``returns`` have none."""
    index = {d: i for i, d in enumerate(days)}
    matrix = np.full((len(days), len(ids)), np.nan)
    series = [returns.get(account_id, {}) for account_id in ids]
    sizes = np.fromiter(map(len, series), dtype=np.intp, count=len(series))
    total = int(sizes.sum())
    rows = np.fromiter(
        chain.from_iterable(map(index.get, s, repeat(-1)) for s in series),
        dtype=np.intp,
        count=total,
    )
    values = np.fromiter(
        map(float, chain.from_iterable(s.values() for s in series)),
        dtype=np.float64,
        count=total,
    )
    columns = np.repeat(np.arange(len(ids)), sizes)
    known = rows >= 0
    matrix[rows[known], columns[known]] = values[known]
    return matrix


def _correlation_matrix(matrix: Floats) -> Floats:
    centred = matrix - np.nanmean(matrix, axis=0)
    np.nan_to_num(centred, copy=False, nan=0.0)
    norms = np.sqrt(np.sum(centred * centred, axis=0))
    norms[norms == 0] = np.inf  # a constant series correlates with nothing
    centred /= norms
    result: Floats = centred.T @ centred
    np.clip(result, -1.0, 1.0, out=result)
    return result


def _blocks(n: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the blocks of rows of an n × n matrix."""
    step = max(1, _BLOCK_CELLS // max(n, 1))
    return [(start, min(start + step, n)) for start in range(0, n, step)]


def _scan(
    corr: Floats, threshold: float, max_peers: int
) -> tuple[list[float], list[list[int]], Indices]:
    """Block by block of rows: each row's maximum, its peers (at or above ``threshold``,
    strongest first, equal correlations by index, at most ``max_peers``) and its first link
    (its lowest higher-numbered account at or above ``threshold``, -1 if none)."""
    n = corr.shape[0]
    best: list[float] = []
    peers: list[list[int]] = []
    first_links = np.full(n, -1, dtype=np.intp)
    for start, stop in _blocks(n):
        block = corr[start:stop]
        above = block >= threshold
        upper = np.triu(above, k=start + 1)
        first_links[start:stop] = np.where(upper.any(axis=1), upper.argmax(axis=1), -1)
        best.extend(np.max(block, axis=1).tolist())
        peers.extend(_strongest(block, above, max_peers))
    return best, peers, first_links


def _strongest(block: Floats, above: Flags, max_peers: int) -> list[list[int]]:
    """Each row's peers: the columns ``above``, by correlation descending then column
    ascending, sliced ``[:max_peers]`` (as a list would be: a negative cap drops the last)."""
    if max_peers == 0:
        return [[] for _ in range(block.shape[0])]
    chosen = above
    if max_peers > 0:
        # Rows with many cells above: keep their ``max_peers`` strongest before sorting.
        counts = np.count_nonzero(above, axis=1)
        heavy = np.flatnonzero(counts > max(max_peers, block.shape[1] // _HEAVY_SHARE))
        if heavy.size:
            chosen = above.copy()
            chosen[heavy] = _top(block[heavy], above[heavy], max_peers)
    rows, columns = np.nonzero(chosen)  # by row, then by column
    order = np.lexsort((-block[rows, columns], rows))  # stable: equal values keep column order
    bounds = np.cumsum(np.count_nonzero(chosen, axis=1))[:-1]
    return [part[:max_peers].tolist() for part in np.split(columns[order], bounds)]


def _top(values: Floats, above: Flags, m: int) -> Flags:
    """Per row, the ``m`` largest of the ``above`` cells (each row has more than ``m``); of
    the cells equal to the m-th largest, those of the lowest columns."""
    # Negated, so the m-th largest is the m-th smallest: numpy's partition is quick for a small
    # k, slow for a large k amid many equal cells (the cells not above, here).
    work = np.where(above, -values, np.inf)
    cut = np.partition(work, m - 1, axis=1)[:, m - 1 : m]
    chosen = work < cut
    level = (work == cut) & above
    room = m - np.count_nonzero(chosen, axis=1)
    tied = np.flatnonzero(np.count_nonzero(level, axis=1) > room)
    if tied.size:  # more cells equal to the m-th largest than places left: lowest columns
        level[tied] &= np.cumsum(level[tied], axis=1) <= room[tied, None]
    chosen |= level
    return chosen


def _groups(corr: Floats, threshold: float, first_links: Indices) -> tuple[list[int], list[bool]]:
    """Connected components of the graph "correlation ≥ threshold" (upper triangle): for each
    account the smallest index in its component (which names the group) and whether the
    component has more than one account.

    In two passes, so a large group never needs its O(N²) edges at once: the components of
    the first links (a forest: one edge per account), then those joined by the edges that run
    between two trees of that forest.
    """
    n = corr.shape[0]
    linked = np.flatnonzero(first_links >= 0)
    _, trees = connected_components(_graph(n, linked, first_links[linked]), directed=False)
    trees = np.asarray(trees, dtype=np.intp)
    sources: list[Indices] = []
    targets: list[Indices] = []
    for start, stop in _blocks(n):
        block = corr[start:stop]
        upper = np.triu(block >= threshold, k=start + 1)
        upper &= trees[start:stop, None] != trees[None, :]
        rows, columns = np.nonzero(upper)
        sources.append(trees[rows + start])
        targets.append(trees[columns])
    count = int(trees.max()) + 1 if n else 0
    joined = _graph(count, _concatenated(sources), _concatenated(targets))
    _, merged = connected_components(joined, directed=False)
    labels = np.asarray(merged, dtype=np.intp)[trees]
    _, first = np.unique(labels, return_index=True)  # first occurrence: smallest member
    sizes = np.bincount(labels)
    roots: list[int] = first[labels].tolist()
    grouped: list[bool] = (sizes[labels] > 1).tolist()
    return roots, grouped


def _graph(n: int, sources: Indices, targets: Indices) -> object:
    return csr_array((np.ones(len(sources), dtype=np.bool_), (sources, targets)), shape=(n, n))


def _concatenated(parts: list[Indices]) -> Indices:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.intp)

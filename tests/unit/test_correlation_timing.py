"""The correlation timing helper (``bench.correlation_timing``), on a small book: its book has
the promised shape and its figures the promised keys. No timing is asserted."""

from __future__ import annotations

import statistics
from decimal import Decimal

from bench.correlation_timing import CLUSTERS, synthetic_returns, time_correlation


def test_the_synthetic_book_has_every_account_most_days_and_decimal_returns() -> None:
    ids, days, returns = synthetic_returns(accounts=120, days=40, seed=3)

    assert len(ids) == len(set(ids)) == 120
    assert len(days) == 40
    assert days == sorted(days)
    assert set(returns) == set(ids)
    assert all(set(series) <= set(days) for series in returns.values())
    assert all(isinstance(v, Decimal) for series in returns.values() for v in series.values())
    present = sum(len(series) for series in returns.values())
    assert 0.95 * 120 * 40 < present < 120 * 40
    assert synthetic_returns(accounts=120, days=40, seed=3) == (ids, days, returns)


def test_time_correlation_reports_three_runs_and_the_clusters_as_groups() -> None:
    figures = time_correlation(accounts=2 * CLUSTERS, days=60, seed=5)

    assert set(figures) == {"accounts", "days", "median_s", "runs_s", "groups"}
    assert (figures["accounts"], figures["days"]) == (2 * CLUSTERS, 60)
    assert len(figures["runs_s"]) == 3
    assert figures["median_s"] == statistics.median(figures["runs_s"])
    # Two accounts per cluster, correlated about 0.8 with each other: nearly every cluster.
    assert CLUSTERS * 0.8 <= figures["groups"] <= CLUSTERS

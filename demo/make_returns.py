"""Regenerate ``returns.csv`` for the demo book (deterministic: seeded numpy).

Three correlated groups share a common factor: A = alpha-01, alpha-02, beta-03;
B = alpha-04, beta-05, beta-09; C = alpha-06, beta-07. Every other account trades its own
strategy, and alpha-12 has only ten days of history (too little to correlate).

    python demo/make_returns.py
"""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import numpy as np

GROUPS = {
    "A": ["alpha-01", "alpha-02", "beta-03"],
    "B": ["alpha-04", "beta-05", "beta-09"],
    "C": ["alpha-06", "beta-07"],
}
INDEPENDENT = [
    "alpha-08",
    "alpha-10",
    "beta-11",
    "alpha-13",
    "beta-14",
    "alpha-15",
    "beta-16",
    "alpha-17",
    "beta-18",
]
SHORT_HISTORY = ["alpha-12"]
DAYS = 90


def main() -> None:
    rng = np.random.default_rng(20260105)
    start = date(2026, 1, 5)
    days = [start + timedelta(days=i) for i in range(DAYS)]
    series: dict[str, np.ndarray] = {}
    for members in GROUPS.values():
        factor = rng.normal(0, 0.01, DAYS)
        for account in members:
            series[account] = factor + rng.normal(0, 0.003, DAYS)
    for account in INDEPENDENT:
        series[account] = rng.normal(0, 0.01, DAYS)
    for account in SHORT_HISTORY:
        series[account] = rng.normal(0, 0.01, DAYS)
    path = Path(__file__).with_name("returns.csv")
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["account_id", "day", "return"])
        for account in sorted(series):
            span = range(DAYS - 10, DAYS) if account in SHORT_HISTORY else range(DAYS)
            for i in span:
                writer.writerow([account, days[i].isoformat(), f"{series[account][i]:.6f}"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

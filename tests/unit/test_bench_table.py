"""The bench's report (``bench.table``): medians, ratios ours ÷ floor taken per repeat, and the
table's cells say what they compute. Pure functions on made-up runs; no timing."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bench.table import Row, done, median, pair, ratio, summarize, table, total_cpu


@dataclass
class FakeRun:
    scenario: str
    variant: str
    legs: int
    repeat: int
    ms_per_leg: float
    process_cpu_ms_per_leg: float = 1.0
    server_cpu_ms_per_leg: float | None = 2.0
    database_cpu_ms_per_leg: float | None = 0.5
    first_order_s: float | None = 0.1
    last_order_s: float | None = 1.0
    filled_orders: int | None = None
    keepers_terminated: int = 0


def test_ratio_is_ours_over_floor_and_missing_when_it_cannot_be() -> None:
    assert ratio(6.0, 3.0) == 2.0
    assert ratio(None, 3.0) is None
    assert ratio(6.0, None) is None
    assert ratio(6.0, 0.0) is None
    # A CPU delta below zero (a PostgreSQL backend gone between samples) gives no ratio.
    assert ratio(6.0, -1.0) is None
    assert ratio(-1.0, 3.0) is None


def test_median_skips_missing_values() -> None:
    assert median([3.0, None, 1.0, 2.0]) == 2.0
    assert median([None, None]) is None


def test_total_cpu_adds_the_worker_the_dev_server_and_postgresql() -> None:
    run = FakeRun("entry", "ours", 10, 1, 5.0, 1.5, 2.0, 0.25)
    assert total_cpu(run) == pytest.approx(3.75)
    assert total_cpu(FakeRun("sync", "ours", 10, 1, 5.0, 1.5, None, None)) == pytest.approx(1.5)
    assert total_cpu(FakeRun("sync", "ours", 10, 1, 5.0, 1.5, None, -1.0)) == pytest.approx(1.5)


def test_the_ratio_is_the_median_of_per_repeat_ratios_not_the_ratio_of_medians() -> None:
    # Per repeat: 1/1, 2/4, 3/1 -> ratios 1, 0.5, 3, median 1; the medians 2 and 1 would say 2.
    ours = [FakeRun("entry", "ours", 100, r, ms) for r, ms in ((1, 1.0), (2, 2.0), (3, 3.0))]
    floor = [FakeRun("entry", "floor", 100, r, ms) for r, ms in ((1, 1.0), (2, 4.0), (3, 1.0))]

    (row,) = summarize([*floor, *ours])

    assert (row.scenario, row.legs, row.repeats) == ("entry", 100, 3)
    assert row.ours["wall_ms_per_leg"] == 2.0
    assert row.floor["wall_ms_per_leg"] == 1.0
    assert row.ratios["wall_ms_per_leg"] == pytest.approx(1.0)
    # CPU too: the same CPU on both sides -> 1 for every CPU ratio.
    assert row.ratios["worker_cpu_ms_per_leg"] == pytest.approx(1.0)
    assert row.ratios["total_cpu_ms_per_leg"] == pytest.approx(1.0)


def test_ratios_pair_runs_of_the_same_repeat() -> None:
    ours = [FakeRun("entry", "ours", 10, 1, 8.0), FakeRun("entry", "ours", 10, 2, 2.0)]
    floor = [FakeRun("entry", "floor", 10, 2, 1.0), FakeRun("entry", "floor", 10, 1, 4.0)]

    (row,) = summarize([*ours, *floor])

    assert row.ratios["wall_ms_per_leg"] == pytest.approx(2.0)  # 8/4 and 2/1


def test_rows_come_by_scenario_then_n_and_a_scenario_without_a_floor_has_no_ratio() -> None:
    runs = [
        FakeRun("sync", "ours", 10, 1, 3.0, server_cpu_ms_per_leg=None),
        FakeRun("exit", "ours", 10, 1, 3.0, filled_orders=10),
        FakeRun("exit", "floor", 10, 1, 1.5),
        FakeRun("entry", "ours", 100, 1, 3.0, filled_orders=99),
        FakeRun("entry", "floor", 100, 1, 1.0),
        FakeRun("entry", "ours", 10, 1, 3.0, filled_orders=10),
        FakeRun("entry", "floor", 10, 1, 1.0),
    ]

    rows = summarize(runs)

    assert [(r.scenario, r.legs) for r in rows] == [
        ("entry", 10),
        ("entry", 100),
        ("exit", 10),
        ("sync", 10),
    ]
    assert rows[-1].floor == {} and rows[-1].ratios == {}
    assert rows[1].filled_min == 99


def test_the_table_shows_ours_slash_floor_and_the_ratio() -> None:
    row = Row(
        scenario="entry",
        legs=1000,
        repeats=3,
        ours={"wall_ms_per_leg": 6.5, "first_order_s": 0.25},
        floor={"wall_ms_per_leg": 4.0, "first_order_s": 0.125},
        ratios={"wall_ms_per_leg": 1.6},
        filled_min=1000,
    )
    sync = Row(scenario="sync", legs=10, repeats=1, ours={"wall_ms_per_leg": 3.0}, floor={})

    assert pair(row, "wall_ms_per_leg", ".2f") == "6.50 / 4.00 (×1.60)"
    assert pair(row, "first_order_s", ".2f", with_ratio=False) == "0.25 / 0.12"
    assert pair(row, "server_cpu_ms_per_leg", ".2f") == "- / - (×-)"
    assert pair(sync, "wall_ms_per_leg", ".2f") == "3.00"
    text = table([row, sync])
    lines = text.splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| entry | 1,000 | 3 | 0.25 / 0.12 |")
    assert "6.50 / 4.00 (×1.60)" in lines[2]
    assert lines[2].endswith("| 1,000/1,000 |")
    assert lines[3].startswith("| sync | 10 | 1 |")


def test_the_done_cell_counts_the_fewest_done_and_the_keepers_terminated() -> None:
    exit_runs = [
        FakeRun("exit", "ours", 500, 1, 3.0, filled_orders=500),
        FakeRun("exit", "ours", 500, 2, 3.0, filled_orders=498),
    ]
    exit_runs[1].keepers_terminated = 2

    (row,) = summarize(exit_runs)

    assert done(row) == "498/500, 2 keepers terminated"
    assert done(Row("sync", 10, 1, {}, {})) == "-"

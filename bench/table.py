"""The bench's report: medians over the repeats, ratios ours/floor measured side by side, and
the tables. Pure functions of the runs (tested in ``tests/unit/test_bench_table.py``).

A ratio is computed per repeat (ours and the floor of the same scenario, N and repeat, run one
after the other) and the median of those ratios is reported; the figures beside it are the
medians of each side.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

THROUGHPUT_LEGS = 10
"""Accounts per signal (floor legs per workflow) in the throughput loop."""

SCENARIO_ORDER = ("entry", "staggered", "exit", "sync")
FLOOR = "floor"
OURS = "ours"


class RunLike(Protocol):
    """What the report reads of a run (``bench.runs.Run``)."""

    scenario: str
    variant: str
    legs: int
    repeat: int
    first_order_s: float | None
    last_order_s: float | None
    ms_per_leg: float
    process_cpu_ms_per_leg: float
    server_cpu_ms_per_leg: float | None
    database_cpu_ms_per_leg: float | None
    filled_orders: int | None


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values present; ``None`` when there are none."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(ours: float | None, floor: float | None) -> float | None:
    """ours ÷ floor; ``None`` when either is missing, the floor is zero or below, or ours is
    below zero (a PostgreSQL backend that exits between two samples takes its CPU with it, so
    a delta can come out negative: no ratio of that)."""
    if ours is None or floor is None or floor <= 0 or ours < 0:
        return None
    return ours / floor


def total_cpu(run: RunLike) -> float:
    """CPU ms per leg of the three: this process (the workers), the dev server, PostgreSQL;
    a part that came out below zero (see ``ratio``) counts as zero."""
    parts = (run.process_cpu_ms_per_leg, run.server_cpu_ms_per_leg, run.database_cpu_ms_per_leg)
    return sum(max(0.0, part or 0.0) for part in parts)


METRICS: dict[str, Callable[[RunLike], float | None]] = {
    "first_order_s": lambda r: r.first_order_s,
    "last_order_s": lambda r: r.last_order_s,
    "wall_ms_per_leg": lambda r: r.ms_per_leg,
    "worker_cpu_ms_per_leg": lambda r: r.process_cpu_ms_per_leg,
    "server_cpu_ms_per_leg": lambda r: r.server_cpu_ms_per_leg,
    "database_cpu_ms_per_leg": lambda r: r.database_cpu_ms_per_leg,
    "total_cpu_ms_per_leg": total_cpu,
}
"""Every figure of a row: medians of each side, and the median of the per-repeat ratios."""


@dataclass
class Row:
    scenario: str
    legs: int
    repeats: int
    """Repeats of ours."""
    ours: dict[str, float | None]
    floor: dict[str, float | None]
    """Empty when the scenario has no floor (the account sync)."""
    ratios: dict[str, float | None] = field(default_factory=dict)
    """Median over the repeats of ours ÷ floor of the same repeat."""
    filled_min: int | None = None
    """The fewest FILLED orders (closed positions, for exits) over the repeats."""
    keepers_terminated: int = 0
    """Exits: keepers the bench terminated, still open after their CLOSE, over the repeats."""


def summarize(runs: Sequence[RunLike]) -> list[Row]:
    """One row per scenario and N (scenarios in ``SCENARIO_ORDER``, then N ascending)."""
    keys = {(r.scenario, r.legs) for r in runs}
    order = {s: i for i, s in enumerate(SCENARIO_ORDER)}
    rows: list[Row] = []
    for scenario, legs in sorted(keys, key=lambda k: (order.get(k[0], len(order)), k[1])):
        ours = [r for r in runs if (r.scenario, r.legs, r.variant) == (scenario, legs, OURS)]
        floor = [r for r in runs if (r.scenario, r.legs, r.variant) == (scenario, legs, FLOOR)]
        if not ours:
            continue
        floor_of = {r.repeat: r for r in floor}
        row = Row(
            scenario=scenario,
            legs=legs,
            repeats=len(ours),
            ours={k: median(f(r) for r in ours) for k, f in METRICS.items()},
            floor={k: median(f(r) for r in floor) for k, f in METRICS.items()} if floor else {},
        )
        if floor:
            row.ratios = {
                k: median(ratio(f(r), f(floor_of[r.repeat])) for r in ours if r.repeat in floor_of)
                for k, f in METRICS.items()
            }
        filled = [r.filled_orders for r in ours if r.filled_orders is not None]
        row.filled_min = min(filled) if filled else None
        row.keepers_terminated = sum(getattr(r, "keepers_terminated", 0) for r in ours)
        rows.append(row)
    return rows


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def pair(row: Row, key: str, spec: str, *, with_ratio: bool = True) -> str:
    """``ours / floor (×ratio)``; ours alone when the row has no floor."""
    ours = fmt(row.ours.get(key), spec)
    if not row.floor:
        return ours
    cell = f"{ours} / {fmt(row.floor.get(key), spec)}"
    if with_ratio:
        cell += f" (×{fmt(row.ratios.get(key), '.2f')})"
    return cell


HEADER = (
    "scenario",
    "N",
    "reps",
    "first order s, ours / floor",
    "last order s, ours / floor",
    "wall ms/leg, ours / floor (×)",
    "worker CPU ms/leg (×)",
    "dev server CPU ms/leg (×)",
    "PostgreSQL CPU ms/leg (×)",
    "CPU total ms/leg (×)",
    "done",
)


def table(rows: Sequence[Row]) -> str:
    """A Markdown table: every cell ours / floor, with the median per-repeat ratio (×)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        cells = [
            row.scenario,
            f"{row.legs:,}",
            str(row.repeats),
            pair(row, "first_order_s", ".2f", with_ratio=False),
            pair(row, "last_order_s", ".2f", with_ratio=False),
            pair(row, "wall_ms_per_leg", ".2f"),
            pair(row, "worker_cpu_ms_per_leg", ".2f"),
            pair(row, "server_cpu_ms_per_leg", ".2f"),
            pair(row, "database_cpu_ms_per_leg", ".2f"),
            pair(row, "total_cpu_ms_per_leg", ".2f"),
            done(row),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def done(row: Row) -> str:
    """The fewest done over the repeats / N, and the keepers terminated, if any."""
    cell = "-" if row.filled_min is None else f"{row.filled_min:,}/{row.legs:,}"
    if row.keepers_terminated:
        cell += f", {row.keepers_terminated} keepers terminated"
    return cell


def table_notes() -> str:
    return (
        "Each cell: ours / floor (× the median over the repeats of ours ÷ floor of the same "
        "repeat, run one after the other); figures are medians over the repeats. entry: one "
        "signal, zero delays (floor: one no-op activity per leg, no timer); staggered: delays "
        "drawn by ours, the floor waits the same delays (a timer then the activity on both "
        "sides); exit: a CLOSE of the entry's N positions (floor: as for the entry); sync: the "
        "account sync of N accounts on the paper broker, in this process, no Temporal and no "
        "floor (wall: the first sync; CPU includes writing its book). first/last order: from "
        "submission to the first and the last order at the broker (floor: its no-op "
        "activities). Worker: this process (both workers, the bench); dev server and PostgreSQL: "
        "their processes. done: the fewest FILLED entries (exit: accounts closed) over the "
        "repeats / N; keepers terminated: still open after their CLOSE (see the log)."
    )


def detail_table(runs: Sequence[Any]) -> str:
    """Ours' histories per scenario and N (medians; the largest figures: their maximum)."""
    head = (
        "| scenario | N | events/leg | WFT/leg | bytes/leg | histories | largest history "
        "| largest payload |"
    )
    lines = [head, "|" + "---|" * 8]
    keys = sorted(
        {(r.scenario, r.legs) for r in runs if r.variant == OURS and r.scenario != "sync"},
        key=lambda k: (SCENARIO_ORDER.index(k[0]) if k[0] in SCENARIO_ORDER else 9, k[1]),
    )
    for scenario, legs in keys:
        chosen = [r for r in runs if (r.scenario, r.legs, r.variant) == (scenario, legs, OURS)]
        events = median(r.events_per_leg for r in chosen)
        wft = median(r.workflow_tasks_per_leg for r in chosen)
        size = median(r.history_bytes_per_leg for r in chosen)
        largest = max(chosen, key=lambda r: r.largest_history_bytes)
        payload = max(r.largest_payload_bytes for r in chosen)
        lines.append(
            f"| {scenario} | {legs:,} | {fmt(events, '.2f')} | {fmt(wft, '.3f')} | "
            f"{fmt(size, ',.0f')} | {max(r.histories for r in chosen)} | "
            f"{largest.largest_history_events:,} events, "
            f"{largest.largest_history_bytes / 1024:.0f} KB | {payload / 1024:.1f} KB |"
        )
    return "\n".join(lines)


def breakdown(runs: Sequence[Any], scenario: str = "entry") -> str:
    """Of the largest N of ``scenario``, last repeat of each side: events and bytes per leg by
    event type, CPU per leg by thread kind, the activities' queue and run times, timers."""
    chosen = [r for r in runs if r.scenario == scenario]
    if not chosen:
        return ""
    legs = max(r.legs for r in chosen)
    last = {r.variant: r for r in chosen if r.legs == legs}
    names = sorted({n for r in last.values() for n in r.event_types})
    width = max(len(n) for n in [*names, "CPU ms per leg, this process"])
    head = f"{f'{scenario} N={legs}, per leg':<{width}}  " + "  ".join(
        f"{v + ' n':>16}  {'B':>6}" for v in last
    )
    lines = [head, "-" * len(head)]
    for name in names:
        cells = "  ".join(
            f"{r.event_types.get(name, 0) / r.legs:>16.3f}  "
            f"{r.event_bytes.get(name, 0) / r.legs:>6.0f}"
            for r in last.values()
        )
        lines.append(f"{name:<{width}}  {cells}")
    kinds = sorted({k for r in last.values() for k in r.cpu_ms_per_leg_by_thread})
    lines += [
        "",
        f"{'CPU ms per leg, this process':<{width}}  " + "  ".join(f"{v:>24}" for v in last),
    ]
    for kind in kinds:
        cells = "  ".join(
            f"{r.cpu_ms_per_leg_by_thread.get(kind, 0.0):>24.2f}" for r in last.values()
        )
        lines.append(f"{kind:<{width}}  {cells}")
    for label, key in (("(dev server)", "server"), ("(PostgreSQL, all processes)", "database")):
        cells = "  ".join(
            f"{fmt(getattr(r, f'{key}_cpu_ms_per_leg'), '.2f'):>24}" for r in last.values()
        )
        lines.append(f"{label:<{width}}  {cells}")
    lines += [
        "",
        f"{'activity':<{width}}  {'variant':>12}  {'count':>6}  {'retried':>7}"
        f"  {'queue p50/p95 ms':>16}  {'run p50/p95/max ms':>20}",
    ]
    for r in last.values():
        for name, a in r.activities.items():
            lines.append(
                f"{name:<{width}}  {r.variant:>12}  {a['count']:>6.0f}  {a['retried']:>7.0f}  "
                f"{a['queue_ms_p50']:>7.0f}/{a['queue_ms_p95']:<8.0f}  "
                f"{a['run_ms_p50']:>7.0f}/{a['run_ms_p95']:.0f}/{a['run_ms_max']:.0f}"
            )
    for r in last.values():
        t = r.timers
        if "fire_ms_p50" in t:
            lines.append(
                f"{'timer started → fired':<{width}}  {r.variant:>12}  {t['count']:>6.0f}  "
                f"{'':>7}  {'':>16}  {t['fire_ms_p50']:>7.0f}/{t['fire_ms_p95']:.0f}"
                f"/{t['fire_ms_max']:.0f}"
            )
        else:
            lines.append(f"{'timers started':<{width}}  {r.variant:>12}  {t.get('count', 0):>6.0f}")
    return "\n".join(lines)


def throughput_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for kind in ("floor", "ours"):
        t = result[kind]
        lines.append(
            f"  {kind:<5} {t.signals_per_s:7.2f} signals/s  {t.legs_per_s:8.1f} legs/s  "
            f"({t.completed_in_window} completed in {t.window_s:.0f} s, {t.in_flight} in flight; "
            f"{t.completed_after_window} more in {t.drain_s:.1f} s after; {t.failed} failed)  "
            f"latency p50/p95/max {fmt(t.latency_ms_p50, '.0f')}/{fmt(t.latency_ms_p95, '.0f')}"
            f"/{fmt(t.latency_ms_max, '.0f')} ms  cpu/signal "
            f"{fmt(t.process_cpu_ms_per_signal, '.1f')} ms, srv "
            f"{fmt(t.server_cpu_ms_per_signal, '.1f')} ms, db "
            f"{fmt(t.database_cpu_ms_per_signal, '.1f')} ms"
        )
        if t.errors:
            lines.append(f"        errors: {t.errors}")
    ours = result["ours"]
    lines.append(
        f"  ours/floor signals/s {fmt(result['ratio_signals_per_s'], '.3f')}; ledger: "
        f"{ours.ledger_filled_legs} FILLED legs for {ours.completed_in_window} signals "
        f"completed in the window ({ours.ledger_short_signals} short)"
    )
    return lines


def extras(result: dict[str, Any], in_flight: int, window_s: float) -> str:
    """Throughput, replay, RSS, planning and correlation, as lines."""
    lines: list[str] = []
    if "throughput" in result:
        lines.append(
            f"throughput ({THROUGHPUT_LEGS} legs per signal, closed loop, {in_flight} in "
            f"flight, {window_s:.0f} s window, counted only if completed in it):"
        )
        lines += throughput_lines(result["throughput"])
    replay = result.get("replay", {})
    if "error" in replay:
        lines.append(f"replay: failed: {replay['error']}")
    elif replay:
        lines.append(
            f"replay of the N={replay['legs']} signal ({replay['histories']} histories, "
            f"{replay['events']} events): {replay['seconds']:.2f} s, "
            f"{replay['ms_per_leg']:.3f} ms/leg, {len(replay['failures'])} failures"
        )
    lines.append(
        f"peak RSS {result['peak_rss_kib_bench'] / 1024:.0f} MiB (this process: the workers, "
        f"the bench, fetched histories; not the dev server), "
        f"{result['peak_rss_kib_end'] / 1024:.0f} MiB at the end"
    )
    planning = result.get("planning")
    if planning and "error" not in planning:
        lines.append(
            f"planning {planning['accounts']} accounts (plan_signal, median of 3): "
            f"{planning['correlated']['median_s'] * 1000:.0f} ms with correlation groups, "
            f"{planning['empty_correlation']['median_s'] * 1000:.0f} ms with none"
        )
    elif planning:
        lines.append(f"planning: failed: {planning['error']}")
    correlation = result.get("correlation")
    if correlation and "median_s" in correlation:
        lines.append(
            f"correlation {correlation['accounts']} accounts × {correlation['days']} days "
            f"(bench.correlation_timing, median): {correlation['median_s']:.2f} s"
        )
    elif correlation:
        lines.append(f"correlation: {correlation.get('missing') or correlation.get('error')}")
    return "\n".join(lines)


if __name__ == "__main__":
    # python -m bench.table bench-results/overhead-<tag>.json: the table again, from the runs.
    import json
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    document = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    saved = [SimpleNamespace(**run) for run in document["runs"]]
    print(table(summarize(saved)))

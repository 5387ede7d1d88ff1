"""Keeping every payload well under Temporal's limits, whatever the size of the book.

Temporal refuses a payload over 2 MB and warns from 256 KB; a history over 10 MB or 10,240
events is cut off. A signal over 5,000 accounts must stay far from all of these, so:

* the snapshot and the correlation result arrive in **pages** of at most :data:`PAGE_BYTES`
  (the activity takes the reading once per run, stores it, and serves it page by page);
* legs run in **batch children** of at most :data:`BATCH_BYTES` of input, each leg without its
  rationale (the plan keeps it; the signal's history re-derives it);
* a report too large for one payload stays in the batches' results, and the signal's own
  result is a summary.

Pure functions: workflow code calls them, and must get the same answer on replay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel

from orchestrator.domain import limits
from orchestrator.domain.book import BookSnapshot
from orchestrator.domain.correlation import CorrelationResult
from orchestrator.domain.planning.decisions import Denial, LegOrder, PlannedLeg

M = TypeVar("M", bound=BaseModel)


def json_size(model: BaseModel) -> int:
    return len(model.model_dump_json())


def split(items: Sequence[M], budget: int, size: Callable[[M], int] = json_size) -> list[list[M]]:
    """Consecutive runs of ``items``, each at most ``budget`` bytes (an item larger than the
    budget goes alone). Always at least one run, possibly empty."""
    pages: list[list[M]] = [[]]
    used = 0
    for item in items:
        n = size(item)
        if pages[-1] and used + n > budget:
            pages.append([])
            used = 0
        pages[-1].append(item)
        used += n
    return pages


def snapshot_pages(snapshot: BookSnapshot, budget: int | None = None) -> list[BookSnapshot]:
    runs = split(snapshot.accounts, budget or limits.PAGE_BYTES)
    return [
        snapshot.model_copy(update={"accounts": run, "page": n, "pages": len(runs)})
        for n, run in enumerate(runs)
    ]


def join_snapshot(pages: Sequence[BookSnapshot]) -> BookSnapshot:
    """One snapshot from its pages, in page order (``pages`` still says how many). A halt seen
    by any page holds."""
    first = pages[0]
    if len(pages) == 1:
        return first
    specs = {k: v for p in pages for k, v in p.specs.items()}
    return first.model_copy(
        update={
            "accounts": [a for p in pages for a in p.accounts],
            "specs": specs,
            "halted": any(p.halted for p in pages),
        }
    )


def correlation_pages(
    result: CorrelationResult, budget: int | None = None
) -> list[CorrelationResult]:
    runs = split(result.accounts, budget or limits.PAGE_BYTES)
    return [
        result.model_copy(update={"accounts": run, "page": n, "pages": len(runs)})
        for n, run in enumerate(runs)
    ]


def join_correlation(pages: Sequence[CorrelationResult]) -> CorrelationResult:
    first = pages[0]
    if len(pages) == 1:
        return first
    return first.model_copy(update={"accounts": [a for p in pages for a in p.accounts]})


@dataclass
class Batch:
    legs: list[LegOrder] = field(default_factory=list)
    denials: list[Denial] = field(default_factory=list)
    size: int = 0


def needs_batches(legs: Sequence[PlannedLeg], denials: Sequence[Denial], batch_size: int) -> bool:
    """Whether the legs must run in batch children: more legs than ``batch_size`` (or
    :data:`MAX_BATCH_LEGS`), or a report whose lines would not fit the signal's own result."""
    if len(legs) > min(batch_size, limits.MAX_BATCH_LEGS):
        return True
    lines = sum(json_size(leg) for leg in legs) + sum(json_size(d) for d in denials)
    return lines > limits.REPORT_BYTES


def batches(
    legs: Sequence[PlannedLeg],
    denials: Sequence[Denial],
    *,
    batch_size: int,
    budget: int | None = None,
) -> list[Batch]:
    """Slices of the plan for batch children, in plan order: at most ``batch_size`` (and
    :data:`MAX_BATCH_LEGS`) legs and ``budget`` bytes each. Legs travel without their
    rationale (:meth:`PlannedLeg.slim`). Denials fill the last slice, then slices of their
    own."""
    budget = budget or limits.BATCH_BYTES
    batch_size = min(batch_size, limits.MAX_BATCH_LEGS)
    out = [Batch()]
    for leg in legs:
        slim = leg.slim()
        n = json_size(slim)
        last = out[-1]
        if last.legs and (len(last.legs) >= batch_size or last.size + n > budget):
            out.append(Batch())
            last = out[-1]
        last.legs.append(slim)
        last.size += n
    for denial in denials:
        n = json_size(denial)
        last = out[-1]
        if (last.legs or last.denials) and last.size + n > budget:
            out.append(Batch())
            last = out[-1]
        last.denials.append(denial)
        last.size += n
    return out

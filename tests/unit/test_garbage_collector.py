"""The worker's process sets the garbage collector for its workload (``TEO_GC_YOUNG_THRESHOLD``)
and leaves Python's defaults alone when told 0."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from orchestrator.config import Settings
from worker import tune_garbage_collector


@pytest.fixture(autouse=True)
def restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_the_worker_collects_its_young_objects_less_often_and_freezes_what_it_imported() -> None:
    _, middle, oldest = gc.get_threshold()
    tune_garbage_collector(Settings(gc_young_threshold=50_000))
    assert gc.get_threshold() == (50_000, middle, oldest)
    assert gc.get_freeze_count() > 0


def test_zero_leaves_pythons_collector_as_it_is() -> None:
    before = gc.get_threshold()
    tune_garbage_collector(Settings(gc_young_threshold=0))
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_the_default_is_the_tuned_one() -> None:
    assert Settings().gc_young_threshold == 50_000

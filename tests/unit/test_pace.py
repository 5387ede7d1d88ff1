"""The per-broker pace of new orders (``TEO_BROKER_ORDERS_PER_S``), on a fake clock: each send
takes the next free instant, so sends asked for at once go out one gap apart."""

from __future__ import annotations

import pytest

from activities import order_steps
from activities.order_steps import Pace


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 9))
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(order_steps, "time", fake)
    return fake


def test_sends_asked_for_at_once_go_out_one_gap_apart(clock: FakeTime) -> None:
    pace = Pace(4)  # 4 orders a second: 0.25 s apart
    sent_at = []
    for _ in range(4):
        pace.wait()
        sent_at.append(clock.now)
    assert sent_at == [100.0, 100.25, 100.5, 100.75]


def test_a_send_after_a_quiet_spell_waits_for_nothing(clock: FakeTime) -> None:
    pace = Pace(2)
    pace.wait()
    clock.now += 10
    pace.wait()
    assert clock.slept == []


def test_zero_means_unpaced(clock: FakeTime) -> None:
    pace = Pace(0)
    for _ in range(100):
        pace.wait()
    assert clock.slept == [] and clock.now == 100.0

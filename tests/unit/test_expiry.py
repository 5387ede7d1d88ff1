"""Entries expire: the deadline a signal's entries leave by, and the check against it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from orchestrator.config import Settings
from orchestrator.domain.expiry import entry_deadline, expired_detail
from orchestrator.domain.settings import ExecutionSettings
from orchestrator.domain.signal import Signal

STARTED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def signal(**overrides: object) -> Signal:
    values: dict[str, object] = {
        "signal_id": "s-1",
        "symbol": "EURUSD",
        "side": "BUY",
        "entry": Decimal("1.085"),
        "stop": Decimal("1.082"),
    }
    return Signal.model_validate(values | overrides)


def test_the_deadline_is_the_start_plus_the_ttl() -> None:
    assert entry_deadline(signal(), 120, STARTED) == STARTED + timedelta(seconds=120)


def test_a_ttl_of_zero_never_expires() -> None:
    assert entry_deadline(signal(), 0, STARTED) is None
    assert expired_detail(None, STARTED + timedelta(days=365)) is None


def test_valid_until_overrides_the_ttl_whether_earlier_later_or_with_no_ttl() -> None:
    earlier = STARTED + timedelta(seconds=30)
    later = STARTED + timedelta(hours=2)

    assert entry_deadline(signal(valid_until=earlier), 120, STARTED) == earlier
    assert entry_deadline(signal(valid_until=later), 120, STARTED) == later
    assert entry_deadline(signal(valid_until=later), 0, STARTED) == later


def test_an_entry_due_before_the_deadline_may_go_one_due_at_or_after_it_has_expired() -> None:
    deadline = STARTED + timedelta(seconds=120)

    assert expired_detail(deadline, deadline - timedelta(milliseconds=1)) is None
    assert expired_detail(deadline, deadline) is not None
    detail = expired_detail(deadline, deadline + timedelta(seconds=1, milliseconds=500))
    assert detail == (
        "entry expired: not sent by 2026-03-02T09:02:00+00:00 (1.5 s late); the market has moved on"
    )


def test_valid_until_needs_a_timezone() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        signal(valid_until="2026-03-02T09:05:00")
    assert signal(valid_until="2026-03-02T10:05:00+01:00").valid_until == STARTED + timedelta(
        minutes=5
    )


def test_the_ttl_defaults_to_120_s_and_every_run_carries_its_own() -> None:
    assert Settings().execution_settings().entry_ttl_s == 120
    # The workflow's settings carry the TTL the worker had: none is assumed for a run.
    without = Settings().execution_settings().model_dump(exclude={"entry_ttl_s"})
    with pytest.raises(ValidationError, match="entry_ttl_s"):
        ExecutionSettings.model_validate(without)
    with pytest.raises(ValidationError):
        Settings(entry_ttl_s=-1)

"""The webhook's pure parts: the TradingView alert mapping and the per-source token bucket."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orchestrator.domain.errors import ValidationFailed
from orchestrator.interfaces.http.webhook import TokenBucket, TradingViewAlert
from orchestrator.services.submit import parse_signal
from tests.http_support import tradingview_alert


def alert(**overrides: object) -> TradingViewAlert:
    return TradingViewAlert.model_validate(tradingview_alert(**overrides))


def test_buy_alert_with_stop_offset_puts_the_stop_below_close_exactly() -> None:
    signal = parse_signal(alert().to_signal_fields())

    assert (signal.side.value, signal.entry, signal.stop) == (
        "BUY",
        Decimal("1.08500"),
        Decimal("1.08200"),
    )
    assert signal.symbol == "EURUSD"


def test_sell_alert_with_stop_offset_puts_the_stop_above_close() -> None:
    signal = parse_signal(alert(action="SELL").to_signal_fields())

    assert signal.stop == Decimal("1.08800")


def test_exchange_prefix_of_the_ticker_is_dropped() -> None:
    assert alert(ticker="FX:GBPUSD").to_signal_fields()["symbol"] == "GBPUSD"


def test_derived_id_is_stable_for_the_same_alert_and_ignores_the_secret() -> None:
    first = alert().to_signal_fields()["signal_id"]

    assert alert(secret="another").to_signal_fields()["signal_id"] == first
    assert alert(time="2026-11-24T07:00:00Z").to_signal_fields()["signal_id"] != first
    assert alert(close="1.08501").to_signal_fields()["signal_id"] != first
    parse_signal({**alert().to_signal_fields()})  # a valid signal id


def test_explicit_id_is_used_and_time_is_then_optional() -> None:
    fields = alert(id="strategy-7", time=None).to_signal_fields()

    assert fields["signal_id"] == "strategy-7"


def test_numbers_in_the_alert_stay_exact_decimals() -> None:
    payload = tradingview_alert(close=Decimal("1.1"), stop_offset=Decimal("0.003"))

    fields = TradingViewAlert.model_validate(payload).to_signal_fields()

    assert fields["stop"] == Decimal("1.097")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"stop_offset": None}, "stop"), ({"stop": "1.08"}, "stop"), ({"time": None}, "time")],
)
def test_alert_problems_name_the_alert_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        alert(**overrides).to_signal_fields()

    assert [location for location, _ in raised.value.problems] == [field]


def test_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(per_minute=30, burst=2, clock=lambda: now[0])

    assert [bucket.take("a"), bucket.take("a")] == [0, 0]
    assert bucket.take("a") == pytest.approx(2.0)  # one token per 2 s
    assert bucket.take("b") == 0  # sources are independent
    now[0] = 2.0
    assert bucket.take("a") == 0
    assert bucket.take("a") > 0


def test_bucket_forgets_the_least_recently_seen_sources_beyond_its_bound() -> None:
    now = [0.0]
    bucket = TokenBucket(per_minute=1, burst=1, clock=lambda: now[0], max_sources=2)
    bucket.take("a")
    bucket.take("b")
    bucket.take("c")  # evicts "a"

    assert bucket.take("a") == 0  # a fresh bucket again
    assert bucket.take("c") > 0

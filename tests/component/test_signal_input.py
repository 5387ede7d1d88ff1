"""Signal input: refused with the field named, or accepted with its prices exact."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import func, select
from temporalio.client import Client

from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import SignalRow
from orchestrator.config import Settings
from orchestrator.domain.errors import ValidationFailed
from orchestrator.domain.values import OrderType, Side
from orchestrator.services.submit import parse_signal, submit_signal
from tests.component.conftest import CliRunner
from tests.support import account, book, load


def signal_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "signal_id": "sig-2026.03.02_001",
        "symbol": "EURUSD",
        "side": "BUY",
        "entry": "1.08500",
        "stop": "1.08200",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def refused(raw: str | dict[str, Any]) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        parse_signal(raw, source="signal.json")
    return caught.value


def named(error: ValidationFailed, field: str) -> bool:
    """Whether some problem names ``field``, by its location or in its message."""
    return any(field in location or field in message for location, message in error.problems)


def test_missing_stop_is_refused_at_the_stop_field() -> None:
    data = signal_data()
    del data["stop"]

    error = refused(json.dumps(data))

    assert error.source == "signal.json"
    assert [loc for loc, _ in error.problems] == ["stop"]


def test_buy_with_stop_above_entry_is_refused_naming_stop() -> None:
    error = refused(json.dumps(signal_data(side="BUY", entry="1.08500", stop="1.08600")))

    assert named(error, "stop")
    assert any("below entry for a BUY" in message for _, message in error.problems)


def test_buy_with_stop_equal_to_entry_is_refused() -> None:
    error = refused(json.dumps(signal_data(side="BUY", entry="1.08500", stop="1.085")))

    assert named(error, "stop")


def test_sell_with_stop_below_entry_is_refused_naming_stop() -> None:
    error = refused(json.dumps(signal_data(side="SELL", entry="1.27000", stop="1.26900")))

    assert named(error, "stop")
    assert any("above entry for a SELL" in message for _, message in error.problems)


def test_take_profit_on_the_wrong_side_is_refused_naming_it() -> None:
    error = refused(json.dumps(signal_data(take_profit="1.08000")))

    assert named(error, "take_profit")


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("entry", {"entry": "0", "stop": "1.08200"}),
        ("entry", {"entry": "-1.08500"}),
        ("stop", {"stop": "-1.08200"}),
        ("stop", {"stop": "0"}),
        ("entry", {"entry": "NaN"}),
        ("entry", {"entry": "Infinity"}),
    ],
)
def test_non_positive_or_non_finite_price_is_refused_at_its_field(
    field: str, overrides: dict[str, Any]
) -> None:
    error = refused(json.dumps(signal_data(**overrides)))

    assert field in [loc for loc, _ in error.problems]


@pytest.mark.parametrize(
    "text",
    ['{"signal_id": "s-1", "symbol": "EURUSD"', "not json at all", "", '{"entry": 1.0,}'],
)
def test_malformed_json_is_refused(text: str) -> None:
    error = refused(text)

    assert error.problems
    assert error.problems[0][0] == ""
    assert "JSON" in error.problems[0][1]


def test_json_that_is_not_an_object_is_refused() -> None:
    error = refused("[1, 2, 3]")

    assert error.problems


def test_unknown_extra_field_is_refused_naming_it() -> None:
    error = refused(json.dumps(signal_data(quantity="5")))

    assert [loc for loc, _ in error.problems] == ["quantity"]


@pytest.mark.parametrize(
    "signal_id", ["bad id", "sig/1", "-leading-dash", "sig;drop", "", "x" * 65, "sigé"]
)
def test_signal_id_with_bad_characters_is_refused_naming_it(signal_id: str) -> None:
    error = refused(json.dumps(signal_data(signal_id=signal_id)))

    assert [loc for loc, _ in error.problems] == ["signal_id"]


def test_unknown_side_is_refused_naming_it() -> None:
    error = refused(json.dumps(signal_data(side="LONG")))

    assert [loc for loc, _ in error.problems] == ["side"]


def test_several_problems_are_all_named() -> None:
    data = signal_data(signal_id="bad id", entry="0")
    del data["stop"]

    error = refused(json.dumps(data))

    assert {loc for loc, _ in error.problems} == {"signal_id", "entry", "stop"}


def test_good_signal_is_accepted_with_prices_exactly_preserved() -> None:
    raw = json.dumps(
        signal_data(
            entry="1.08500",
            stop="1.08200",
            take_profit="1.09100",
            order_type="LIMIT",
            account_ids=["alpha-01", "beta-03"],
            note="breakout long",
        )
    )

    signal = parse_signal(raw)

    assert signal.signal_id == "sig-2026.03.02_001"
    assert signal.side is Side.BUY
    assert signal.order_type is OrderType.LIMIT
    assert signal.account_ids == ["alpha-01", "beta-03"]
    for value, text in (
        (signal.entry, "1.08500"),
        (signal.stop, "1.08200"),
        (signal.take_profit, "1.09100"),
    ):
        assert isinstance(value, Decimal)
        assert value.as_tuple() == Decimal(text).as_tuple()
        assert str(value) == text


def test_good_sell_signal_from_a_mapping_is_accepted() -> None:
    signal = parse_signal(signal_data(side="SELL", entry="1.27000", stop="1.27400"))

    assert signal.side is Side.SELL
    assert str(signal.entry) == "1.27000"
    assert signal.order_type is OrderType.MARKET


def test_demo_signal_file_is_accepted() -> None:
    text = (Path(__file__).resolve().parents[2] / "demo" / "signal-eurusd.json").read_text()

    signal = parse_signal(text)

    assert signal.entry == Decimal("1.08500")
    assert str(signal.take_profit) == "1.09100"


def test_price_given_as_a_json_number_is_kept_exact_or_refused() -> None:
    """BUG: a JSON *number* price goes through a binary float: ``123456789.123456789``
    becomes ``Decimal('123456789.12345679')`` silently. A money value must either be kept
    exactly or refused with a message asking for a string."""
    raw = (
        '{"signal_id": "s-1", "symbol": "BTCUSD", "side": "BUY",'
        ' "entry": 123456789.123456789, "stop": 123456000.5}'
    )

    try:
        signal = parse_signal(raw)
    except ValidationFailed as error:
        assert named(error, "entry")
    else:
        assert signal.entry == Decimal("123456789.123456789")


def test_cli_submit_of_malformed_json_exits_2_before_connecting(
    tmp_path: Path, cli: CliRunner
) -> None:
    path = tmp_path / "signal.json"
    path.write_text('{"signal_id": "s-1", "symbol": "EURUSD", "side": ', "utf-8")
    database = tmp_path / "orchestrator.db"

    assert cli(f"sqlite:///{database}", "submit", str(path)) == 2

    assert not database.exists(), "nothing is written for a refused signal"


def test_cli_submit_of_an_invalid_signal_exits_2(tmp_path: Path, cli: CliRunner) -> None:
    path = tmp_path / "signal.json"
    path.write_text(json.dumps(signal_data(side="SELL")), "utf-8")

    assert cli(f"sqlite:///{tmp_path / 'orchestrator.db'}", "submit", str(path)) == 2


def test_cli_submit_of_a_missing_file_exits_2(tmp_path: Path, cli: CliRunner) -> None:
    path = tmp_path / "absent.json"

    assert cli(f"sqlite:///{tmp_path / 'orchestrator.db'}", "submit", str(path)) == 2


def test_valid_until_without_a_timezone_is_refused_naming_it() -> None:
    error = refused(signal_data(valid_until="2026-03-02T14:05:00"))
    assert named(error, "valid_until")
    assert any("timezone" in message for _, message in error.problems)


def test_valid_until_with_a_timezone_is_accepted() -> None:
    signal = parse_signal(signal_data(valid_until="2026-03-02T15:05:00+01:00"))
    assert signal.valid_until == datetime(2026, 3, 2, 14, 5, tzinfo=UTC)


class NoTemporal:
    """A client the submission must never reach: the signal is refused first."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Temporal reached ({name}) for a refused signal")


async def test_a_signal_whose_valid_until_has_passed_is_refused_and_nothing_is_recorded(
    sqlite_db: Database,
) -> None:
    load(sqlite_db, book(account("acc")))
    past = datetime.now(UTC) - timedelta(seconds=1)
    signal = parse_signal(signal_data(valid_until=past.isoformat()))

    with pytest.raises(ValidationFailed) as caught:
        await submit_signal(cast(Client, NoTemporal()), sqlite_db, Settings(), signal)

    assert named(caught.value, "valid_until")
    assert "has already passed" in str(caught.value)
    with sqlite_db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(SignalRow)) == 0

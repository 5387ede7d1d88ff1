"""The FIX adapter's pure parts: configuration, credentials, OrdStatus mapping, quantities."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.adapters.brokers.fix import (
    DICTIONARY_DIR,
    FixSessionConfig,
    OrderRef,
    load_fix_config,
)
from orchestrator.adapters.brokers.fix.parsing import OrderState, advance, plain, status_of
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.values import Side


def config(tmp_path: Path, **overrides: object) -> FixSessionConfig:
    values: dict[str, object] = {
        "name": "prime",
        "host": "fix.example.invalid",
        "port": 9876,
        "begin_string": "FIX.4.2",
        "sender_comp_id": "TEO",
        "target_comp_id": "PRIME",
        "store_dir": tmp_path / "store",
    }
    values.update(overrides)
    return FixSessionConfig.model_validate(values)


def test_session_settings_name_the_session_and_the_shipped_dictionary(tmp_path: Path) -> None:
    text = config(tmp_path).session_settings_text()
    for line in (
        "ConnectionType=initiator",
        "BeginString=FIX.4.2",
        "SenderCompID=TEO",
        "TargetCompID=PRIME",
        "SocketConnectHost=fix.example.invalid",
        "SocketConnectPort=9876",
        f"DataDictionary={DICTIONARY_DIR / 'FIX42.xml'}",
    ):
        assert line in text.splitlines()
    assert (DICTIONARY_DIR / "FIX42.xml").exists()
    assert (DICTIONARY_DIR / "FIX44.xml").exists()


def test_password_comes_from_the_environment_before_the_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    cfg = config(tmp_path, password_env="TEO_TEST_FIX_PASSWORD", password_file=secret)
    monkeypatch.delenv("TEO_TEST_FIX_PASSWORD", raising=False)
    assert cfg.password() == "from-file"
    monkeypatch.setenv("TEO_TEST_FIX_PASSWORD", "from-env")
    assert cfg.password() == "from-env"
    assert "from-env" not in cfg.model_dump_json()  # never part of the configuration itself


def test_config_file_is_read_from_yaml_or_json_and_unknown_keys_are_refused(
    tmp_path: Path,
) -> None:
    values = {
        "name": "om",
        "port": 5001,
        "sender_comp_id": "A",
        "target_comp_id": "B",
        "store_dir": str(tmp_path),
        "units_per_lot": "100",
        "task_queue": "teo-fix-om",
    }
    (tmp_path / "om.json").write_text(json.dumps(values))
    (tmp_path / "om.yaml").write_text("\n".join(f"{k}: '{v}'" for k, v in values.items()))
    for name in ("om.json", "om.yaml"):
        loaded = load_fix_config(tmp_path / name)
        assert (loaded.units_per_lot, loaded.task_queue) == (Decimal(100), "teo-fix-om")
        assert loaded.begin_string == "FIX.4.4"
    (tmp_path / "bad.json").write_text(json.dumps({**values, "password": "x"}))
    with pytest.raises(ValidationError):
        load_fix_config(tmp_path / "bad.json")


def order(quantity: str = "1.00") -> OrderState:
    return OrderState(OrderRef("c-1", "a-1", "EURUSD", Side.BUY, Decimal(quantity)))


@pytest.mark.parametrize(
    ("ord_status", "expected"),
    [
        ("0", OrderStatus.NEW),
        ("1", OrderStatus.PARTIALLY_FILLED),
        ("2", OrderStatus.FILLED),
        ("4", OrderStatus.CANCELLED),
        ("6", OrderStatus.PENDING_CANCEL),
        ("8", OrderStatus.REJECTED),
        ("C", OrderStatus.EXPIRED),
        ("A", OrderStatus.PENDING_SUBMIT),
    ],
)
def test_ord_status_maps_to_the_lifecycle(ord_status: str, expected: OrderStatus) -> None:
    assert status_of(ord_status, order(), None) is expected


def test_statuses_without_a_lifecycle_state_are_derived_from_the_cumulative_quantity() -> None:
    assert status_of("5", order(), Decimal("0.40")) is OrderStatus.PARTIALLY_FILLED
    assert status_of("B", order(), Decimal("1.00")) is OrderStatus.FILLED
    assert status_of("E", order(), Decimal(0)) is OrderStatus.NEW


def test_a_late_report_never_moves_an_order_back() -> None:
    assert advance(OrderStatus.FILLED, OrderStatus.NEW) is OrderStatus.FILLED
    assert advance(OrderStatus.PARTIALLY_FILLED, OrderStatus.NEW) is OrderStatus.PARTIALLY_FILLED
    assert advance(OrderStatus.CANCELLED, OrderStatus.PARTIALLY_FILLED) is OrderStatus.CANCELLED
    assert advance(OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED) is OrderStatus.PARTIALLY_FILLED
    assert advance(OrderStatus.PENDING_SUBMIT, OrderStatus.FILLED) is OrderStatus.FILLED


def test_quantities_are_plain_decimals_without_exponent_or_trailing_zeros() -> None:
    assert plain(Decimal("0.50") * Decimal(100)) == "50"
    assert plain(Decimal("1E+2")) == "100"
    assert plain(Decimal("1.08500")) == "1.085"
    assert plain(Decimal("0.37") * Decimal(100000)) == "37000"

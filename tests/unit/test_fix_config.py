"""The FIX adapter's pure parts: configuration, credentials, OrdStatus mapping, quantities,
stop and replace messages as written, and positions and collateral as read."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import quickfix as fix
from pydantic import ValidationError

from orchestrator.adapters.brokers.base import OrderTicket
from orchestrator.adapters.brokers.fix import (
    DICTIONARY_DIR,
    FixSessionConfig,
    OrderRef,
    load_fix_config,
)
from orchestrator.adapters.brokers.fix.book import Inquiry
from orchestrator.adapters.brokers.fix.messages import new_order_single, replace_request
from orchestrator.adapters.brokers.fix.parsing import OrderState, advance, status_of
from orchestrator.adapters.brokers.fix.reports import (
    apply_collateral_report,
    apply_position_report,
    positions_of,
)
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.values import OrderType, Side, plain


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


def fields(message: fix.Message) -> dict[int, str]:
    """Tag → value of a message's body (no header), as written on the wire."""
    wire = message.toString().split("\x01")
    pairs = [part.split("=", 1) for part in wire if "=" in part]
    return {int(tag): value for tag, value in pairs if int(tag) not in {8, 9, 10, 35}}


def test_stop_order_is_ord_type_3_with_stop_px_and_a_take_profit_a_plain_limit(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path, units_per_lot=Decimal(100000))
    stop = OrderTicket(
        "s-1", "a-1", "EURUSD", Side.SELL, OrderType.STOP, Decimal("0.30"), None,
        Decimal("1.082"), stop_price=Decimal("1.08200"),
    )  # fmt: skip
    written = fields(new_order_single(stop, cfg, datetime(2026, 1, 2, tzinfo=UTC)))
    assert (written[40], written[99], written[38], written[54]) == ("3", "1.082", "30000", "2")
    assert 44 not in written
    take_profit = dataclasses.replace(
        stop, order_type=OrderType.LIMIT, limit_price=Decimal("1.09"), stop_price=None
    )
    written = fields(new_order_single(take_profit, cfg, datetime(2026, 1, 2, tzinfo=UTC)))
    assert (written[40], written[44]) == ("2", "1.09")
    assert 99 not in written
    with pytest.raises(ValueError, match="no stop price"):
        new_order_single(dataclasses.replace(stop, stop_price=None), cfg, datetime.now(UTC))


def test_replace_request_names_both_orders_and_refuses_a_change_of_side(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    old = OrderRef("s-1", "a-1", "EURUSD", Side.SELL, Decimal("0.50"))
    new = OrderTicket(
        "s-2", "a-1", "EURUSD", Side.SELL, OrderType.STOP, Decimal("0.40"), None,
        Decimal("1.083"), stop_price=Decimal("1.0835"),
    )  # fmt: skip
    written = fields(replace_request(old, "V7", new, cfg, datetime.now(UTC)))
    assert (written[41], written[11], written[37]) == ("s-1", "s-2", "V7")
    assert (written[38], written[40], written[99]) == ("0.4", "3", "1.0835")
    with pytest.raises(ValueError, match="cannot change"):
        replace_request(old, None, dataclasses.replace(new, side=Side.BUY), cfg, datetime.now(UTC))
    assert config(tmp_path).cancel_replace is True


def position_report(*entries: tuple[str, str, str], result: str = "0") -> fix.Message:
    message = fix.Message()
    message.setField(55, "EURUSD")
    message.setField(728, result)
    message.setField(727, "1")
    for pos_type, long_qty, short_qty in entries:
        group = fix.Group(702, 703)
        group.setField(703, pos_type)
        group.setField(704, long_qty)
        group.setField(705, short_qty)
        message.addGroup(group)
    return message


def test_position_net_is_fin_when_reported_else_start_of_day_plus_todays_trades() -> None:
    for entries, expected in [
        ((("SOD", "100", "0"), ("TQ", "0", "30")), [(Side.BUY, Decimal("0.7"))]),
        ((("SOD", "100", "0"), ("FIN", "0", "50")), [(Side.SELL, Decimal("0.5"))]),
        ((("TQ", "40", "40"),), []),
    ]:
        inquiry = Inquiry("positions", "a-1")
        apply_position_report(inquiry, position_report(*entries), Decimal(100))
        assert inquiry.done and inquiry.failed is None
        assert [(p.side, p.quantity) for p in positions_of(inquiry)] == expected
    unreadable = Inquiry("positions", "a-1")
    apply_position_report(unreadable, position_report(("IAS", "5", "0")), Decimal(100))
    assert unreadable.failed is not None  # never guessed
    refused = Inquiry("positions", "a-1")
    apply_position_report(refused, position_report(result="4"), Decimal(100))
    assert refused.failed is not None  # not supported: unknown, not flat


def test_collateral_report_without_all_three_amounts_is_no_reading() -> None:
    report = fix.Message()
    for tag, value in ((901, "1000"), (900, "1010.5")):
        report.setField(tag, value)
    partial = Inquiry("collateral", "a-1")
    apply_collateral_report(partial, report, lambda: datetime.now(UTC))
    assert (partial.failed is not None, partial.reading) == (True, None)
    report.setField(899, "-20")
    whole = Inquiry("collateral", "a-1")
    apply_collateral_report(whole, report, lambda: datetime.now(UTC))
    assert whole.reading is not None
    assert (whole.reading.balance, whole.reading.equity, whole.reading.free_margin) == (
        Decimal(1000),
        Decimal("1010.5"),
        Decimal(-20),
    )

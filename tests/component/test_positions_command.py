"""``starter.py positions``: the ledger's positions as their keepers recorded them, read from
outside, with its filters (``--signal``, ``--account``, ``--open``) and ``--json``, on SQLite."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.domain import positions
from orchestrator.domain.orders import OrderPurpose, OrderStatus
from orchestrator.domain.positions import (
    CloseCause,
    Contract,
    PositionStatus,
    ProtectionKind,
    ProtectiveOrder,
)
from orchestrator.domain.values import OrderType, Side
from tests.component.conftest import CliRunner
from tests.support import account, book, load

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EURUSD = Contract(
    tick_size=Decimal("0.00001"),
    tick_value=Decimal(1),
    lot_step=Decimal("0.01"),
    min_lot=Decimal("0.01"),
)
REFUSED = "Invalid stops (too close to market)"


def protective(kind: ProtectionKind, cid: str, price: str, quantity: str) -> ProtectiveOrder:
    return ProtectiveOrder(
        kind=kind,
        client_order_id=cid,
        price=Decimal(price),
        quantity=Decimal(quantity),
        status=OrderStatus.NEW,
    )


def seed(db: Database) -> None:
    """sig-1: acct open, protected by a stop and a take-profit; acct-b stopped out through a
    gap. sig-2: acct kept open UNPROTECTED after its stop was refused."""
    load(db, book(account("acct"), account("acct-b")))

    def opened(signal_id: str, account_id: str) -> positions.Position:
        return positions.opened(
            signal_id,
            Side.BUY,
            Decimal("1.08200"),
            Decimal("1.09100"),
            account_id=account_id,
            broker="alpha",
            broker_symbol="EURUSD",
            contract=EURUSD,
            entry_quantity=Decimal("0.50"),
            average_entry=Decimal("1.08500"),
        )

    held = opened("sig-1", "acct").model_copy(
        update={
            "stop_order": protective(ProtectionKind.STOP, "sig-1:acct:S1", "1.08200", "0.50"),
            "take_profit_order": protective(
                ProtectionKind.TAKE_PROFIT, "sig-1:acct:T1", "1.09100", "0.50"
            ),
        }
    )
    stopped, _ = positions.reduced(
        opened("sig-1", "acct-b"),
        execution_id="X-1",
        client_order_id="sig-1:acct-b:S1",
        quantity=Decimal("0.50"),
        price=Decimal("1.08150"),
        cause=CloseCause.STOP_HIT,
        at=T0,
    )
    unprotected = opened("sig-2", "acct").model_copy(
        update={
            "status": PositionStatus.UNPROTECTED,
            "note": f"stop refused by the broker: {REFUSED}",
        }
    )
    with db.transaction() as session:
        repository.record_position_orders(
            session,
            [
                repository.pending_order_values(
                    client_order_id="sig-1:acct-b:S1",
                    signal_id="sig-1",
                    account_id="acct-b",
                    purpose=OrderPurpose.STOP,
                    business_sequence=1,
                    broker="alpha",
                    broker_symbol="EURUSD",
                    side=Side.SELL,
                    order_type=OrderType.STOP,
                    quantity=Decimal("0.50"),
                    limit_price=None,
                    stop_price=Decimal("1.08200"),
                    now=T0,
                )
            ],
        )
        repository.record_positions(session, "signal-sig-1/positions", [held, stopped], T0)
        repository.record_positions(session, "signal-sig-2/positions", [unprotected], T0)


def seeded(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'orchestrator.db'}"
    db = Database(url)
    db.migrate()
    try:
        seed(db)
    finally:
        db.dispose()
    return url


def listed(cli: CliRunner, capsys: Any, url: str, *argv: str) -> list[tuple[str, str]]:
    assert cli(url, "positions", *argv, "--json") == 0
    return [(d["signal_id"], d["account_id"]) for d in json.loads(capsys.readouterr().out)]


def test_cli_positions_filters_by_signal_account_and_open(
    tmp_path: Path, cli: CliRunner, capsys: Any
) -> None:
    url = seeded(tmp_path)
    capsys.readouterr()

    everything = [("sig-1", "acct"), ("sig-1", "acct-b"), ("sig-2", "acct")]
    assert listed(cli, capsys, url) == everything
    assert listed(cli, capsys, url, "--signal", "sig-1") == everything[:2]
    assert listed(cli, capsys, url, "--account", "acct") == [everything[0], everything[2]]
    assert listed(cli, capsys, url, "--open") == [everything[0], everything[2]]
    assert listed(cli, capsys, url, "--signal", "sig-1", "--open") == [everything[0]]
    assert listed(cli, capsys, url, "--signal", "never-submitted") == []


def test_cli_positions_json_has_the_stop_take_profit_status_pnl_and_each_closing_fill(
    tmp_path: Path, cli: CliRunner, capsys: Any
) -> None:
    url = seeded(tmp_path)
    capsys.readouterr()

    assert cli(url, "positions", "--signal", "sig-1", "--json") == 0

    held, stopped = json.loads(capsys.readouterr().out)
    assert {k: held[k] for k in ("status", "open_quantity", "stop", "take_profit")} == {
        "status": "OPEN",
        "open_quantity": "0.5",
        "stop": "1.082",
        "take_profit": "1.091",
    }
    assert (held["stop_client_order_id"], held["take_profit_client_order_id"]) == (
        "sig-1:acct:S1",
        "sig-1:acct:T1",
    )
    assert (held["realized_pnl"], held["closes"]) == ("0", [])
    assert (stopped["status"], stopped["open_quantity"]) == ("CLOSED", "0")
    assert stopped["realized_pnl"] == "-175"  # 350 ticks below entry × 1 USD a tick a lot × 0.5
    [close] = stopped["closes"]
    assert {
        k: close[k] for k in ("cause", "quantity", "price", "pnl", "client_order_id", "slippage")
    } == {
        "cause": "STOP_HIT",
        "quantity": "0.5",
        "price": "1.0815",
        "pnl": "-175",
        "client_order_id": "sig-1:acct-b:S1",
        "slippage": "0.0005",  # the market gapped 5 pips through the stop at 1.08200
    }


def test_cli_positions_table_shows_how_far_past_its_stop_a_stop_filled(
    tmp_path: Path, cli: CliRunner, capsys: Any
) -> None:
    url = seeded(tmp_path)
    capsys.readouterr()

    assert cli(url, "positions", "--account", "acct-b") == 0

    out = " ".join(capsys.readouterr().out.split())
    assert "STOP_HIT 0.5 @ 1.0815, 0.0005 past the stop (-175.00)" in out


def test_cli_positions_table_marks_an_unprotected_position_with_the_brokers_text(
    tmp_path: Path, cli: CliRunner, capsys: Any
) -> None:
    url = seeded(tmp_path)
    capsys.readouterr()

    assert cli(url, "positions", "--open") == 0

    out = capsys.readouterr().out
    assert "2 position(s) open" in out
    for text in ("sig-1, acct", "sig-1:acct:S1", "sig-1:acct:T1", "OPEN", "UNPROTECTED"):
        assert text in out
    assert REFUSED in " ".join(out.split())  # verbatim, however the table wraps it
    assert "acct-b" not in out

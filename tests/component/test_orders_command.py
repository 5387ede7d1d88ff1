"""``starter.py orders``: the ledger's orders and their fills, read from outside (the
repository's ``list_orders`` on both databases, the command on SQLite)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.domain.contracts.payloads import PlaceOrderRequest
from orchestrator.domain.ids import client_order_id as client_order_id_of
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.values import OrderType, Side
from tests.component.conftest import CliRunner, migrated_sqlite
from tests.support import account, book, load

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def place(
    db: Database,
    signal_id: str,
    account_id: str,
    *,
    sequence: int = 1,
    quantity: str = "1.00",
    when: datetime,
    limit_price: str | None = None,
) -> str:
    client_order_id = client_order_id_of(signal_id, account_id, sequence)
    request = PlaceOrderRequest(
        signal_id=signal_id,
        account_id=account_id,
        client_order_id=client_order_id,
        business_sequence=sequence,
        broker="alpha",
        broker_symbol="EURUSD.x",
        side=Side.SELL if limit_price else Side.BUY,
        order_type=OrderType.LIMIT if limit_price else OrderType.MARKET,
        quantity=Decimal(quantity),
        limit_price=Decimal(limit_price) if limit_price else None,
        reference_price=Decimal("1.08500"),
    )
    with db.transaction() as session:
        repository.record_order_intent(session, request, when)
    return client_order_id


def broker_says(
    db: Database,
    client_order_id: str,
    status: OrderStatus,
    executions: list[tuple[str, str, str, datetime]],
    *,
    when: datetime,
    reject_text: str | None = None,
) -> None:
    with db.transaction() as session:
        repository.apply_broker_report(
            session,
            client_order_id,
            status=status,
            broker_order_id=None if status is OrderStatus.REJECTED else f"B-{client_order_id}",
            executions=[(e, Decimal(q), Decimal(p), t) for e, q, p, t in executions],
            reject_text=reject_text,
            now=when,
        )


def seed(db: Database) -> None:
    """sig-1: acct filled in two executions; acct's completion order filled in part; acct-b
    rejected by the broker. sig-2: acct's limit order not yet acknowledged."""
    load(db, book(account("acct"), account("acct-b")))
    first = place(db, "sig-1", "acct", when=at(0))
    broker_says(
        db,
        first,
        OrderStatus.FILLED,
        [("E1", "0.40", "1.08510", at(1)), ("E2", "0.60", "1.08520", at(2))],
        when=at(2),
    )
    rejected = place(db, "sig-1", "acct-b", when=at(3))
    broker_says(
        db, rejected, OrderStatus.REJECTED, [], when=at(4), reject_text="Not enough money [10019]"
    )
    completion = place(db, "sig-1", "acct", sequence=2, quantity="0.50", when=at(5))
    broker_says(
        db, completion, OrderStatus.PARTIALLY_FILLED, [("E3", "0.20", "1.085", at(6))], when=at(6)
    )
    place(db, "sig-2", "acct", quantity="2.00", limit_price="1.09000", when=at(7))


def test_list_orders_gives_each_order_with_its_fills_oldest_first(db: Database) -> None:
    seed(db)

    with db.transaction() as session:
        everything = repository.list_orders(session)
        of_signal = repository.list_orders(session, signal_id="sig-1")
        of_account = repository.list_orders(session, account_id="acct")
        of_both = repository.list_orders(session, signal_id="sig-1", account_id="acct-b")
        of_nobody = repository.list_orders(session, signal_id="sig-unknown")

    assert [o.client_order_id for o in everything] == [
        "sig-1:acct:1",
        "sig-1:acct-b:1",
        "sig-1:acct:2",
        "sig-2:acct:1",
    ]
    assert [o.client_order_id for o in of_signal] == [o.client_order_id for o in everything[:3]]
    assert [o.client_order_id for o in of_account] == [
        "sig-1:acct:1",
        "sig-1:acct:2",
        "sig-2:acct:1",
    ]
    assert [o.client_order_id for o in of_both] == ["sig-1:acct-b:1"]
    assert of_nobody == []

    filled = everything[0]
    assert (filled.signal_id, filled.account_id, filled.business_sequence) == ("sig-1", "acct", 1)
    assert (filled.broker, filled.symbol, filled.side, filled.order_type) == (
        "alpha",
        "EURUSD.x",
        "BUY",
        "MARKET",
    )
    assert (filled.quantity, filled.filled, filled.status) == (
        Decimal(1),
        Decimal(1),
        "FILLED",
    )
    assert filled.average_price == Decimal("1.08516")  # 0.4 × 1.08510 + 0.6 × 1.08520
    assert (filled.broker_order_id, filled.created_at, filled.updated_at) == (
        "B-sig-1:acct:1",
        at(0),
        at(2),
    )
    assert [(f.execution_id, f.quantity, f.price, f.filled_at) for f in filled.fills] == [
        ("E1", Decimal("0.4"), Decimal("1.0851"), at(1)),
        ("E2", Decimal("0.6"), Decimal("1.0852"), at(2)),
    ]
    rejected = everything[1]
    assert (rejected.status, rejected.reject_text, rejected.fills) == (
        "REJECTED",
        "Not enough money [10019]",
        [],
    )
    assert (rejected.filled, rejected.average_price, rejected.broker_order_id) == (
        Decimal(0),
        None,
        None,
    )
    assert everything[2].business_sequence == 2
    assert [f.execution_id for f in everything[2].fills] == ["E3"]
    waiting = everything[3]
    assert (waiting.status, waiting.order_type, waiting.limit_price) == (
        "PENDING_SUBMIT",
        "LIMIT",
        Decimal("1.09"),
    )


def sqlite_seeded(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'orchestrator.db'}"
    db = Database(url)
    db.migrate()
    try:
        seed(db)
    finally:
        db.dispose()
    return url


def test_cli_orders_json_lists_orders_with_fills_decimals_as_strings(
    tmp_path: Path, cli: CliRunner, capsys: Any
) -> None:
    url = sqlite_seeded(tmp_path)
    capsys.readouterr()

    assert cli(url, "orders", "--signal", "sig-1", "--account", "acct", "--json") == 0

    documents = json.loads(capsys.readouterr().out)
    assert [d["client_order_id"] for d in documents] == ["sig-1:acct:1", "sig-1:acct:2"]
    assert documents[0] == {
        "client_order_id": "sig-1:acct:1",
        "signal_id": "sig-1",
        "account_id": "acct",
        "sequence": 1,
        "purpose": "ENTRY",
        "broker": "alpha",
        "symbol": "EURUSD.x",
        "side": "BUY",
        "order_type": "MARKET",
        "quantity": "1",
        "limit_price": None,
        "stop_price": None,
        "filled": "1",
        "average_price": "1.08516",
        "status": "FILLED",
        "broker_order_id": "B-sig-1:acct:1",
        "reject_text": None,
        "created_at": "2026-03-02T09:00:00+00:00",
        "updated_at": "2026-03-02T09:00:02+00:00",
        "fills": [
            {
                "execution_id": "E1",
                "quantity": "0.4",
                "price": "1.0851",
                "filled_at": "2026-03-02T09:00:01+00:00",
            },
            {
                "execution_id": "E2",
                "quantity": "0.6",
                "price": "1.0852",
                "filled_at": "2026-03-02T09:00:02+00:00",
            },
        ],
    }
    assert (documents[1]["filled"], documents[1]["status"]) == ("0.2", "PARTIALLY_FILLED")


def test_cli_orders_table_shows_each_order_and_the_brokers_reject_text(
    tmp_path: Path, cli: CliRunner, capsys: Any
) -> None:
    url = sqlite_seeded(tmp_path)
    capsys.readouterr()

    assert cli(url, "orders", "--signal", "sig-1") == 0

    out = capsys.readouterr().out
    assert "3 order(s) of signal sig-1" in out
    for text in ("sig-1:acct:1", "sig-1:acct-b:1", "sig-1:acct:2", "REJECTED", "1.08516"):
        assert text in out
    assert "Not enough money [10019]" in out  # the broker's text, verbatim
    assert "sig-2" not in out


def test_cli_orders_of_an_unknown_signal_or_an_empty_ledger_is_an_empty_list(
    tmp_path: Path, cli: CliRunner, capsys: Any
) -> None:
    empty = migrated_sqlite(tmp_path / "empty.db")
    url = sqlite_seeded(tmp_path)
    capsys.readouterr()

    assert cli(url, "orders", "--signal", "never-submitted", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []
    assert cli(empty, "orders", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []
    assert cli(empty, "orders") == 0
    assert "0 order(s)" in capsys.readouterr().out


def test_cli_orders_refuses_a_signal_or_account_that_is_not_an_id(
    tmp_path: Path, cli: CliRunner, capsys: Any
) -> None:
    url = sqlite_seeded(tmp_path)
    capsys.readouterr()

    assert cli(url, "orders", "--signal", "sig-1' OR '1'='1") == 2
    assert "signal: not an id" in capsys.readouterr().err
    assert cli(url, "orders", "--account", "acct b", "--json") == 2
    err = capsys.readouterr()
    assert "account: not an id" in err.err
    assert err.out == ""

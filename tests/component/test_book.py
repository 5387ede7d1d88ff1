"""The account book file: the demo loads, every problem is named, nothing is written on error."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from orchestrator.adapters.book_file import AccountRecord, Book, read_book
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import (
    AccountRow,
    AccountStateRow,
    DailyReturnRow,
    SymbolSpecRow,
)
from orchestrator.config import PROJECT_ROOT
from orchestrator.domain.errors import ValidationFailed
from tests.component.conftest import CliRunner, migrated_sqlite

DEMO_BOOK = PROJECT_ROOT / "demo" / "book.yaml"


# --------------------------------------------------------------------------------------------
# Builders


def symbol_data() -> dict[str, Any]:
    return {
        "broker": "alpha",
        "symbol": "EURUSD",
        "tick_size": "0.00001",
        "tick_value": "1",
        "contract_size": "100000",
        "min_lot": "0.01",
        "lot_step": "0.01",
        "max_lot": "50",
        "margin_per_lot": "1085",
    }


def account_data(account_id: str, equity: str = "100000") -> dict[str, Any]:
    return {
        "id": account_id,
        "name": f"Account {account_id}",
        "broker": "alpha",
        "currency": "USD",
        "limits": {
            "risk_per_trade": "0.01",
            "daily_loss_budget": "3000",
            "max_drawdown": "0.10",
            "max_open_positions": 10,
            "max_lots": "20",
        },
        "state": {
            "balance": equity,
            "equity": equity,
            "peak_equity": equity,
            "free_margin": "95000",
        },
    }


def book_data(*accounts: dict[str, Any], returns: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"symbols": [symbol_data()], "accounts": list(accounts)}
    if returns is not None:
        data["returns"] = returns
    return data


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def refused(path: Path) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        read_book(path)
    return caught.value


def table_counts(url: str) -> dict[str, int]:
    db = Database(url)
    try:
        db.migrate()
        with db.transaction() as session:
            return {
                table.__tablename__: session.scalar(select(func.count()).select_from(table)) or 0
                for table in (AccountRow, AccountStateRow, SymbolSpecRow, DailyReturnRow)
            }
    finally:
        db.dispose()


def stored_equity(url: str, account_id: str) -> Decimal | None:
    db = Database(url)
    try:
        with db.transaction() as session:
            state = session.get(AccountStateRow, account_id)
            return None if state is None else state.equity
    finally:
        db.dispose()


def without_as_of(record: AccountRecord) -> AccountRecord:
    return record.model_copy(update={"state": record.state.model_copy(update={"as_of": None})})


# --------------------------------------------------------------------------------------------
# The demo book


def test_demo_book_loads_18_accounts_5_symbols_and_its_returns() -> None:
    book = read_book(DEMO_BOOK)

    assert len(book.accounts) == 18
    assert len({a.id for a in book.accounts}) == 18
    assert len(book.symbols) == 5
    assert {s.key for s in book.symbols} == {
        "alpha:EURUSD",
        "alpha:GBPUSD",
        "alpha:XAUUSD",
        "beta:EURUSD.pro",
        "beta:GBPUSD.pro",
    }
    assert book.returns, "the demo book names a returns file"
    assert {r.account_id for r in book.returns} <= {a.id for a in book.accounts}
    first = next(
        r for r in book.returns if r.account_id == "alpha-01" and r.day == date(2026, 1, 5)
    )
    assert first.ret == Decimal("-0.008754")
    assert isinstance(first.ret, Decimal)


def test_demo_book_values_are_exact_decimals_and_timezone_aware() -> None:
    accounts = {a.id: a for a in read_book(DEMO_BOOK).accounts}

    beta_03 = accounts["beta-03"]
    assert beta_03.limits.risk_per_trade == Decimal("0.0075")
    assert isinstance(beta_03.state.equity, Decimal)
    assert beta_03.broker_symbol("EURUSD") == "EURUSD.pro"
    assert accounts["beta-11"].broker_symbol("EURUSD") is None
    assert accounts["beta-05"].paper.partial_ratio == Decimal("0.6")
    assert accounts["beta-07"].paper.reject_text == "Not enough money [10019]"
    assert accounts["beta-16"].state.as_of == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# Problems are named by file, account and field


def test_account_missing_max_lots_is_named_by_file_account_index_id_and_field(
    tmp_path: Path,
) -> None:
    broken = account_data("acct-two")
    del broken["limits"]["max_lots"]
    path = write_yaml(tmp_path / "book.yaml", book_data(account_data("acct-one"), broken))

    error = refused(path)

    assert error.source == str(path)
    assert str(path) in str(error)
    locations = [loc for loc, _ in error.problems]
    assert any(
        "accounts[1]" in loc and "acct-two" in loc and "max_lots" in loc for loc in locations
    ), locations
    assert len(error.problems) == 1


def test_every_problem_of_every_account_is_reported_at_once(tmp_path: Path) -> None:
    first = account_data("acct-one")
    first["currency"] = "usd"
    second = account_data("acct-two")
    second["limits"]["risk_per_trade"] = "1.5"
    path = write_yaml(tmp_path / "book.yaml", book_data(first, second))

    error = refused(path)

    locations = [loc for loc, _ in error.problems]
    assert any(
        "accounts[0]" in loc and "acct-one" in loc and "currency" in loc for loc in locations
    )
    assert any(
        "accounts[1]" in loc and "acct-two" in loc and "risk_per_trade" in loc for loc in locations
    )


def test_malformed_yaml_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "book.yaml"
    path.write_text("accounts:\n  - id: a1\n    broker: [alpha\n  currency: USD\n", "utf-8")

    error = refused(path)

    assert error.source == str(path)
    assert len(error.problems) == 1
    assert "not valid YAML" in error.problems[0][1]


def test_malformed_json_book_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "book.json"
    path.write_text('{"accounts": [', "utf-8")

    error = refused(path)

    assert error.source == str(path)
    assert "not valid JSON" in error.problems[0][1]


def test_book_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "book.yaml"
    path.write_text("- just\n- a list\n", "utf-8")

    error = refused(path)

    assert "accounts" in error.problems[0][1]


def test_missing_book_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    error = refused(path)

    assert error.source == str(path)
    assert "cannot read file" in error.problems[0][1]


def test_duplicate_account_id_is_refused_naming_the_id(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path / "book.yaml",
        book_data(account_data("acct-one"), account_data("acct-two"), account_data("acct-one")),
    )

    error = refused(path)

    assert error.source == str(path)
    assert any("'acct-one'" in msg and "twice" in msg for _, msg in error.problems)


def test_duplicate_symbol_spec_is_refused(tmp_path: Path) -> None:
    data = book_data(account_data("acct-one"))
    data["symbols"].append(symbol_data())
    path = write_yaml(tmp_path / "book.yaml", data)

    error = refused(path)

    assert any("EURUSD" in msg and "twice" in msg for _, msg in error.problems)


def test_peak_equity_below_equity_is_refused_naming_the_account_state(tmp_path: Path) -> None:
    broken = account_data("acct-one")
    broken["state"]["peak_equity"] = "99999.99"
    path = write_yaml(tmp_path / "book.yaml", book_data(broken))

    error = refused(path)

    [(location, message)] = error.problems
    assert "accounts[0]" in location
    assert "acct-one" in location
    assert "state" in location
    assert "peak_equity" in message


def test_as_of_without_timezone_is_refused(tmp_path: Path) -> None:
    broken = account_data("acct-one")
    broken["state"]["as_of"] = "2026-01-05T09:00:00"
    path = write_yaml(tmp_path / "book.yaml", book_data(broken))

    error = refused(path)

    [(location, message)] = error.problems
    assert "acct-one" in location
    assert "as_of" in message
    assert "timezone" in message


def test_unquoted_yaml_timestamp_without_timezone_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "book.yaml"
    text = yaml.safe_dump(book_data(account_data("acct-one")), sort_keys=False)
    text = text.replace(
        "free_margin: '95000'", "free_margin: '95000'\n    as_of: 2026-01-05 09:00:00"
    )
    path.write_text(text, "utf-8")
    assert "as_of: 2026-01-05 09:00:00" in text

    error = refused(path)

    assert any("as_of" in msg for _, msg in error.problems)


def test_as_of_with_timezone_is_accepted(tmp_path: Path) -> None:
    good = account_data("acct-one")
    good["state"]["as_of"] = "2026-01-05T09:00:00Z"
    path = write_yaml(tmp_path / "book.yaml", book_data(good))

    book = read_book(path)

    assert book.accounts[0].state.as_of == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_returns_csv_with_unknown_account_names_the_csv_and_the_line(tmp_path: Path) -> None:
    (tmp_path / "returns.csv").write_text(
        "account_id,day,return\n"
        "acct-one,2026-01-05,0.001\n"
        "ghost,2026-01-05,0.002\n"
        "acct-one,2026-01-06,-0.003\n",
        "utf-8",
    )
    path = write_yaml(
        tmp_path / "book.yaml", book_data(account_data("acct-one"), returns="returns.csv")
    )

    error = refused(path)

    assert error.source == str(tmp_path / "returns.csv")
    assert error.problems == [("line 3", "unknown account 'ghost'")]


def test_returns_csv_with_bad_values_names_each_line(tmp_path: Path) -> None:
    (tmp_path / "returns.csv").write_text(
        "account_id,day,return\n"
        "acct-one,2026-13-05,0.001\n"
        "acct-one,2026-01-06,abc\n"
        "acct-one,2026-01-07,0.004\n",
        "utf-8",
    )
    path = write_yaml(
        tmp_path / "book.yaml", book_data(account_data("acct-one"), returns="returns.csv")
    )

    error = refused(path)

    assert [loc for loc, _ in error.problems] == ["line 2", "line 3"]


def test_returns_csv_missing_its_return_column_is_refused_naming_the_header(
    tmp_path: Path,
) -> None:
    (tmp_path / "returns.csv").write_text("account_id,day\nacct-one,2026-01-05\n", "utf-8")
    path = write_yaml(
        tmp_path / "book.yaml", book_data(account_data("acct-one"), returns="returns.csv")
    )

    error = refused(path)

    assert error.problems[0][0] == "header"


def test_returns_csv_with_misnamed_return_column_is_refused_naming_the_header(
    tmp_path: Path,
) -> None:
    """BUG: the header check is ``set(fieldnames) < required`` (a proper subset), so a header
    with a misnamed column (``ret`` for ``return``) passes it and the row lookup raises a bare
    ``KeyError: 'return'`` instead of ValidationFailed."""
    (tmp_path / "returns.csv").write_text("account_id,day,ret\nacct-one,2026-01-05,0.001\n")
    path = write_yaml(
        tmp_path / "book.yaml", book_data(account_data("acct-one"), returns="returns.csv")
    )

    error = refused(path)

    assert error.source == str(tmp_path / "returns.csv")
    assert error.problems[0][0] == "header"


def test_returns_csv_row_with_a_missing_value_is_refused_naming_the_line(tmp_path: Path) -> None:
    """BUG: a short row leaves ``row["return"]`` as ``None``; ``Decimal(None)`` raises a bare
    ``TypeError`` that read_returns does not catch, instead of a problem on "line 3"."""
    (tmp_path / "returns.csv").write_text(
        "account_id,day,return\nacct-one,2026-01-05,0.001\nacct-one,2026-01-06\n", "utf-8"
    )
    path = write_yaml(
        tmp_path / "book.yaml", book_data(account_data("acct-one"), returns="returns.csv")
    )

    error = refused(path)

    assert [loc for loc, _ in error.problems] == ["line 3"]


# --------------------------------------------------------------------------------------------
# The CLI: all or nothing, and export round-trips


def test_cli_load_of_a_book_with_one_invalid_account_exits_2_and_writes_nothing(
    tmp_path: Path, cli: CliRunner
) -> None:
    url = migrated_sqlite(tmp_path / "orchestrator.db")
    broken = account_data("acct-three")
    del broken["limits"]["max_lots"]
    path = write_yaml(
        tmp_path / "book.yaml",
        book_data(account_data("acct-one"), account_data("acct-two"), broken),
    )

    assert cli(url, "accounts", "load", str(path)) == 2

    assert table_counts(url) == {
        "accounts": 0,
        "account_state": 0,
        "symbol_specs": 0,
        "daily_returns": 0,
    }


def test_cli_load_of_a_book_whose_returns_are_invalid_exits_2_and_writes_nothing(
    tmp_path: Path, cli: CliRunner
) -> None:
    url = migrated_sqlite(tmp_path / "orchestrator.db")
    (tmp_path / "returns.csv").write_text(
        "account_id,day,return\nacct-one,2026-01-05,0.001\nghost,2026-01-05,0.002\n", "utf-8"
    )
    path = write_yaml(
        tmp_path / "book.yaml", book_data(account_data("acct-one"), returns="returns.csv")
    )

    assert cli(url, "accounts", "load", str(path)) == 2

    assert set(table_counts(url).values()) == {0}


def test_cli_invalid_load_after_a_valid_one_leaves_the_stored_book_unchanged(
    tmp_path: Path, cli: CliRunner
) -> None:
    url = migrated_sqlite(tmp_path / "orchestrator.db")
    (tmp_path / "returns.csv").write_text(
        "account_id,day,return\nacct-one,2026-01-05,0.001\nacct-two,2026-01-05,0.002\n", "utf-8"
    )
    good = write_yaml(
        tmp_path / "good.yaml",
        book_data(account_data("acct-one"), account_data("acct-two"), returns="returns.csv"),
    )
    assert cli(url, "accounts", "load", str(good)) == 0
    before = table_counts(url)
    assert before == {"accounts": 2, "account_state": 2, "symbol_specs": 1, "daily_returns": 2}

    changed = account_data("acct-one", equity="12345")
    broken = account_data("acct-three")
    broken["state"]["peak_equity"] = "1"
    bad = write_yaml(tmp_path / "bad.yaml", book_data(changed, account_data("acct-two"), broken))
    assert cli(url, "accounts", "load", str(bad)) == 2

    assert table_counts(url) == before
    assert stored_equity(url, "acct-one") == Decimal("100000")
    assert stored_equity(url, "acct-three") is None


def test_cli_export_then_load_into_a_fresh_database_gives_the_same_accounts(
    tmp_path: Path, cli: CliRunner
) -> None:
    first_url = migrated_sqlite(tmp_path / "first.db")
    second_url = migrated_sqlite(tmp_path / "second.db")
    exported = tmp_path / "exported.json"
    exported_again = tmp_path / "exported-again.json"

    assert cli(first_url, "accounts", "load", str(DEMO_BOOK)) == 0
    assert cli(first_url, "accounts", "export", str(exported)) == 0
    assert cli(second_url, "accounts", "load", str(exported)) == 0
    assert cli(second_url, "accounts", "export", str(exported_again)) == 0

    first = json.loads(exported.read_text("utf-8"))
    assert len(first["accounts"]) == 18
    assert json.loads(exported_again.read_text("utf-8")) == first

    # The export is a valid book equal to the source, apart from the as_of the load filled in.
    original = read_book(DEMO_BOOK)
    reread: Book = read_book(exported)
    assert {s.key: s for s in reread.symbols} == {s.key: s for s in original.symbols}
    by_id = {a.id: a for a in original.accounts}
    assert {a.id for a in reread.accounts} == set(by_id)
    for record in reread.accounts:
        assert without_as_of(record) == without_as_of(by_id[record.id]), record.id
        assert record.state.as_of is not None
        assert record.state.as_of.tzinfo is not None
    assert {a.id: a for a in reread.accounts}["beta-16"].state.as_of == datetime(
        2026, 1, 5, 9, 0, tzinfo=UTC
    )


def test_export_then_save_round_trips_the_accounts_on_each_database(
    db: Database, tmp_path: Path
) -> None:
    original = read_book(DEMO_BOOK)
    loaded_at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    with db.transaction() as session:
        repository.save_book(session, original, loaded_at)
    with db.transaction() as session:
        exported = repository.export_book(session)

    fresh = Database(migrated_sqlite(tmp_path / "fresh.db"))
    fresh.migrate()
    try:
        with fresh.transaction() as session:
            repository.save_book(session, exported, datetime(2026, 3, 3, tzinfo=UTC))
        with fresh.transaction() as session:
            again = repository.export_book(session)
    finally:
        fresh.dispose()

    assert again == exported
    by_id = {a.id: a for a in original.accounts}
    for record in exported.accounts:
        assert without_as_of(record) == without_as_of(by_id[record.id])
        expected_as_of = by_id[record.id].state.as_of or loaded_at
        assert record.state.as_of == expected_as_of


def test_cli_load_with_a_misnamed_returns_column_exits_2_and_writes_nothing(
    tmp_path: Path, cli: CliRunner
) -> None:
    """BUG (same cause as the header test above): the CLI crashes with ``KeyError`` instead of
    exiting 2 with a message naming the CSV header."""
    url = migrated_sqlite(tmp_path / "orchestrator.db")
    (tmp_path / "returns.csv").write_text("account_id,day,ret\nacct-one,2026-01-05,0.001\n")
    path = write_yaml(
        tmp_path / "book.yaml", book_data(account_data("acct-one"), returns="returns.csv")
    )

    assert cli(url, "accounts", "load", str(path)) == 2

    assert set(table_counts(url).values()) == {0}

"""Loading a book again: accounts the ledger holds keep their live state and an operator's
pause; the file's state replaces it only on purpose (``--replace-state``), recorded with who
and why. On SQLite and PostgreSQL, and through the CLI."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import AccountRow, AccountStateRow, OperatorActionRow
from orchestrator.domain.book import AccountLimits, AccountStatus, Mandate
from orchestrator.domain.errors import OpenReservations, ValidationFailed
from tests.component.conftest import CliRunner
from tests.component.test_book import account_data, book_data
from tests.component.test_repository import NOW, fill_leg, reserve, reserve_request, settle
from tests.support import account, book, load

LATER = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
REPLACEMENT = repository.StateReplacement(
    operator="jane", reason="resynced with the broker", source="book.yaml"
)


def live_state(db: Database, account_id: str = "acct") -> dict[str, Any]:
    with db.transaction() as session:
        row = session.get(AccountStateRow, account_id)
        assert row is not None
        return {
            "balance": row.balance,
            "equity": row.equity,
            "peak_equity": row.peak_equity,
            "free_margin": row.free_margin,
            "open_positions": row.open_positions,
            "realized_loss_today": row.realized_loss_today,
            "risk_committed_today": row.risk_committed_today,
            "as_of": row.as_of,
        }


def account_row(db: Database, account_id: str = "acct") -> AccountRow:
    with db.transaction() as session:
        row = session.get(AccountRow, account_id)
        assert row is not None
        return row


def operator_actions(db: Database) -> list[OperatorActionRow]:
    with db.transaction() as session:
        return list(session.scalars(select(OperatorActionRow).order_by(OperatorActionRow.id)))


def save(db: Database, *records: Any, **kwargs: Any) -> repository.BookLoad:
    with db.transaction() as session:
        return repository.save_book(session, book(*records), LATER, **kwargs)


def traded(db: Database) -> None:
    """Today's trading moved the ledger: a leg reserved, 0.40 of 1.00 lot filled, settled."""
    reserve(db, reserve_request(quantity="1.00", risk="300", margin="1085"))
    fill_leg(db, "0.40")
    settle(db)


def changed_on_file(account_id: str = "acct", **state: Any) -> Any:
    """The account as a later book file gives it: new limits and mandate, and a state that
    is not the ledger's (equity 99999, no positions)."""
    record = account(account_id, equity="99999", **state)
    return record.model_copy(
        update={
            "limits": AccountLimits(
                risk_per_trade=Decimal("0.02"),
                daily_loss_budget=Decimal(1234),
                max_drawdown=Decimal("0.20"),
                max_open_positions=3,
                max_lots=Decimal(5),
            ),
            "mandate": Mandate(allowed_symbols=["EURUSD"]),
        }
    )


# --------------------------------------------------------------------------------------------
# Live state kept


def test_reloading_a_book_keeps_the_live_state_and_takes_the_limits_and_mandate(
    db: Database,
) -> None:
    load(db, book(account("acct")))
    traded(db)
    before = live_state(db)
    assert before["risk_committed_today"] == Decimal(120)  # the filled share of 300

    loaded = save(db, changed_on_file())

    assert live_state(db) == before
    assert loaded == repository.BookLoad(new=[], kept=["acct"], replaced=[], still_paused=[])
    row = account_row(db)
    assert (row.daily_loss_budget, row.max_open_positions, row.max_lots) == (
        Decimal(1234),
        3,
        Decimal(5),
    )
    assert row.allowed_symbols == ["EURUSD"]
    assert row.updated_at == LATER
    assert operator_actions(db) == []


def test_a_new_account_in_a_reloaded_book_takes_the_file_state(db: Database) -> None:
    load(db, book(account("acct")))
    traded(db)
    before = live_state(db)

    loaded = save(db, changed_on_file(), account("newcomer", equity="12345", open_positions=2))

    assert live_state(db) == before
    assert (loaded.new, loaded.kept) == (["newcomer"], ["acct"])
    newcomer = live_state(db, "newcomer")
    assert (newcomer["equity"], newcomer["open_positions"]) == (Decimal(12345), 2)
    assert newcomer["risk_committed_today"] == Decimal(0)
    assert newcomer["as_of"] == LATER


# --------------------------------------------------------------------------------------------
# Status


def test_an_operators_pause_survives_a_reload_the_files_own_pause_and_disabling_do_not(
    db: Database,
) -> None:
    load(db, book(account("acct")))
    with db.transaction() as session:
        repository.set_account_status(
            session, "acct", AccountStatus.PAUSED, "jane: margin call", NOW
        )

    for status in ("ACTIVE", "PAUSED"):
        loaded = save(db, account("acct", status=status))
        row = account_row(db)
        assert (row.status, row.status_reason) == ("PAUSED", "jane: margin call")
        assert loaded.still_paused == ["acct"]

    loaded = save(db, account("acct", status="DISABLED"))
    assert loaded.still_paused == []
    assert (account_row(db).status, account_row(db).status_reason) == ("DISABLED", None)

    # A pause the file gave is the file's to lift.
    save(db, account("acct", status="PAUSED"))
    assert save(db, account("acct", status="ACTIVE")).still_paused == []
    assert account_row(db).status == "ACTIVE"


# --------------------------------------------------------------------------------------------
# Replacing the state on purpose


def test_replace_state_takes_the_file_state_and_records_who_why_and_which_accounts(
    db: Database,
) -> None:
    load(db, book(account("acct")))
    traded(db)

    loaded = save(db, changed_on_file(), account("newcomer"), replace_state=REPLACEMENT)

    assert loaded == repository.BookLoad(
        new=["newcomer"], kept=[], replaced=["acct"], still_paused=[]
    )
    assert live_state(db) == {
        "balance": Decimal(99999),
        "equity": Decimal(99999),
        "peak_equity": Decimal(99999),
        "free_margin": Decimal(99999),
        "open_positions": 0,
        "realized_loss_today": Decimal(0),
        "risk_committed_today": Decimal(0),
        "as_of": LATER,
    }
    [action] = operator_actions(db)
    assert (action.action, action.operator, action.reason, action.at) == (
        "replace_state",
        "jane",
        "resynced with the broker",
        LATER,
    )
    assert action.outcome == {
        "file": "book.yaml",
        "accounts": ["acct"],
        "new_accounts": ["newcomer"],
    }


def test_replace_state_is_refused_while_a_leg_holds_a_reservation_and_changes_nothing(
    db: Database,
) -> None:
    load(db, book(account("acct")))
    reserve(db, reserve_request(signal_id="sig-open", risk="300"))
    before, limits = live_state(db), account_row(db).daily_loss_budget

    with pytest.raises(OpenReservations, match="acct \\(signal sig-open\\)"):
        save(db, changed_on_file(), account("newcomer"), replace_state=REPLACEMENT)

    assert live_state(db) == before
    assert account_row(db).daily_loss_budget == limits
    assert operator_actions(db) == []
    with db.transaction() as session:
        assert session.get(AccountRow, "newcomer") is None


def test_replace_state_without_a_reason_is_refused(db: Database) -> None:
    load(db, book(account("acct")))
    traded(db)
    before = live_state(db)
    nameless = repository.StateReplacement(operator="jane", reason="  ", source="book.yaml")

    with pytest.raises(ValidationFailed, match="reason"):
        save(db, changed_on_file(), replace_state=nameless)

    assert live_state(db) == before
    assert operator_actions(db) == []


# --------------------------------------------------------------------------------------------
# The CLI


def write_book(path: Path, *accounts: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(book_data(*accounts), sort_keys=False), "utf-8")
    return path


def said(capsys: Any) -> str:
    return " ".join(capsys.readouterr().out.split())


def cli_db(tmp_path: Path) -> tuple[str, Database]:
    url = f"sqlite:///{tmp_path / 'orchestrator.db'}"
    db = Database(url)
    db.migrate()
    return url, db


def test_cli_reload_says_it_kept_the_live_state(
    tmp_path: Path, cli: CliRunner, capsys: Any
) -> None:
    url, db = cli_db(tmp_path)
    path = write_book(tmp_path / "book.yaml", account_data("acct"))
    assert cli(url, "accounts", "load", str(path)) == 0
    assert "kept the live state of 0 accounts; 1 new accounts take the file's state" in said(capsys)
    traded(db)
    before = live_state(db)

    write_book(path, account_data("acct"), account_data("acct-two"))
    assert cli(url, "accounts", "load", str(path)) == 0

    assert "kept the live state of 1 accounts; 1 new accounts take the file's state" in said(capsys)
    assert live_state(db) == before
    db.dispose()


def test_cli_replace_state_needs_a_reason_and_changes_nothing_without_one(
    tmp_path: Path, cli: CliRunner, capsys: Any
) -> None:
    url, db = cli_db(tmp_path)
    path = write_book(tmp_path / "book.yaml", account_data("acct"))
    assert cli(url, "accounts", "load", str(path)) == 0
    traded(db)
    before = live_state(db)
    capsys.readouterr()

    assert cli(url, "accounts", "load", str(path), "--replace-state") == 2

    assert "--reason" in capsys.readouterr().err
    assert live_state(db) == before
    assert operator_actions(db) == []
    db.dispose()


def test_cli_replace_state_replaces_it_and_records_the_operator_action(
    tmp_path: Path, cli: CliRunner, capsys: Any
) -> None:
    url, db = cli_db(tmp_path)
    path = write_book(tmp_path / "book.yaml", account_data("acct"))
    assert cli(url, "accounts", "load", str(path)) == 0
    traded(db)
    capsys.readouterr()

    assert (
        cli(
            url,
            *("accounts", "load", str(path), "--replace-state"),
            *("--reason", "broker resync", "--operator", "jane"),
        )
        == 0
    )

    assert "replaced the live state of 1 accounts from the file" in said(capsys)
    assert live_state(db)["risk_committed_today"] == Decimal(0)
    [action] = operator_actions(db)
    assert (action.action, action.operator, action.reason) == (
        "replace_state",
        "jane",
        "broker resync",
    )
    assert action.outcome["accounts"] == ["acct"]
    assert action.outcome["file"] == str(path.resolve())
    db.dispose()

"""``starter.py reduce-only`` and ``allow-entries``: persisted on the accounts with why, who and
when, recorded in operator actions one row per account, all or nothing on bad input (the
service on both databases, the commands on SQLite)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import AccountRow, OperatorActionRow
from orchestrator.domain.errors import ValidationFailed
from orchestrator.services import operators
from tests.component.conftest import CliRunner, migrated_sqlite
from tests.support import account, book, load


def flags(db: Database) -> dict[str, tuple[bool, str | None, str | None, bool]]:
    """Per account: reduce-only, its reason, who set it, whether it says when."""
    with db.transaction() as session:
        return {
            row.account_id: (
                row.reduce_only,
                row.reduce_only_reason,
                row.reduce_only_by,
                row.reduce_only_at is not None,
            )
            for row in session.scalars(select(AccountRow).order_by(AccountRow.account_id))
        }


def actions(db: Database) -> list[tuple[str, str | None, str, str]]:
    with db.transaction() as session:
        rows = session.scalars(select(OperatorActionRow).order_by(OperatorActionRow.id))
        return [(r.action, r.target, r.operator, r.reason) for r in rows]


CLEAR = (False, None, None, False)


def test_reduce_only_then_allow_entries_persists_and_records_each_account(db: Database) -> None:
    load(db, book(account("a"), account("b"), account("c")))

    reached = operators.reduce_only(db, ["b", "a"], operator="jane", reason="margin call")

    assert reached == ["a", "b"]
    assert flags(db) == {
        "a": (True, "margin call", "jane", True),
        "b": (True, "margin call", "jane", True),
        "c": CLEAR,
    }
    assert operators.allow_entries(db, None, operator="sam", reason="limits reset") == [
        "a",
        "b",
        "c",
    ]
    assert flags(db) == {"a": CLEAR, "b": CLEAR, "c": CLEAR}
    assert actions(db) == [
        ("reduce_only", "a", "jane", "margin call"),
        ("reduce_only", "b", "jane", "margin call"),
        ("allow_entries", "a", "sam", "limits reset"),
        ("allow_entries", "b", "sam", "limits reset"),
        ("allow_entries", "c", "sam", "limits reset"),
    ]


@pytest.mark.parametrize(
    ("accounts", "operator", "reason", "field"),
    [
        (["a", "nope"], "jane", "why", "account"),
        (["a"], " ", "why", "operator"),
        (["a"], "jane", "", "reason"),
        ([], "jane", "why", "account"),
    ],
    ids=["unknown-account", "no-operator", "no-reason", "no-account"],
)
def test_bad_input_changes_nothing_and_records_nothing(
    db: Database, accounts: list[str], operator: str, reason: str, field: str
) -> None:
    load(db, book(account("a")))

    with pytest.raises(ValidationFailed) as failed:
        operators.reduce_only(db, accounts, operator=operator, reason=reason)

    assert [problem[0] for problem in failed.value.problems] == [field]
    assert flags(db) == {"a": CLEAR}
    assert actions(db) == []


def test_the_commands_set_and_clear_it_and_accounts_list_shows_it(
    tmp_path: Path, cli: CliRunner, capsys: Any
) -> None:
    url = migrated_sqlite(tmp_path / "orchestrator.db")
    db = Database(url)
    try:
        load(db, book(account("alpha-01"), account("beta-02")))
        argv = ["reduce-only", "alpha-01", "--reason", "daily loss near", "--operator", "jane"]

        assert cli(url, *argv) == 0
        assert "reduce-only (no new risk; exits still go out): 1 account(s)" in (
            capsys.readouterr().out
        )
        assert cli(url, "accounts", "list", "--json") == 0
        listed = {a["account_id"]: a for a in json.loads(capsys.readouterr().out)}
        assert listed["alpha-01"]["reduce_only"] is True
        assert listed["alpha-01"]["reduce_only_reason"] == "daily loss near"
        assert listed["alpha-01"]["reduce_only_by"] == "jane"
        assert listed["alpha-01"]["reduce_only_at"] is not None
        assert listed["beta-02"]["reduce_only"] is False
        assert cli(url, "accounts", "list") == 0
        assert "by jane: daily loss near" in capsys.readouterr().out

        assert cli(url, "allow-entries", "--all", "--reason", "reset", "--operator", "jane") == 0
        assert "entries allowed again: 2 account(s)" in capsys.readouterr().out
        assert flags(db) == {"alpha-01": CLEAR, "beta-02": CLEAR}
    finally:
        db.dispose()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["reduce-only", "alpha-01", "ghost", "--reason", "r"], "unknown account 'ghost'"),
        (["reduce-only", "--reason", "r"], "name at least one account, or --all"),
        (["reduce-only", "alpha-01", "--all", "--reason", "r"], "not both"),
        (["allow-entries", "alpha-01", "--reason", " "], "give a reason"),
    ],
    ids=["unknown-account", "no-account", "accounts-and-all", "blank-reason"],
)
def test_the_commands_refuse_bad_input_with_exit_2_and_change_nothing(
    argv: list[str], says: str, tmp_path: Path, cli: CliRunner, capsys: Any
) -> None:
    url = migrated_sqlite(tmp_path / "orchestrator.db")
    db = Database(url)
    try:
        load(db, book(account("alpha-01")))
        assert cli(url, *argv, "--operator", "jane") == 2
        captured = capsys.readouterr()
        assert says in captured.err
        assert "Traceback" not in captured.err
        assert flags(db) == {"alpha-01": CLEAR}
        assert actions(db) == []
    finally:
        db.dispose()


def test_a_flatten_without_a_reason_is_refused_with_exit_2_and_starts_nothing(
    tmp_path: Path, cli: CliRunner, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A flatten of one symbol sets no reduce-only, whose check would otherwise refuse it: the
    # command checks who and why itself, before it reaches Temporal (nothing listens here).
    monkeypatch.setenv("TEO_TEMPORAL_ADDRESS", "127.0.0.1:9")
    url = migrated_sqlite(tmp_path / "orchestrator.db")
    db = Database(url)
    try:
        load(db, book(account("alpha-01")))
        for extra in (["--symbol", "EURUSD"], []):
            argv = ["flatten", "--reason", " ", "--operator", "jane", *extra]
            assert cli(url, *argv) == 2
            captured = capsys.readouterr()
            assert "give a reason" in captured.err
            assert "Traceback" not in captured.err
        assert flags(db) == {"alpha-01": CLEAR}
        assert actions(db) == []
    finally:
        db.dispose()

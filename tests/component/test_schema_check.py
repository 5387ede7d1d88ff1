"""Only ``starter.py db upgrade`` migrates: against a database without the code's schema, or one
revision behind, each starter command that touches the database, the worker without ``--dev``
and the webhook exit 1 naming both revisions and ``db upgrade``, and write nothing; ``db
upgrade`` then makes the same command work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.adapters.db.engine import Database
from orchestrator.config import PROJECT_ROOT
from tests.component.conftest import CliRunner
from tests.support import PLANTED_PG_PASSWORD, schema_revisions, schema_version

HEAD, PREVIOUS = schema_revisions()
BOOK = str(PROJECT_ROOT / "demo" / "book.yaml")
SIGNAL = str(PROJECT_ROOT / "demo" / "signal-eurusd.json")
UPGRADE = "run `python starter.py db upgrade`"

# Every command that reads or writes the database. The check comes before any Temporal
# connection, so the ones that also need Temporal are refused here without a server.
DATABASE_COMMANDS = [
    ["submit", SIGNAL],
    ["plan", SIGNAL],
    ["accounts", "load", BOOK],
    ["accounts", "list", "--json"],
    ["accounts", "export", "exported.json"],
    ["orders", "--json"],
    ["pause", "alpha-01", "--reason", "test"],
    ["resume", "alpha-01"],
    ["reduce-only", "alpha-01", "--reason", "test"],
    ["allow-entries", "--all", "--reason", "test"],
    ["halt", "--reason", "test"],
    ["unhalt", "--reason", "test"],
    ["cancel", "s-1", "--reason", "test"],
]


def refusal(capsys: Any) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert captured.out == ""
    return " ".join(captured.err.split())


def behind(path: Path) -> str:
    """A SQLite file migrated to the revision before the code's head."""
    url = f"sqlite:///{path}"
    db = Database(url)
    db.migrate(PREVIOUS)
    db.dispose()
    return url


def version_of(url: str) -> list[str]:
    db = Database(url)
    try:
        return schema_version(db)
    finally:
        db.dispose()


@pytest.mark.parametrize("argv", DATABASE_COMMANDS, ids=" ".join)
def test_a_command_against_a_database_without_a_schema_exits_1_and_creates_nothing(
    argv: list[str], tmp_path: Path, cli: CliRunner, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    database = tmp_path / "orchestrator.db"

    assert cli(f"sqlite:///{database}", *argv) == 1

    said = refusal(capsys)
    assert f"the database at sqlite:///{database} has no schema yet" in said
    assert f"needs revision {HEAD}" in said
    assert UPGRADE in said
    assert not database.exists(), "the check creates no database file"
    assert not (tmp_path / "exported.json").exists()


@pytest.mark.parametrize("argv", DATABASE_COMMANDS, ids=" ".join)
def test_a_command_against_a_database_one_revision_behind_exits_1_naming_both_revisions(
    argv: list[str], tmp_path: Path, cli: CliRunner, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = behind(tmp_path / "orchestrator.db")

    assert cli(url, *argv) == 1

    said = refusal(capsys)
    assert f"the database at {url} is at revision {PREVIOUS}, this code needs {HEAD}" in said
    assert UPGRADE in said
    assert version_of(url) == [PREVIOUS], "the command migrated nothing"
    assert not (tmp_path / "exported.json").exists()


@pytest.mark.parametrize("start", ["no schema", "one revision behind"])
def test_db_upgrade_then_makes_the_refused_commands_work(
    start: str, tmp_path: Path, cli: CliRunner, capsys: Any
) -> None:
    database = tmp_path / "orchestrator.db"
    url = f"sqlite:///{database}" if start == "no schema" else behind(database)
    assert cli(url, "accounts", "load", BOOK) == 1
    capsys.readouterr()

    assert cli(url, "db", "upgrade") == 0
    assert f"database at the latest schema: {url}" in " ".join(capsys.readouterr().out.split())
    assert version_of(url) == [HEAD]

    assert cli(url, "accounts", "load", BOOK) == 0
    assert cli(url, "accounts", "list", "--json") == 0
    capsys.readouterr()
    assert cli(url, "orders", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []
    assert cli(url, "plan", SIGNAL, "--json") == 0
    assert json.loads(capsys.readouterr().out)["signal_id"] == "demo-eurusd-1"


def test_db_upgrade_names_the_database_without_its_password(
    postgres_db: Database, cli: CliRunner, capsys: Any
) -> None:
    assert PLANTED_PG_PASSWORD in postgres_db.url

    assert cli(postgres_db.url, "db", "upgrade") == 0

    out = capsys.readouterr().out
    assert f"database at the latest schema: {postgres_db.display_url}" in " ".join(out.split())
    assert PLANTED_PG_PASSWORD not in out


@pytest.mark.parametrize("script", ["worker.py", "webhook.py"])
def test_the_worker_and_the_webhook_refuse_a_database_one_revision_behind_with_exit_1(
    script: str, tmp_path: Path
) -> None:
    """Before they connect to anything: the Temporal address here answers nobody."""
    url = behind(tmp_path / "orchestrator.db")
    env = {
        **os.environ,
        "TEO_DATABASE_URL": url,
        "TEO_TEMPORAL_ADDRESS": "127.0.0.1:9",
        "TEO_METRICS_PORT": "0",
        "TEO_TEMPORAL_METRICS_PORT": "0",
        "TEO_WEBHOOK_SHARED_SECRET": "schema-check",
    }
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 1, done.stderr
    said = " ".join(done.stderr.split())
    assert f"is at revision {PREVIOUS}, this code needs {HEAD}" in said
    assert UPGRADE in said
    assert "Traceback" not in done.stderr
    assert version_of(url) == [PREVIOUS]

"""Every file the starter and the worker read from a user: one that cannot be read, or whose
bytes are not UTF-8, is invalid input (exit 2) with a message naming the file, and nothing is
written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from orchestrator.adapters.codec import new_key_line
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import (
    AccountRow,
    AccountStateRow,
    DailyReturnRow,
    SymbolSpecRow,
)
from orchestrator.config import PROJECT_ROOT
from tests.component.conftest import CliRunner
from tests.component.test_book import account_data, book_data

LATIN_1 = "café".encode("latin-1")
"""Bytes that are not UTF-8 (a Latin-1 é), as a file saved in the wrong encoding has them."""


def not_utf8(path: Path, text: str) -> Path:
    """``text`` with a Latin-1 byte in it (inside a string, so only its encoding is wrong)."""
    path.write_bytes(text.replace("NOTE", "\x00").encode().replace(b"\x00", LATIN_1))
    return path


def stored_rows(url: str) -> int:
    db = Database(url)
    try:
        db.migrate()
        with db.transaction() as session:
            return sum(
                session.scalar(select(func.count()).select_from(table)) or 0
                for table in (AccountRow, AccountStateRow, SymbolSpecRow, DailyReturnRow)
            )
    finally:
        db.dispose()


def refusal(capsys: Any, path: Path) -> str:
    err: str = capsys.readouterr().err
    assert str(path) in err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("command", ["submit", "plan"])
def test_a_signal_file_that_is_not_utf8_exits_2_naming_it(
    command: str, tmp_path: Path, cli: CliRunner, capsys: Any
) -> None:
    signal = {"signal_id": "s-1", "symbol": "EURUSD", "side": "BUY", "entry": "1.085"}
    path = not_utf8(tmp_path / "signal.json", json.dumps({**signal, "note": "NOTE"}))
    database = tmp_path / "orchestrator.db"

    assert cli(f"sqlite:///{database}", command, str(path)) == 2

    assert "not UTF-8 text" in refusal(capsys, path)
    assert not database.exists(), "nothing is written for a refused signal"


def test_a_book_that_is_not_utf8_exits_2_naming_it_and_writes_nothing(
    tmp_path: Path, cli: CliRunner, capsys: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'orchestrator.db'}"
    account = account_data("acct-one")
    account["name"] = "NOTE"
    path = not_utf8(tmp_path / "book.yaml", yaml.safe_dump(book_data(account)))

    assert cli(url, "accounts", "load", str(path)) == 2

    assert "not UTF-8 text" in refusal(capsys, path)
    assert stored_rows(url) == 0


def test_a_returns_csv_that_is_not_utf8_exits_2_naming_it_and_writes_nothing(
    tmp_path: Path, cli: CliRunner, capsys: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'orchestrator.db'}"
    returns = not_utf8(
        tmp_path / "returns.csv", "account_id,day,return\nacct-one,2026-01-05,0.001 NOTE\n"
    )
    path = tmp_path / "book.yaml"
    path.write_text(
        yaml.safe_dump(book_data(account_data("acct-one"), returns="returns.csv")), "utf-8"
    )

    assert cli(url, "accounts", "load", str(path)) == 2

    assert "not UTF-8 text" in refusal(capsys, returns)
    assert stored_rows(url) == 0


def test_codec_new_key_into_a_file_that_is_not_utf8_exits_2_and_leaves_it_alone(
    tmp_path: Path, cli: CliRunner, capsys: Any
) -> None:
    path = not_utf8(tmp_path / "keys", f"# NOTE\n{new_key_line('k1')}\n")
    before = path.read_bytes()

    assert (
        cli(f"sqlite:///{tmp_path / 'o.db'}", "codec", "new-key", "k2", "--key-file", str(path))
        == 2
    )

    assert "not UTF-8 text" in refusal(capsys, path)
    assert path.read_bytes() == before


def test_a_configured_key_file_that_is_not_utf8_exits_2_naming_it(
    tmp_path: Path, cli: CliRunner, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = not_utf8(tmp_path / "keys", f"# NOTE\n{new_key_line('k1')}\n")
    monkeypatch.setenv("TEO_CODEC_KEY_FILE", str(keys))
    history = tmp_path / "signal-s-1.json"
    history.write_text("{}", "utf-8")

    assert cli(f"sqlite:///{tmp_path / 'o.db'}", "replay", str(history)) == 2

    assert "TEO_CODEC_KEY_FILE" in refusal(capsys, keys)


def test_a_tls_file_that_cannot_be_read_exits_2_naming_it(
    tmp_path: Path, cli: CliRunner, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "ca.pem"
    monkeypatch.setenv("TEO_TEMPORAL_TLS_CA_FILE", str(missing))

    assert cli(f"sqlite:///{tmp_path / 'o.db'}", "status", "s-1") == 2

    assert "cannot read TLS file" in refusal(capsys, missing)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("fix.yaml", "name: NOTE\nhost: fix.example.invalid\n", "not UTF-8 text"),
        ("fix.yaml", "name: [prime\n", "not valid YAML"),
        ("fix.json", '{"name": "prime", "port": "not a port"}', "port"),
    ],
)
def test_the_worker_refuses_a_fix_configuration_it_cannot_use_with_exit_2(
    name: str, text: str, expected: str, tmp_path: Path
) -> None:
    """Before it connects to anything: the Temporal address here answers nobody."""
    path = not_utf8(tmp_path / name, text)
    env = {
        **os.environ,
        "TEO_FIX_CONFIG": str(path),
        "TEO_DATABASE_URL": f"sqlite:///{tmp_path / 'o.db'}",
        "TEO_TEMPORAL_ADDRESS": "127.0.0.1:9",
        "TEO_METRICS_PORT": "0",
        "TEO_TEMPORAL_METRICS_PORT": "0",
    }
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "worker.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2, done.stderr
    assert str(path) in done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr

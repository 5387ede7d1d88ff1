"""Bad input, generated (hypothesis): every malformed signal payload and account book is
refused with a validation error that names where it is wrong — never a crash, never a started
workflow, nothing written."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import AccountRow, SignalRow
from orchestrator.domain.errors import ValidationFailed
from orchestrator.domain.signal import Signal
from orchestrator.services.submit import parse_signal
from tests.component.conftest import CliRunner
from tests.support import account, book

VALID_SIGNAL: dict[str, Any] = {
    "signal_id": "fuzz-1",
    "symbol": "EURUSD",
    "side": "BUY",
    "entry": "1.08500",
    "stop": "1.08200",
    "take_profit": "1.09100",
    "order_type": "LIMIT",
    "account_ids": ["alpha-01", "beta-02"],
    "reroute_on_pause": False,
    "note": "fuzzed",
}

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", " ", "1e999", "-0", "NaN", "Infinity", "1.0850.0", "BUY ", "sell"]),
    st.lists(st.text(max_size=8), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@st.composite
def mutated_signals(draw: st.DrawFn) -> tuple[dict[str, Any], set[str]]:
    """A valid signal with one to three fields broken (dropped, replaced by junk, or added);
    returns it and the names of the fields touched."""
    data = dict(VALID_SIGNAL)
    touched: set[str] = set()
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        key = draw(st.sampled_from([*VALID_SIGNAL, "unexpected_field"]))
        touched.add(key)
        if key in data and draw(st.booleans()):
            del data[key]
        else:
            data[key] = draw(JUNK)
    return data, touched


def names_a_field(error: ValidationFailed, fields: set[str]) -> bool:
    return any(
        any(field in location or field in message for field in fields)
        for location, message in error.problems
    )


@settings(max_examples=400, deadline=None)
@given(mutated_signals())
def test_a_broken_signal_is_refused_naming_a_field_it_broke_or_accepted_whole(
    case: tuple[dict[str, Any], set[str]],
) -> None:
    data, touched = case
    try:
        signal = parse_signal(json.dumps(data, default=str), source="fuzz.json")
    except ValidationFailed as error:
        assert error.problems
        assert error.source == "fuzz.json"
        # Some problem names a field that was broken, or the rule it broke between fields.
        assert names_a_field(error, touched | {"stop", "entry", "take_profit"}), error.problems
    else:
        # Accepted only when every value is still a legal one: exact decimals, stop on the
        # losing side.
        assert isinstance(signal, Signal)
        assert isinstance(signal.entry, Decimal)
        assert (signal.stop < signal.entry) == (signal.side == "BUY")


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_arbitrary_bytes_are_refused_never_a_crash(raw: str | bytes) -> None:
    try:
        parse_signal(raw, source="raw")
    except ValidationFailed as error:
        assert error.problems
    else:
        raise AssertionError(f"accepted {raw!r}")


@st.composite
def mutated_books(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid two-account book with one account field broken; returns it and the field."""
    document = json.loads(book(account("alpha-01"), account("beta-02")).model_dump_json())
    document.pop("returns", None)
    target = draw(st.integers(min_value=0, max_value=1))
    record = document["accounts"][target]
    section = draw(st.sampled_from(["top", "limits", "state"]))
    fields = record if section == "top" else record[section]
    key = draw(
        st.sampled_from(
            sorted(k for k in fields if k not in {"name", "paper", "symbol_map", "mandate"})
        )
    )
    if draw(st.booleans()) and key not in {"reserve_only", "reroute_on_pause", "status"}:
        del fields[key]
    else:
        fields[key] = draw(JUNK)
    return document, key


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=mutated_books())
def test_a_broken_book_is_refused_naming_the_field_and_nothing_is_written(
    sqlite_db: Database,
    cli: CliRunner,
    tmp_path: Path,
    capsys: Any,
    case: tuple[dict[str, Any], str],
) -> None:
    document, key = case
    capsys.readouterr()
    path = tmp_path / "book.json"
    path.write_text(json.dumps(document, default=str), encoding="utf-8")
    before = counts(sqlite_db)
    code = cli(sqlite_db.url, "accounts", "load", str(path))
    if code == 0:
        # The junk happened to be a legal value (say, an integer for a decimal): loaded whole.
        assert counts(sqlite_db)[0] >= 2
        return
    assert code == 2
    assert key in capsys.readouterr().err
    assert counts(sqlite_db) == before  # all or nothing


def counts(db: Database) -> tuple[int, int]:
    with db.transaction() as session:
        accounts = session.scalar(select(func.count()).select_from(AccountRow)) or 0
        signals = session.scalar(select(func.count()).select_from(SignalRow)) or 0
    return accounts, signals


def test_a_refused_signal_file_starts_nothing_and_writes_nothing(
    sqlite_db: Database, cli: CliRunner, tmp_path: Path, capsys: Any
) -> None:
    """The CLI validates before it connects: TEO_TEMPORAL_ADDRESS here answers nothing, and a
    refused signal still exits 2 with the field named."""
    path = tmp_path / "signal.json"
    path.write_text(json.dumps({**VALID_SIGNAL, "stop": "1.09000"}), encoding="utf-8")
    before = counts(sqlite_db)
    assert cli(sqlite_db.url, "submit", str(path)) == 2
    assert "stop" in capsys.readouterr().err
    assert counts(sqlite_db) == before

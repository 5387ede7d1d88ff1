"""The JSON log format: one object per line with the signal, account and workflow ids."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from orchestrator.adapters.observability.logs import JsonFormatter, bound, ids_from_workflow_id


def record(message: str = "hello", **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("teo.test", logging.INFO, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(entry, key, value)
    return entry


def formatted(entry: logging.LogRecord) -> dict[str, object]:
    line = JsonFormatter().format(entry)
    assert "\n" not in line
    parsed = json.loads(line)
    assert isinstance(parsed, dict)
    return parsed


@pytest.mark.parametrize(
    ("workflow_id", "ids"),
    [
        ("signal-s-42", ("s-42", None)),
        ("signal-s-42/alpha-01/completion", ("s-42", "alpha-01")),
        ("signal-s-42/beta-07/reroute", ("s-42", "beta-07")),
        ("signal-s-42/batch-2", ("s-42", None)),
        ("something-else", (None, None)),
    ],
)
def test_ids_are_read_from_the_projects_workflow_ids(
    workflow_id: str, ids: tuple[str | None, str | None]
) -> None:
    assert ids_from_workflow_id(workflow_id) == ids


def test_line_outside_any_context_has_the_id_keys_set_to_null() -> None:
    line = formatted(record())

    assert line["message"] == "hello"
    assert line["level"] == "INFO"
    assert (line["signal_id"], line["account_id"], line["workflow_id"]) == (None, None, None)


def test_workflow_logger_context_gives_workflow_signal_and_account() -> None:
    details = {"workflow_id": "signal-s-1/acc-9/completion", "workflow_type": "X", "run_id": "r"}

    line = formatted(record(temporal_workflow=details))

    assert (line["signal_id"], line["account_id"], line["workflow_id"]) == (
        "s-1",
        "acc-9",
        "signal-s-1/acc-9/completion",
    )
    assert (line["workflow_type"], line["run_id"]) == ("X", "r")


def test_bound_context_applies_inside_and_is_gone_after() -> None:
    with bound(signal_id="s-2", account_id="acc-1", workflow_id="signal-s-2"):
        inside = formatted(record())
    after = formatted(record())

    assert (inside["signal_id"], inside["account_id"]) == ("s-2", "acc-1")
    assert after["signal_id"] is None


def test_explicit_extra_wins_and_exceptions_are_kept_on_the_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        entry = record(account_id="acc-3")
        entry.exc_info = sys.exc_info()

    line = formatted(entry)

    assert line["account_id"] == "acc-3"
    assert "ValueError: boom" in str(line["exception"])

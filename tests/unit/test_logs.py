"""The JSON log format: one object per line with the signal, account and workflow ids."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from orchestrator.adapters.observability.logs import JsonFormatter, bound


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
    ("workflow_id", "signal_id"),
    [
        ("signal-s-42", "s-42"),
        ("signal-s-42/leg-3/completion", "s-42"),
        ("signal-s-42/batch-2/leg-7/reroute", "s-42"),
        ("signal-s-42/positions", "s-42"),
        ("something-else", None),
    ],
)
def test_the_signal_id_is_read_from_any_workflow_id_of_the_signal(
    workflow_id: str, signal_id: str | None
) -> None:
    line = formatted(record(workflow_id=workflow_id))
    assert (line["signal_id"], line["workflow_id"]) == (signal_id, workflow_id)


def test_line_outside_any_context_has_the_id_keys_set_to_null() -> None:
    line = formatted(record())

    assert line["message"] == "hello"
    assert line["level"] == "INFO"
    assert (line["signal_id"], line["account_id"], line["workflow_id"]) == (None, None, None)


def test_workflow_logger_context_gives_workflow_and_signal() -> None:
    details = {"workflow_id": "signal-s-1/leg-9/completion", "workflow_type": "X", "run_id": "r"}

    line = formatted(record(temporal_workflow=details))

    assert (line["signal_id"], line["account_id"], line["workflow_id"]) == (
        "s-1",
        None,
        "signal-s-1/leg-9/completion",
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

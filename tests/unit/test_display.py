"""Plain-words helpers of the terminal display."""

from __future__ import annotations

import pytest

from orchestrator.interfaces.display import signal_state


@pytest.mark.parametrize(
    ("execution", "phase", "shown"),
    [
        ("RUNNING", "EXECUTING", "EXECUTING"),
        ("COMPLETED", "CANCELLED", "CANCELLED"),
        ("COMPLETED", "COMPLETED", "COMPLETED"),
        # Terminate runs no workflow code: the phase still says EXECUTING, Temporal knows.
        ("TERMINATED", "EXECUTING", "TERMINATED (Temporal)"),
        ("CANCELED", "EXECUTING", "CANCELED (Temporal)"),
        ("FAILED", "PLANNING", "FAILED (Temporal)"),
        ("RUNNING", None, "RUNNING"),
    ],
)
def test_a_signal_shows_one_state_and_a_dead_run_never_shows_executing(
    execution: str, phase: str | None, shown: str
) -> None:
    assert signal_state(execution, phase) == shown

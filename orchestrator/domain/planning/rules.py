"""The version of the planning rules, and how a history records it."""

from __future__ import annotations

RULES_VERSION = 2
"""The version of the planning rules in this module. Bump it with every intended change to what
a plan decides (eligibility, sizing, rounding, scheduling): the signal workflow records it in its
history (:func:`rules_marker`), and ``starter.py audit`` re-derives a recorded plan only under
the rules it was made with, so an intended change of rules is told apart from drift."""

_RULES_MARKER = "planning-rules-v"


def rules_marker(version: int | None = None) -> str:
    """The patch id the signal workflow records (``workflow.deprecate_patch``) when it plans: the
    current rules' unless ``version`` says otherwise."""
    return f"{_RULES_MARKER}{RULES_VERSION if version is None else version}"


def rules_version_of(marker: str) -> int | None:
    """The rules version a recorded patch id stands for, or None for any other patch."""
    if not marker.startswith(_RULES_MARKER):
        return None
    number = marker.removeprefix(_RULES_MARKER)
    return int(number) if number.isdigit() else None

"""Operator controls as workflows receive them (signals and updates), their answers, and what
a workflow records of each. Fields are plain strings: the update validators, not
deserialisation, refuse a missing operator or reason, so the refusal says why.
"""

from __future__ import annotations

from enum import StrEnum

from orchestrator.domain.values import Identifier, Model


class OperatorAction(Model):
    operator: str = ""
    """Who acts (a person or system name)."""
    reason: str = ""
    """Why, in the operator's words."""


class PauseAccount(OperatorAction):
    account_id: Identifier
    reroute: bool = False
    """Reroute this account's waiting legs instead of skipping them."""


class ResumeAccount(OperatorAction):
    account_id: Identifier


class HaltRequest(OperatorAction):
    cancel_working: bool = False
    """Also cancel orders already working at the broker."""
    from_kill_switch: bool = False
    """Sent by the kill switch's own broadcast (already persisted). A halt sent to one workflow
    by hand (the Web UI, the ``temporal`` CLI) leaves it false: that workflow then throws the
    kill switch itself, persisted and broadcast to every running signal."""


class UnhaltRequest(OperatorAction):
    from_kill_switch: bool = False
    """As :attr:`HaltRequest.from_kill_switch`: an unhalt sent by hand lifts the kill switch."""


class CancelSignalRequest(OperatorAction):
    pass


class StopResult(Model):
    """A workflow's answer to a halt or a cancel."""

    workflow_id: str
    legs_stopped: int
    """Legs that had not sent their order and now never will."""
    orders_cancelled: int
    """Working orders cancelled at the broker."""


class ActionVia(StrEnum):
    SIGNAL = "signal"
    UPDATE = "update"
    CANCELLATION = "cancellation"
    """Temporal's own cancellation request (the Web UI's Request Cancellation button)."""


class ActionReceipt(Model):
    """An operator action as one workflow received it, whatever sent it (starter, ``temporal``
    CLI, Web UI): recorded in ``operator_actions`` by that workflow, once."""

    workflow_id: str
    run_id: str
    action: str
    """The signal or update name (``pause_account``, ``halt``, ...), or ``cancel_signal`` for a
    Temporal cancellation request."""
    via: ActionVia
    key: str
    """Which receipt of this run it is (``signal:pause_account:2``, ``update:<update id>``,
    ``cancellation``): with the run, the row's unique key, so a retried activity records it
    once; and how the sender's identity is found in the history."""
    target: str | None = None
    operator: str
    reason: str
    outcome: dict[str, int | str | bool] = {}


class ActionRecorded(Model):
    identity: str | None
    """The sending client's identity, as the history recorded it."""


class KillSwitch(Model):
    """Throw (or lift) the system-wide kill switch from inside a workflow: persisted, then
    broadcast to every other running signal workflow."""

    halted: bool
    operator: str
    reason: str
    cancel_working: bool = False
    origin_workflow_id: str
    """The workflow that received the halt by hand: it has already applied it."""
    origin_key: str
    """Makes the broadcast's update ids unique per origin, so a retry sends nothing twice."""


class KillSwitchResult(Model):
    reached: list[str]


class CancellationRequest(Model):
    """Who asked Temporal to cancel a workflow, read from its history."""

    identity: str | None
    reason: str

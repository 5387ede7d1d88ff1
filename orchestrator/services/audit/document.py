"""The audit document: what an audit of one signal found, as JSON (``starter.py audit --json``)
and as the pieces the readers fill in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from temporalio.client import WorkflowHistory

from orchestrator.domain.errors import OrchestratorError
from orchestrator.domain.positions import PositionStatus
from orchestrator.domain.report import LegStatus, SignalReport
from orchestrator.domain.values import Model


class UnreadableHistory(OrchestratorError):
    """A payload could not be decoded: encrypted with a key not configured here."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"cannot read the history's payloads ({detail}); if it is encrypted, configure its "
            "key (TEO_CODEC_KEYS or TEO_CODEC_KEY_FILE)"
        )


class TrailEntry(Model):
    at: datetime
    workflow_id: str
    kind: str
    account_id: str | None = None
    text: str


class Difference(Model):
    """A recorded value that the current planning code does not derive."""

    account_id: str
    field: str
    where: str
    recorded: str
    derived: str


class ValueVerdict(StrEnum):
    MATCH = "MATCH"
    DRIFT = "DRIFT"
    """Same rules, different values: the code changed what it decides without saying so."""
    RULES_CHANGED = "RULES_CHANGED"
    """Planned under other rules than the current code's: not compared."""
    NOT_PLANNED = "NOT_PLANNED"
    """The history stops before the plan was made."""


class ValueCheck(Model):
    verdict: ValueVerdict
    recorded_rules_version: int | None
    """None: the history has no rules marker (it stops before the plan)."""
    current_rules_version: int
    planned_at: datetime | None = None
    legs: int = 0
    denials: int = 0
    values_compared: int = 0
    differences: list[Difference] = []


class ReplayCheck(Model):
    workflow_id: str
    workflow_type: str
    events: int
    closed: bool
    failure: str | None = None


class OrderTrail(Model):
    client_order_id: str
    quantity: Decimal
    status: str | None
    filled: Decimal
    average_price: Decimal | None


class AccountAudit(Model):
    """One report line beside what the orders in the histories add up to."""

    account_id: str
    status: LegStatus
    requested: Decimal
    filled: Decimal
    """As the execution report says."""
    filled_by_orders: Decimal
    """The sum of the last known fill of each of the account's orders in the histories."""
    denial: str | None = None
    reason: str | None = None
    orders: list[OrderTrail] = []

    @property
    def agrees(self) -> bool:
        return self.filled == self.filled_by_orders


class PositionAudit(Model):
    """A position as its keeper last recorded it, with what breaks the protection rules."""

    account_id: str
    status: PositionStatus
    entry_quantity: Decimal
    open_quantity: Decimal
    realized_pnl: Decimal
    closes: list[str] = []
    note: str | None = None
    problems: list[str] = []
    """A protective order working on a flat position, covering more than is open, or an open
    position without a working stop that is not marked UNPROTECTED."""


class PositionsCheck(Model):
    """The keeper's protective quantities re-derived from the fills its history recorded."""

    compared: int
    """Protective targets compared."""
    differences: list[Difference] = []
    positions: list[PositionAudit] = []

    @property
    def ok(self) -> bool:
        return not self.differences and not any(p.problems for p in self.positions)


class Audit(Model):
    signal_id: str
    workflow_id: str
    run_id: str
    closed: bool
    replay: list[ReplayCheck]
    values: ValueCheck
    accounts: list[AccountAudit]
    """Empty while the signal runs: there is no report yet."""
    report: SignalReport | None
    trail: list[TrailEntry]
    positions: PositionsCheck | None = None
    """``None`` when the signal opened no position."""
    plaintext: list[str] = []
    """Payloads of an encrypted history sent without the codec (kept in clear by the server):
    a security finding, reported, not a failure of the audit."""

    @property
    def replay_ok(self) -> bool:
        return all(r.failure is None for r in self.replay)

    @property
    def fills_agree(self) -> bool:
        return all(a.agrees for a in self.accounts)

    @property
    def ok(self) -> bool:
        return (
            self.replay_ok
            and self.values.verdict is not ValueVerdict.DRIFT
            and self.fills_agree
            and (self.positions is None or self.positions.ok)
        )


@dataclass
class Activity:
    name: str
    input: Any
    scheduled_at: datetime
    result: Any = None
    completed: bool = False


@dataclass
class Read:
    """What one history recorded, decoded."""

    history: WorkflowHistory
    input: Any = None
    result: Any = None
    activities: list[Activity] = field(default_factory=list)
    delay_timers: dict[str, int] = field(default_factory=dict)
    """Account → the duration (ms) its delay timer was started with."""
    child_inputs: dict[str, Any] = field(default_factory=dict)
    rules_versions: list[int] = field(default_factory=list)
    planned_at: datetime | None = None
    trail: list[TrailEntry] = field(default_factory=list)
    steps: list[tuple[str, Any]] = field(default_factory=list)
    """A position keeper's steps in history order, for the positions' value check."""
    plaintext: list[str] = field(default_factory=list)
    """Payloads of an encrypted history that a client sent unencrypted (where they are)."""

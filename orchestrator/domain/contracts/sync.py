"""What crosses between the account sync workflow (``workflows/sync.py``) and its activities."""

from __future__ import annotations

from datetime import datetime

from orchestrator.domain.sync import Breach, Mismatch
from orchestrator.domain.values import Identifier, Model


class AccountSyncInput(Model):
    """One broker's sync, as its schedule starts it."""

    broker: Identifier
    activity_task_queue: str | None = None
    """Where the reading activity runs: the queue of the worker holding the broker's session
    (``TEO_BROKER_TASK_QUEUES``); ``None``: the workflow's own."""


class SyncRequest(Model):
    broker: Identifier
    accounts: list[Identifier] | None = None
    """Only these accounts of the broker (default: all of them)."""


class BreachAction(Model):
    account_id: Identifier
    breach: Breach
    flatten: bool
    """The account's limits say ``on_breach: flatten``: its positions are to be closed."""


class SyncResult(Model):
    """What one sync of a broker's accounts found and did."""

    broker: str
    at: datetime
    """The wall clock the activity read the accounts at."""
    trading_day_start: datetime | None = None
    """The trading-day boundary it used (``None``: no account)."""
    reported: list[str] = []
    """Accounts whose state the broker reported."""
    derived: list[str] = []
    """Accounts whose state was derived (the broker gave no reading)."""
    unread: list[str] = []
    """Accounts the broker gave nothing for: no reading, and no price to derive one from."""
    day_reset: list[str] = []
    """Accounts whose realized loss was reset for a new trading day."""
    mismatches: list[Mismatch] = []
    breaches: list[BreachAction] = []
    released: list[str] = []
    """Accounts whose system reduce-only the sync lifted (a new trading day, a reconciled
    account)."""


class FlattenRequest(Model):
    action_id: Identifier
    account_id: Identifier
    reason: str


class FlattenResult(Model):
    action_id: str
    workflow_id: str | None
    refused: str | None = None
    """Why the FLATTEN could not be submitted (trading halted, ...)."""

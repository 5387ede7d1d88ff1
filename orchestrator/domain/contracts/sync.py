"""What crosses between the account sync workflow (``workflows/sync.py``) and its activities."""

from __future__ import annotations

from datetime import datetime

from orchestrator.domain.sync import Breach, Mismatch, OrderMismatch
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
    """The differences of positions found (at most ``MAX_DETAILS``: ``mismatch_count`` says
    how many there were; the ledger keeps them all, ``reconcile`` shows them)."""
    order_mismatches: list[OrderMismatch] = []
    """The differences of working orders found (at most ``MAX_DETAILS`` as well)."""
    mismatch_count: int = 0
    order_mismatch_count: int = 0
    breaches: list[BreachAction] = []
    released: list[str] = []
    """Accounts whose system reduce-only the sync lifted (a new trading day, a reconciled
    account)."""

    def add_mismatches(self, found: list[Mismatch], orders: list[OrderMismatch]) -> None:
        """Keep the first ``MAX_DETAILS`` of each (the counts are set once the sync is done):
        the result stays small whatever the number of accounts (Temporal refuses payloads
        over 2 MB)."""
        self.mismatches.extend(found[: max(0, MAX_DETAILS - len(self.mismatches))])
        self.order_mismatches.extend(orders[: max(0, MAX_DETAILS - len(self.order_mismatches))])


MAX_DETAILS = 200
"""Mismatches of each kind a sync's result carries in full."""


class FlattenRequest(Model):
    action_id: Identifier
    account_id: Identifier
    reason: str


class FlattenResult(Model):
    action_id: str
    workflow_id: str | None
    refused: str | None = None
    """Why the FLATTEN could not be submitted (trading halted, ...)."""

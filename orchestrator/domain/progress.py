"""A signal's live progress, as its workflow's query answers it."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from orchestrator.domain.report import LegStatus, SignalStatus
from orchestrator.domain.values import Identifier, Model


class LegProgress(Model):
    """One leg as the live status query shows it."""

    account_id: Identifier
    status: LegStatus
    quantity: Decimal
    delay_ms: int
    due_at: datetime
    """When the leg's timer fires (workflow time)."""
    client_order_id: str
    filled: Decimal = Decimal(0)
    reason: str | None = None


class SignalProgress(Model):
    signal_id: Identifier
    phase: SignalStatus
    started_at: datetime
    legs: list[LegProgress]
    denied: int
    batches: int = 0
    """Batch child workflows running legs of this signal (their legs are not listed here)."""

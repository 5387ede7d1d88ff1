"""Signals as submitted: each id recorded once, ever."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from orchestrator.adapters.db.schema import SignalRow
from orchestrator.domain.errors import DuplicateSignal
from orchestrator.domain.signal import Signal


def record_signal(session: Session, signal: Signal, workflow_id: str, now: datetime) -> None:
    """Insert the signal; :class:`DuplicateSignal` if its id was ever submitted before."""
    session.add(
        SignalRow(
            signal_id=signal.signal_id,
            symbol=signal.symbol,
            side=signal.side.value,
            payload=signal.model_dump(mode="json"),
            workflow_id=workflow_id,
            submitted_at=now,
        )
    )
    try:
        session.flush()
    except IntegrityError as exc:
        raise DuplicateSignal(signal.signal_id) from exc


def signal_symbols(session: Session, signal_ids: Collection[str]) -> dict[str, str]:
    """Each known signal's symbol (as the signal names it), by signal id."""
    if not signal_ids:
        return {}
    rows = session.execute(
        select(SignalRow.signal_id, SignalRow.symbol).where(SignalRow.signal_id.in_(signal_ids))
    )
    return {signal_id: symbol for signal_id, symbol in rows}

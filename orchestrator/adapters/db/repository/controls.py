"""Operators' controls: the kill switch, an account's status, operator actions and their
receipts, and the gate every new order passes last."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from orchestrator.adapters.db.repository.reservation import RESERVED
from orchestrator.adapters.db.schema import (
    AccountRow,
    OperatorActionRow,
    RiskReservationRow,
    SystemControlRow,
)
from orchestrator.domain.book import AccountStatus
from orchestrator.domain.contracts.operators import ActionReceipt
from orchestrator.domain.planning import reduce_only_denial
from orchestrator.domain.values import DenialReason


def is_halted(session: Session) -> bool:
    row = session.get(SystemControlRow, 1)
    return bool(row and row.halted)


def halt_reason(session: Session) -> str | None:
    row = session.get(SystemControlRow, 1)
    return row.reason if row and row.halted else None


def set_halt(session: Session, *, halted: bool, operator: str, reason: str, now: datetime) -> None:
    row = session.get(SystemControlRow, 1, with_for_update=True)
    if row is None:
        row = SystemControlRow(id=1, halted=halted, updated_at=now)
        session.add(row)
    row.halted = halted
    row.reason = reason
    row.operator = operator
    row.updated_at = now
    session.flush()


def set_account_status(
    session: Session, account_id: str, status: AccountStatus, reason: str | None, now: datetime
) -> None:
    """Pause or resume an account; :class:`LookupError` if it is not in the book."""
    row = session.get(AccountRow, account_id, with_for_update=True)
    if row is None:
        raise LookupError(account_id)
    row.status = status.value
    row.status_reason = reason
    row.updated_at = now


def set_reduce_only(
    session: Session,
    account_ids: list[str] | None,
    *,
    reduce_only: bool,
    by: str,
    reason: str,
    now: datetime,
    cause: str | None = None,
) -> list[str]:
    """Put accounts in reduce-only (or take them out), recording why, who (an operator, or
    ``system``), when, and for the system what holds it (``cause``, a ``ReduceOnlyCause``);
    ``None``: every account in the book. The accounts it changed or
    confirmed, in order. All or nothing: :class:`LookupError` names the ids not in the book,
    and nothing is written."""
    query = select(AccountRow).order_by(AccountRow.account_id).with_for_update()
    if account_ids is not None:
        query = query.where(AccountRow.account_id.in_(account_ids))
    rows = list(session.scalars(query))
    if account_ids is not None:
        missing = sorted(set(account_ids) - {row.account_id for row in rows})
        if missing:
            raise LookupError(*missing)
    for row in rows:
        row.reduce_only = reduce_only
        row.reduce_only_reason = reason if reduce_only else None
        row.reduce_only_by = by if reduce_only else None
        row.reduce_only_at = now if reduce_only else None
        row.reduce_only_cause = cause if reduce_only else None
        row.updated_at = now
    session.flush()
    return [row.account_id for row in rows]


def record_operator_action(
    session: Session,
    *,
    action: str,
    target: str | None,
    operator: str,
    reason: str,
    reached: list[str],
    outcome: dict[str, object],
    now: datetime,
) -> None:
    session.add(
        OperatorActionRow(
            action=action,
            target=target,
            operator=operator,
            reason=reason,
            at=now,
            reached=reached,
            outcome=outcome,
        )
    )


def record_action_receipt(
    session: Session, receipt: ActionReceipt, identity: str | None, now: datetime
) -> bool:
    """Record one workflow's receipt of an operator action; a receipt already recorded (the
    activity retried) is left as it is. Whether this call wrote it."""
    values = {
        "action": receipt.action,
        "target": receipt.target,
        "operator": receipt.operator,
        "reason": receipt.reason,
        "at": now,
        "reached": [receipt.workflow_id],
        "outcome": dict(receipt.outcome),
        "workflow_id": receipt.workflow_id,
        "via": receipt.via.value,
        "identity": identity,
        "receipt": f"{receipt.workflow_id}/{receipt.run_id}/{receipt.key}",
    }
    dialect = session.get_bind().dialect.name
    insert_for = postgresql_insert if dialect == "postgresql" else sqlite_insert
    # RETURNING, not rowcount: an ORM-enabled INSERT ... ON CONFLICT DO NOTHING reports a
    # rowcount of 1 on PostgreSQL even when the conflict wrote nothing.
    written = session.execute(
        insert_for(OperatorActionRow)
        .values(values)
        .on_conflict_do_nothing(index_elements=["receipt"])
        .returning(OperatorActionRow.id)
    )
    return written.scalar_one_or_none() is not None


def order_gate(
    session: Session, signal_id: str, account_id: str
) -> tuple[DenialReason, str] | None:
    """The last check before a new entry order leaves for the broker: the leg's reservation is
    still open, the kill switch is off, the account is not paused and not in reduce-only.
    ``None`` means it may go. (Protective and closing orders do not pass it.)

    The open reservation closes a race: once ``cancel_order`` has settled a leg, an order
    activity whose thread had not yet reached the broker can no longer send anything."""
    reservation = session.scalar(
        select(RiskReservationRow)
        .where(
            RiskReservationRow.signal_id == signal_id,
            RiskReservationRow.account_id == account_id,
        )
        .with_for_update()
    )
    if reservation is None or reservation.status != RESERVED:
        return DenialReason.LEG_CLOSED, "the leg has no open risk reservation"
    if is_halted(session):
        return DenialReason.HALTED, f"trading halted: {halt_reason(session)}"
    account = session.get(AccountRow, account_id)
    if account is None:
        return DenialReason.ACCOUNT_DISABLED, "account no longer in the book"
    if account.status == AccountStatus.PAUSED.value:
        return DenialReason.PAUSED, f"account paused: {account.status_reason or 'no reason'}"
    if account.status != AccountStatus.ACTIVE.value:
        return DenialReason.ACCOUNT_DISABLED, f"account is {account.status}"
    if account.reduce_only:
        denial = reduce_only_denial(account_id, _reduce_only_why(account))
        return denial.reason, denial.detail
    return None


def _reduce_only_why(account: AccountRow) -> str:
    return f"{account.reduce_only_by or 'unknown'}: {account.reduce_only_reason or 'no reason'}"

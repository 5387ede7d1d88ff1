"""Order reconciliation in the ledger: the ledger's working orders of a page of accounts (entries
and protective orders) read at once, the order mismatches a sync found stored (acting from their
second sighting, as position mismatches do), and an operator's adoption of the broker's view of
an account's orders (``reconcile --accept``).

What ``--accept`` does with each kind (docs/operating.md says the same):

- UNKNOWN_TO_LEDGER, an order the ledger never had: recorded in the ledger as the broker
  reports it (purpose ADOPTED, signal id ``reconcile-order-{n}``); no workflow follows it, so
  the next syncs show what becomes of it (its fill turns up as a position to reconcile).
- UNKNOWN_TO_LEDGER, an order the ledger has as ended (cancelled, filled …) but the broker
  still works: not adopted, left standing (a protective order outliving its position is
  exactly what must not happen): cancel it at the broker; the mismatch goes once the broker no
  longer reports it.
- MISSING_AT_BROKER, an order the ledger has working and the broker does not report: ended in
  the ledger as CANCELLED, its reject text saying the broker did not report it and who
  accepted that (if it had filled, the positions' reconciliation shows the difference).
- QUANTITY_DIFFERS (what each says the order still works): the ledger's quantity becomes its
  fills plus what the broker says is left.
- UNKNOWN (the broker did not answer): nothing to adopt; left standing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.adapters.db.schema import AccountRow, OrderMismatchRow, OrderRow
from orchestrator.domain.orders import TERMINAL, OrderPurpose, OrderStatus
from orchestrator.domain.sync import LedgerOrder, MismatchKind, OrderMismatch
from orchestrator.domain.values import Side, plain

WORKING = [s.value for s in OrderStatus if s not in TERMINAL]


def ledger_orders(
    session: Session, account_ids: Sequence[str]
) -> dict[str, dict[str, LedgerOrder]]:
    """The working orders of the accounts, per account and client order id (one query)."""
    found: dict[str, dict[str, LedgerOrder]] = {}
    if not account_ids:
        return found
    for row in session.execute(
        select(
            OrderRow.account_id,
            OrderRow.client_order_id,
            OrderRow.broker_symbol,
            OrderRow.side,
            OrderRow.quantity,
            OrderRow.filled_quantity,
            OrderRow.status,
            OrderRow.purpose,
            OrderRow.created_at,
        ).where(OrderRow.account_id.in_(account_ids), OrderRow.status.in_(WORKING))
    ).tuples():
        account_id, cid, symbol, side, quantity, filled, status, purpose, written_at = row
        found.setdefault(account_id, {})[cid] = LedgerOrder(
            client_order_id=cid,
            broker_symbol=symbol,
            side=Side(side),
            quantity=quantity,
            filled=filled,
            status=OrderStatus(status),
            purpose=OrderPurpose(purpose),
            written_at=written_at,
        )
    return found


def ended_statuses(session: Session, client_order_ids: Iterable[str]) -> dict[str, OrderStatus]:
    """The ledger's status of each of these orders it has (one query)."""
    ids = sorted(set(client_order_ids))
    if not ids:
        return {}
    query = select(OrderRow.client_order_id, OrderRow.status).where(
        OrderRow.client_order_id.in_(ids)
    )
    return {cid: OrderStatus(status) for cid, status in session.execute(query).tuples()}


def stored_order_mismatches(
    session: Session, account_ids: Sequence[str]
) -> dict[str, list[OrderMismatchRow]]:
    stored: dict[str, list[OrderMismatchRow]] = {}
    if account_ids:
        for row in session.scalars(
            select(OrderMismatchRow).where(OrderMismatchRow.account_id.in_(account_ids))
        ):
            stored.setdefault(row.account_id, []).append(row)
    return stored


def store_order_mismatches(
    session: Session,
    broker: str,
    account_id: str,
    found: list[OrderMismatch],
    *,
    answered: bool,
    stored: list[OrderMismatchRow],
    now: datetime,
) -> list[OrderMismatchRow]:
    """Replace the account's stored order mismatches with what this sync found; returns the
    ones that stand. A mismatch seen before keeps when it was first detected. When the broker
    did not answer (``answered`` false), the differences found before stand and the ledger's
    other working orders are flagged unknown."""
    by_id = {m.client_order_id: m for m in stored}
    standing: list[OrderMismatchRow] = []
    seen: set[str] = set()
    for mismatch in found:
        cid = mismatch.client_order_id
        existing = by_id.get(cid)
        seen.add(cid)
        if not answered and existing is not None and existing.kind != MismatchKind.UNKNOWN:
            standing.append(existing)
            continue
        if existing is not None and existing.kind == mismatch.kind.value:
            existing.broker_quantity = mismatch.broker_quantity
            existing.broker_filled = mismatch.broker_filled
            existing.ledger_quantity = mismatch.ledger_quantity
            existing.ledger_status = _text(mismatch.ledger_status)
            existing.seen_at = now
            standing.append(existing)
            continue
        if existing is not None:
            session.delete(existing)
            session.flush()
        row = OrderMismatchRow(
            account_id=account_id,
            broker=broker,
            client_order_id=cid,
            broker_symbol=mismatch.broker_symbol,
            side=mismatch.side.value if mismatch.side else None,
            kind=mismatch.kind.value,
            broker_quantity=mismatch.broker_quantity,
            broker_filled=mismatch.broker_filled,
            broker_order_id=mismatch.broker_order_id,
            order_type=_text(mismatch.order_type),
            ledger_quantity=mismatch.ledger_quantity,
            ledger_status=_text(mismatch.ledger_status),
            detected_at=now,
            seen_at=now,
        )
        session.add(row)
        standing.append(row)
    for cid, existing in by_id.items():
        if cid in seen:
            continue
        if answered or existing.kind == MismatchKind.UNKNOWN:
            session.delete(existing)
        else:
            standing.append(existing)
    return standing


def _text(value: StrEnum | None) -> str | None:
    """An enum as its column's string (``None`` stays ``None``)."""
    return None if value is None else value.value


def list_order_mismatches(
    session: Session, account_id: str | None = None
) -> list[OrderMismatchRow]:
    query = select(OrderMismatchRow).order_by(
        OrderMismatchRow.account_id, OrderMismatchRow.client_order_id
    )
    if account_id is not None:
        query = query.where(OrderMismatchRow.account_id == account_id)
    return list(session.scalars(query))


@dataclass(frozen=True)
class AdoptedOrder:
    client_order_id: str
    kind: str
    done: str
    """What the ledger now says, in words."""


def accept_orders(
    session: Session, account: AccountRow, *, operator: str, reason: str, now: datetime
) -> tuple[list[AdoptedOrder], list[OrderMismatchRow]]:
    """Adopt the broker's view of the account's orders (see the module docstring); returns what
    was adopted and what was left standing (and why, in :func:`left_because`)."""
    adopted: list[AdoptedOrder] = []
    left: list[OrderMismatchRow] = []
    note = f"reconciled by {operator}: {reason}"
    for mismatch in list_order_mismatches(session, account.account_id):
        done = _adopt(session, account, mismatch, note=note, now=now)
        if done is None:
            left.append(mismatch)
            continue
        adopted.append(AdoptedOrder(mismatch.client_order_id, mismatch.kind, done))
        session.delete(mismatch)
    return adopted, left


def left_because(mismatch: OrderMismatchRow) -> str:
    if mismatch.kind == MismatchKind.UNKNOWN:
        return "the broker did not answer: unknown"
    if mismatch.ledger_status is not None:
        return (
            f"the ledger has it {mismatch.ledger_status} and the broker still works it: "
            "cancel it at the broker"
        )
    return "the broker did not say its symbol or side: record it by hand"


def _adopt(
    session: Session, account: AccountRow, mismatch: OrderMismatchRow, *, note: str, now: datetime
) -> str | None:
    kind = mismatch.kind
    if kind == MismatchKind.UNKNOWN_TO_LEDGER:
        if (
            mismatch.ledger_status is not None
            or mismatch.broker_symbol is None
            or mismatch.side is None
            or mismatch.broker_quantity is None
        ):
            return None
        filled = mismatch.broker_filled or Decimal(0)
        session.add(
            OrderRow(
                client_order_id=mismatch.client_order_id,
                signal_id=f"reconcile-order-{mismatch.id}",
                account_id=account.account_id,
                business_sequence=0,
                broker=account.broker,
                broker_symbol=mismatch.broker_symbol,
                side=mismatch.side,
                order_type=mismatch.order_type or "UNKNOWN",
                quantity=filled + mismatch.broker_quantity,
                limit_price=None,
                purpose=OrderPurpose.ADOPTED.value,
                status=(OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.NEW).value,
                filled_quantity=filled,
                broker_order_id=mismatch.broker_order_id,
                reject_text=f"adopted from the broker; {note}",
                created_at=now,
                updated_at=now,
            )
        )
        return f"recorded as working, {plain(mismatch.broker_quantity)} lots left"
    order = session.get(OrderRow, mismatch.client_order_id, with_for_update=True)
    if kind == MismatchKind.MISSING_AT_BROKER and order is not None:
        if OrderStatus(order.status) not in TERMINAL:
            order.status = OrderStatus.CANCELLED.value
            order.reject_text = f"not reported by the broker; ended by {note}"
            order.updated_at = now
        return f"ended in the ledger ({order.status})"
    if kind == MismatchKind.QUANTITY_DIFFERS and order is not None:
        if mismatch.broker_quantity is None:
            return None
        order.quantity = order.filled_quantity + mismatch.broker_quantity
        order.updated_at = now
        left = plain(mismatch.broker_quantity)
        return f"works the broker's {left} lots (quantity {plain(order.quantity)})"
    return None

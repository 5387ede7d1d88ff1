"""Reconciliation in the ledger: the mismatches the account sync stored, as the starter shows
them, and an operator's adoption of the broker's view of positions and orders (``reconcile
--accept``)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.adapters.db.repository.controls import (
    record_operator_action,
    set_reduce_only,
)
from orchestrator.adapters.db.repository.order_reconcile import (
    AdoptedOrder,
    accept_orders,
    left_because,
)
from orchestrator.adapters.db.repository.sync import ALLOW_ENTRIES, RECONCILE_ACCEPT
from orchestrator.adapters.db.schema import (
    AccountRow,
    AccountStateRow,
    MismatchRow,
    OrderMismatchRow,
    PositionFillRow,
    PositionRow,
)
from orchestrator.domain import ids
from orchestrator.domain.positions import CloseCause, PositionStatus
from orchestrator.domain.sync import SYSTEM, MismatchKind, ReduceOnlyCause
from orchestrator.domain.values import Side, plain


def list_mismatches(session: Session, account_id: str | None = None) -> list[MismatchRow]:
    query = select(MismatchRow).order_by(MismatchRow.account_id, MismatchRow.broker_symbol)
    if account_id is not None:
        query = query.where(MismatchRow.account_id == account_id)
    return list(session.scalars(query))


@dataclass(frozen=True)
class AtBroker:
    """A close at the broker of a position whose keeper still runs: told to the keeper, which
    books it (the ledger's row is the keeper's to write)."""

    signal_id: str
    account_id: str
    keeper_workflow_id: str
    execution_id: str
    quantity: Decimal


@dataclass(frozen=True)
class Adopted:
    broker_symbol: str
    kind: str
    broker_quantity: Decimal
    ledger_quantity: Decimal
    opened: str | None
    """The position opened to hold what the ledger lacked (its signal id)."""
    closed: list[str]
    resized: list[str]
    to_keepers: list[AtBroker] = field(default_factory=list)
    """Positions of running keepers the broker no longer holds (or holds less of): their
    keepers book the close (``CLOSED_AT_BROKER``); not written here."""


@dataclass(frozen=True)
class Acceptance:
    adopted: list[Adopted]
    left: list[MismatchRow]
    """Position mismatches that could not be adopted (the broker did not answer: unknown)."""
    adopted_orders: list[AdoptedOrder]
    left_orders: list[OrderMismatchRow]
    """Order mismatches left standing (:func:`left_because` says why)."""
    released: bool


def accept_broker_view(
    session: Session,
    account_id: str,
    *,
    operator: str,
    reason: str,
    now: datetime,
    keepers: Collection[str] = (),
) -> tuple[list[Adopted], list[MismatchRow], bool]:
    """:func:`accept_account`, its positions' part: what was adopted, what was left, and
    whether the reduce-only was lifted."""
    done = accept_account(
        session, account_id, operator=operator, reason=reason, now=now, keepers=keepers
    )
    return done.adopted, done.left, done.released


def accept_account(
    session: Session,
    account_id: str,
    *,
    operator: str,
    reason: str,
    now: datetime,
    keepers: Collection[str] = (),
) -> Acceptance:
    """Adopt the broker's positions, as the stored mismatches show them, into the ledger: the
    account's open positions in each symbol are closed or resized and a position is opened for
    what the ledger lacked, so that its net is the broker's; and the broker's view of its
    working orders (:mod:`.order_reconcile` says what that does per kind). Recorded as an
    operator action; the account's reduce-only is lifted when reconciliation is what held it
    and no difference that acts is left. What the broker no longer holds of a position is a
    close at the broker (``CLOSED_AT_BROKER``): for a position whose keeper runs (its workflow
    id among ``keepers``) it is returned for the keeper to book (``Adopted.to_keepers``), else
    booked here at once. Mismatches whose broker view is unknown (no answer)
    cannot be adopted: returned, left standing. :class:`LookupError` for an account not in
    the book."""
    account = session.get(AccountRow, account_id, with_for_update=True)
    if account is None:
        raise LookupError(account_id)
    state = session.get(AccountStateRow, account_id, with_for_update=True)
    adopted: list[Adopted] = []
    left: list[MismatchRow] = []
    for mismatch in list_mismatches(session, account_id):
        if mismatch.broker_quantity is None:
            left.append(mismatch)
            continue
        result = _adopt(
            session, account, mismatch, operator=operator, reason=reason, now=now, keepers=keepers
        )
        if state is not None and result.opened:
            state.open_positions += 1
        adopted.append(result)
        session.delete(mismatch)
    adopted_orders, left_orders = accept_orders(
        session, account, operator=operator, reason=reason, now=now
    )
    released = False
    if adopted or adopted_orders:
        record_operator_action(
            session,
            action=RECONCILE_ACCEPT,
            target=account_id,
            operator=operator,
            reason=reason,
            reached=[],
            outcome={
                "adopted": [
                    {
                        "symbol": a.broker_symbol,
                        "kind": a.kind,
                        "broker": plain(a.broker_quantity),
                        "ledger": plain(a.ledger_quantity),
                        "opened": a.opened,
                        "closed": a.closed,
                        "resized": a.resized,
                        "to_keepers": [k.signal_id for k in a.to_keepers],
                    }
                    for a in adopted
                ],
                "orders": [
                    {"client_order_id": o.client_order_id, "kind": o.kind, "done": o.done}
                    for o in adopted_orders
                ],
                "orders_left": [
                    {"client_order_id": o.client_order_id, "kind": o.kind, "why": left_because(o)}
                    for o in left_orders
                ],
            },
            now=now,
        )
        still_acting = any(o.kind != MismatchKind.UNKNOWN for o in left_orders)
        if (
            account.reduce_only
            and not still_acting
            and account.reduce_only_by == SYSTEM
            and account.reduce_only_cause == ReduceOnlyCause.RECONCILIATION.value
        ):
            set_reduce_only(
                session, [account_id], reduce_only=False, by=operator, reason=reason, now=now
            )
            record_operator_action(
                session,
                action=ALLOW_ENTRIES,
                target=account_id,
                operator=operator,
                reason=f"reconciled: {reason}",
                reached=[],
                outcome={"released": ReduceOnlyCause.RECONCILIATION.value},
                now=now,
            )
            released = True
    session.flush()
    return Acceptance(adopted, left, adopted_orders, left_orders, released)


def _adopt(
    session: Session,
    account: AccountRow,
    mismatch: MismatchRow,
    *,
    operator: str,
    reason: str,
    now: datetime,
    keepers: Collection[str],
) -> Adopted:
    target = mismatch.broker_quantity or Decimal(0)
    rows = list(
        session.scalars(
            select(PositionRow)
            .where(
                PositionRow.account_id == account.account_id,
                PositionRow.broker_symbol == mismatch.broker_symbol,
                PositionRow.status != PositionStatus.CLOSED.value,
            )
            .order_by(PositionRow.opened_at.desc(), PositionRow.signal_id)
            .with_for_update()
        )
    )
    ours = sum(
        (r.open_quantity if r.side == Side.BUY.value else -r.open_quantity for r in rows),
        Decimal(0),
    )
    note = f"reconciled by {operator}: {reason}"
    closed: list[str] = []
    resized: list[str] = []
    to_keepers: list[AtBroker] = []
    taken: list[tuple[PositionRow, Decimal]] = []
    remaining = target
    if target == 0 or ours == 0 or (target > 0) != (ours > 0):
        taken = [(r, r.open_quantity) for r in rows]
    elif abs(target) < abs(ours):
        excess = abs(ours) - abs(target)
        for r in rows:  # the newest first
            if excess <= 0:
                break
            take = min(excess, r.open_quantity)
            excess -= take
            taken.append((r, take))
        remaining = Decimal(0)
    else:
        remaining = target - ours
    for r, take in taken:
        if take <= 0:
            continue
        execution_id = ids.closed_at_broker_execution_id(r.signal_id, r.account_id, mismatch.id)
        if r.keeper_workflow_id in keepers:
            to_keepers.append(
                AtBroker(r.signal_id, r.account_id, r.keeper_workflow_id, execution_id, take)
            )
            continue
        if close_at_broker(
            session, r, execution_id=execution_id, quantity=take, note=note, now=now
        ):
            closed.append(r.signal_id)
        else:
            resized.append(r.signal_id)
    opened = None
    if remaining != 0:
        opened = f"reconcile-{mismatch.id}"
        session.add(
            PositionRow(
                signal_id=opened,
                account_id=account.account_id,
                # No keeper runs it (none ever will): the id is what its keeper's would be.
                keeper_workflow_id=ids.positions_workflow_id(ids.signal_workflow_id(opened)),
                broker=account.broker,
                broker_symbol=mismatch.broker_symbol,
                side=(Side.BUY if remaining > 0 else Side.SELL).value,
                entry_quantity=abs(remaining),
                average_entry=mismatch.broker_average_price or Decimal(0),
                open_quantity=abs(remaining),
                stop=Decimal(0),
                take_profit=None,
                status=PositionStatus.UNPROTECTED.value,
                realized_pnl=Decimal(0),
                note=f"adopted from the broker; {note}",
                opened_at=now,
                updated_at=now,
            )
        )
    return Adopted(
        broker_symbol=mismatch.broker_symbol,
        kind=mismatch.kind,
        broker_quantity=target,
        ledger_quantity=mismatch.ledger_quantity,
        opened=opened,
        closed=closed,
        resized=resized,
        to_keepers=to_keepers,
    )


def close_at_broker(
    session: Session,
    row: PositionRow,
    *,
    execution_id: str,
    quantity: Decimal,
    note: str,
    now: datetime,
) -> bool:
    """A close at the broker booked in the ledger directly, for a position no keeper runs
    (an adopted one, or one whose keeper has ended): a closing fill of cause
    ``CLOSED_AT_BROKER`` for what the broker no longer holds (once, by its id), at the average
    entry (the price is unknown: P&L 0), and the row reduced, or closed (its slot freed).
    Whether it closed the position."""
    take = min(quantity, row.open_quantity)
    if take <= 0 or session.get(PositionFillRow, execution_id) is not None:
        return row.status == PositionStatus.CLOSED.value
    session.add(
        PositionFillRow(
            execution_id=execution_id,
            signal_id=row.signal_id,
            account_id=row.account_id,
            client_order_id=execution_id,
            quantity=take,
            price=row.average_entry,
            cause=CloseCause.CLOSED_AT_BROKER.value,
            pnl=Decimal(0),
            filled_at=now,
        )
    )
    row.open_quantity -= take
    row.note = f"{note}; {CloseCause.CLOSED_AT_BROKER}, price unknown: booked at the average entry"
    row.updated_at = now
    if row.open_quantity > 0:
        return False
    row.status = PositionStatus.CLOSED.value
    row.closed_at = now
    state = session.get(AccountStateRow, row.account_id, with_for_update=True)
    if state is not None:
        state.open_positions = max(0, state.open_positions - 1)
    return True

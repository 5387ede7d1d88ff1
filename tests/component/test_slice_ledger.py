"""A slice's orders admitted and booked together (:func:`~activities.order_steps.admit_slice`,
:func:`~activities.order_steps.book_slice`) on PostgreSQL: the same results and the same ledger
rows as admitting and booking them one by one, in a number of statements the slice's size does
not change."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from activities.order_slice import OrderSlice
from activities.order_steps import Pace, admit, admit_slice, book, book_slice
from orchestrator.adapters.brokers.base import BrokerOrder, Execution
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import AccountStateRow, FillRow, OrderRow, RiskReservationRow
from orchestrator.domain.contracts.payloads import PlaceOrderRequest, ReserveRiskRequest
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.values import DenialReason, OrderType, Side
from tests.support import account, count_statements, fresh_postgres, load
from tests.support import book as a_book

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def twin(postgres_admin: str) -> Iterator[Database]:
    """A second fresh PostgreSQL database: the per-order path's, beside ``postgres_db``."""
    with fresh_postgres(postgres_admin) as db:
        yield db


def order(
    account_id: str,
    *,
    signal_id: str = "sig-1",
    origin: str | None = None,
    reserves: bool = True,
) -> PlaceOrderRequest:
    cid = f"{signal_id}:{account_id}:1"
    reservation = ReserveRiskRequest(
        signal_id=signal_id,
        account_id=account_id,
        origin_account_id=origin,
        client_order_id=cid,
        quantity=Decimal("1.00"),
        risk_amount=Decimal(300),
        margin=Decimal(1085),
    )
    return PlaceOrderRequest(
        signal_id=signal_id,
        account_id=account_id,
        client_order_id=cid,
        business_sequence=1,
        broker="alpha",
        broker_symbol="EURUSD",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        quantity=Decimal("1.00"),
        limit_price=None,
        reference_price=Decimal("1.08500"),
        reservation=reservation if reserves else None,
    )


def state(
    request: PlaceOrderRequest,
    status: OrderStatus,
    fills: tuple[str, ...] = (),
    reject_text: str | None = None,
) -> BrokerOrder:
    return BrokerOrder(
        client_order_id=request.client_order_id,
        broker_order_id=f"PB-{request.account_id}",
        status=status,
        quantity=request.quantity,
        executions=tuple(
            Execution(f"{request.account_id}-E{i}", Decimal(q), Decimal("1.08500") + i, NOW)
            for i, q in enumerate(fills)
        ),
        reject_text=reject_text,
    )


SPECIAL = ["full", "paused", "missing", "retry", "retry-unwritten", "used", "gate-only"]
"""Every way an order of a slice leaves the batched path, or is decided without a write."""


def the_slice(admitted: int) -> list[PlaceOrderRequest]:
    """``admitted`` fresh legs (the last of another signal) and one order of each special case,
    in the order the legs came due (not the accounts')."""
    fresh = [order(f"admit-{i:02}") for i in range(admitted - 1)]
    fresh.append(order(f"admit-{admitted - 1:02}", signal_id="sig-2"))
    special = [order(a, reserves=a != "gate-only") for a in SPECIAL]
    return list(reversed(fresh)) + special


def prepare(db: Database, orders: list[PlaceOrderRequest], *, halted: bool = False) -> None:
    """The book of ``orders``' accounts (but ``missing``), and what the earlier attempt or
    another origin left: ``retry`` reserved with its order written, ``retry-unwritten``
    reserved without, ``used`` reserved on behalf of another account."""
    accounts = sorted({o.account_id for o in orders if o.account_id != "missing"})
    load(
        db,
        a_book(
            *(
                account(
                    a,
                    open_positions=10 if a == "full" else 0,
                    status="PAUSED" if a == "paused" else "ACTIVE",
                )
                for a in accounts
            )
        ),
    )
    by_account = {o.account_id: o for o in orders}
    with db.transaction() as session:
        for account_id, written, origin in (
            ("retry", True, None),
            ("retry-unwritten", False, None),
            ("used", False, "elsewhere"),
        ):
            request = by_account[account_id]
            assert request.reservation is not None
            reservation = request.reservation.model_copy(update={"origin_account_id": origin})
            written_order = request if written else None
            assert repository.reserve_risk(session, reservation, NOW, order=written_order).reserved
        if halted:
            repository.set_halt(session, halted=True, operator="ops", reason="drill", now=NOW)


def reports(
    orders: list[PlaceOrderRequest], admitted: set[str], *, working: bool = True
) -> dict[str, BrokerOrder]:
    """The broker's answers to the admitted orders: fills of one and two executions, a
    rejection, a partial fill cancelled, a partial fill still working (unless not
    ``working``), an expiry."""
    kinds: list[Callable[[PlaceOrderRequest], BrokerOrder]] = [
        lambda o: state(o, OrderStatus.FILLED, ("1.00",)),
        lambda o: state(o, OrderStatus.FILLED, ("0.30", "0.70")),
        lambda o: state(o, OrderStatus.REJECTED, reject_text="No money [10019]"),
        lambda o: state(o, OrderStatus.CANCELLED, ("0.40",)),
        lambda o: state(o, OrderStatus.PARTIALLY_FILLED, ("0.25",)),
        lambda o: state(o, OrderStatus.EXPIRED),
    ]
    if not working:  # a still-working order's report is booked on its own
        del kinds[4]
    sent = [o for o in orders if o.client_order_id in admitted]
    return {o.client_order_id: kinds[i % len(kinds)](o) for i, o in enumerate(sent)}


def ledger(db: Database) -> dict[str, Any]:
    """Every row the slice can write: account states, reservations, orders, fills."""

    def rows(model: Any, key: Any, skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        return [
            {c: getattr(r, c) for c in model.__table__.columns.keys() if c not in skip}  # noqa: SIM118
            for r in session.scalars(select(model).order_by(*key))
        ]

    with db.transaction() as session:
        return {
            "states": rows(AccountStateRow, [AccountStateRow.account_id], ("as_of",)),
            "reservations": rows(
                RiskReservationRow,
                [RiskReservationRow.signal_id, RiskReservationRow.account_id],
                ("id",),
            ),
            "orders": rows(OrderRow, [OrderRow.client_order_id]),
            "fills": rows(FillRow, [FillRow.execution_id]),
        }


def per_order(db: Database, orders: list[PlaceOrderRequest]) -> dict[str, Any]:
    """Admission and booking as before slices were batched: order by order."""
    with db.transaction() as session:
        admitted = {
            o.client_order_id: admit(session, o, NOW)
            for o in sorted(orders, key=lambda o: (o.account_id, o.client_order_id))
        }
    sent = reports(orders, {cid for cid, barred in admitted.items() if barred is None})
    requests = {o.client_order_id: o for o in orders}
    booked = []
    for _ in range(2):  # the reports, then the same reports again (a retried attempt)
        with db.transaction() as session:
            booked.append({cid: book(session, requests[cid], s, NOW) for cid, s in sent.items()})
    return {"admitted": admitted, "booked": booked}


def batched(db: Database, orders: list[PlaceOrderRequest]) -> dict[str, Any]:
    with db.transaction() as session:
        admitted = admit_slice(session, orders, NOW)
    sent = reports(orders, {cid for cid, barred in admitted.items() if barred is None})
    requests = {o.client_order_id: o for o in orders}
    booked = []
    for _ in range(2):
        with db.transaction() as session:
            booked.append(book_slice(session, requests, sent, NOW))
    return {"admitted": admitted, "booked": booked}


@pytest.mark.parametrize("halted", [False, True], ids=["running", "halted"])
def test_a_slice_admitted_and_booked_together_writes_what_one_by_one_writes(
    postgres_db: Database, twin: Database, halted: bool
) -> None:
    orders = the_slice(admitted=7)
    for db in (postgres_db, twin):
        prepare(db, orders, halted=halted)

    together = batched(postgres_db, orders)
    alone = per_order(twin, orders)

    assert together == alone
    assert ledger(postgres_db) == ledger(twin)
    barred = {cid.split(":")[1]: b for cid, b in together["admitted"].items()}
    if halted:
        assert all(b is not None for b in barred.values())
        halted_or_before = ("missing", "used", "gate-only")  # decided before the halt
        reasons = {b.reason for a, b in barred.items() if b and a not in halted_or_before}
        assert reasons == {DenialReason.HALTED}
        return
    expected = {
        "full": (DenialReason.MAX_POSITIONS, True),
        "paused": (DenialReason.PAUSED, True),
        "missing": (DenialReason.ACCOUNT_DISABLED, True),
        "used": (DenialReason.ACCOUNT_ALREADY_USED, True),
        "gate-only": (DenialReason.LEG_CLOSED, False),
    }
    assert {a: (b.reason, b.denied) for a, b in barred.items() if b is not None} == expected
    assert len(together["booked"][0]) == 7 + 2  # the fresh legs and the two retries
    statuses = {o["status"] for o in ledger(postgres_db)["orders"]}
    assert {"FILLED", "REJECTED", "CANCELLED", "PARTIALLY_FILLED", "EXPIRED"} <= statuses


def test_a_slice_holding_an_account_twice_writes_what_one_by_one_writes(
    postgres_db: Database, twin: Database
) -> None:
    """Two signals' legs of one account in the same slice: admitted and booked order by order
    (each state row written once per read), with the same results and rows."""
    orders = the_slice(admitted=3)
    orders.append(order("admit-00", signal_id="sig-3"))
    for db in (postgres_db, twin):
        prepare(db, orders)

    together = batched(postgres_db, orders)

    assert together == per_order(twin, orders)
    assert ledger(postgres_db) == ledger(twin)
    assert together["admitted"]["sig-3:admit-00:1"] is None


def statements_of_a_slice(db: Database, admitted: int) -> tuple[int, int]:
    orders = the_slice(admitted)
    prepare(db, orders)
    requests = {o.client_order_id: o for o in orders}
    decided: dict[str, Any] = {}

    def admit_all() -> None:
        with db.transaction() as session:
            decided.update(admit_slice(session, orders, NOW))

    admitting = count_statements(db, admit_all)
    sent = reports(
        orders, {cid for cid, barred in decided.items() if barred is None}, working=False
    )

    def book_all() -> None:
        with db.transaction() as session:
            book_slice(session, requests, sent, NOW)

    return admitting, count_statements(db, book_all)


def test_a_slice_takes_as_many_statements_whatever_its_size(
    postgres_db: Database, twin: Database
) -> None:
    """Admitting and booking 6 or 60 fresh legs (beside the same special cases) sends the same
    number of statements: the slice's accounts and orders are read together and written by
    one ``executemany`` per kind of write."""
    small = statements_of_a_slice(postgres_db, admitted=6)
    large = statements_of_a_slice(twin, admitted=60)

    assert large == small


class _NoBroker:
    """``OrderSlice._book`` asks no broker."""


def test_a_report_that_does_not_fit_fails_only_its_own_order(postgres_db: Database) -> None:
    """One report of the slice with fills beyond its order: the slice's booking falls back to
    booking each order on its own, and only that one fails."""
    orders = [order(f"admit-{i}") for i in range(4)]
    load(postgres_db, a_book(*(account(o.account_id) for o in orders)))
    with postgres_db.transaction() as session:
        assert all(b is None for b in admit_slice(session, orders, NOW).values())
    sent = {o.client_order_id: state(o, OrderStatus.FILLED, ("1.00",)) for o in orders}
    bad = orders[2].client_order_id
    sent[bad] = state(orders[2], OrderStatus.FILLED, ("1.00", "0.50"))
    placing = OrderSlice(postgres_db, _NoBroker(), Pace(0), lambda: NOW, 0.1)  # type: ignore[arg-type]

    placing._book({o.client_order_id: o for o in orders}, sent)

    assert set(placing._results) == {bad}
    assert placing._results[bad].failure
    assert set(placing._outcomes) == {o.client_order_id for o in orders} - {bad}
    settled = {r["account_id"]: r["status"] for r in ledger(postgres_db)["reservations"]}
    assert settled == {
        o.account_id: repository.SETTLED if o.client_order_id != bad else repository.RESERVED
        for o in orders
    }

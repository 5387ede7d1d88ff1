"""The repository on both databases: risk reservation, settlement, the order ledger, money."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import StatementError

from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import (
    AccountStateRow,
    DailyReturnRow,
    FillRow,
    OperatorActionRow,
    OrderRow,
    RiskReservationRow,
    SignalRow,
    SystemControlRow,
)
from orchestrator.domain.contracts.operators import ActionReceipt, ActionVia
from orchestrator.domain.contracts.payloads import (
    PlaceOrderRequest,
    ReserveRiskRequest,
    ReserveRiskResult,
)
from orchestrator.domain.errors import DuplicateSignal, InvalidOrderTransition
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.values import DenialReason, OrderType, Side
from tests.support import account, book, load, signal

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# Helpers


def reserve_request(
    signal_id: str = "sig-1",
    account_id: str = "acct",
    *,
    quantity: str = "1.00",
    risk: str = "300",
    margin: str = "1085",
) -> ReserveRiskRequest:
    return ReserveRiskRequest(
        signal_id=signal_id,
        account_id=account_id,
        client_order_id=f"{signal_id}.{account_id}.1",
        quantity=Decimal(quantity),
        risk_amount=Decimal(risk),
        margin=Decimal(margin),
    )


def reserve(db: Database, request: ReserveRiskRequest) -> ReserveRiskResult:
    with db.transaction() as session:
        return repository.reserve_risk(session, request, NOW)


def settle(db: Database, signal_id: str = "sig-1", account_id: str = "acct") -> None:
    with db.transaction() as session:
        repository.settle_reservation(session, signal_id, account_id, NOW)


def state_of(db: Database, account_id: str = "acct") -> dict[str, Any]:
    with db.transaction() as session:
        row = session.get(AccountStateRow, account_id)
        assert row is not None
        return {
            "open_positions": row.open_positions,
            "risk_committed_today": row.risk_committed_today,
            "free_margin": row.free_margin,
            "realized_loss_today": row.realized_loss_today,
            "equity": row.equity,
        }


def reservation_rows(db: Database) -> list[RiskReservationRow]:
    with db.transaction() as session:
        return list(session.scalars(select(RiskReservationRow)))


def place_request(
    client_order_id: str = "sig-1.acct.1", quantity: str = "1.00"
) -> PlaceOrderRequest:
    return PlaceOrderRequest(
        signal_id="sig-1",
        account_id="acct",
        client_order_id=client_order_id,
        business_sequence=1,
        broker="alpha",
        broker_symbol="EURUSD",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        quantity=Decimal(quantity),
        limit_price=None,
        reference_price=Decimal("1.08500"),
    )


def report(
    db: Database,
    status: OrderStatus,
    executions: list[tuple[str, str, str]],
    *,
    client_order_id: str = "sig-1.acct.1",
    reject_text: str | None = None,
) -> Any:
    with db.transaction() as session:
        return repository.apply_broker_report(
            session,
            client_order_id,
            status=status,
            broker_order_id="PB-1",
            executions=[
                (execution_id, Decimal(quantity), Decimal(price), NOW)
                for execution_id, quantity, price in executions
            ],
            reject_text=reject_text,
            now=NOW,
        )


def ledger_row(db: Database, client_order_id: str = "sig-1.acct.1") -> OrderRow:
    with db.transaction() as session:
        row = session.get(OrderRow, client_order_id)
        assert row is not None
        return row


def fill_count(db: Database) -> int:
    with db.transaction() as session:
        return session.scalar(select(func.count()).select_from(FillRow)) or 0


@pytest.fixture
def booked(db: Database) -> Database:
    """``db`` holding account ``acct``: equity 50000, budget 5000, 10 position slots."""
    load(db, book(account("acct")))
    return db


# --------------------------------------------------------------------------------------------
# reserve_risk


def test_reserve_risk_reserves_once_and_updates_the_account_state(booked: Database) -> None:
    before = state_of(booked)

    result = reserve(booked, reserve_request(risk="300", margin="1085"))

    assert result == ReserveRiskResult(reserved=True)
    after = state_of(booked)
    assert after["open_positions"] == before["open_positions"] + 1
    assert after["risk_committed_today"] == Decimal(300)
    assert after["free_margin"] == before["free_margin"] - Decimal(1085)
    [row] = reservation_rows(booked)
    assert (row.signal_id, row.account_id, row.status) == ("sig-1", "acct", repository.RESERVED)
    assert row.client_order_id == "sig-1.acct.1"


def test_reserve_risk_again_for_the_same_signal_and_account_changes_nothing(
    booked: Database,
) -> None:
    reserve(booked, reserve_request())
    after_first = state_of(booked)

    again = reserve(booked, reserve_request())

    assert again.reserved is True
    assert again.denial is None
    assert state_of(booked) == after_first
    assert len(reservation_rows(booked)) == 1


def state_version(db: Database) -> int:
    with db.transaction() as session:
        row = session.get(AccountStateRow, "acct")
        assert row is not None
        return row.version


def test_reserve_risk_with_its_order_writes_both_once(booked: Database) -> None:
    """The order activity's path: reservation, state and the order's ledger row in one step
    (one statement on PostgreSQL); a retry finds the reservation and writes nothing."""
    before, version = state_of(booked), state_version(booked)
    with booked.transaction() as session:
        first = repository.reserve_risk(session, reserve_request(), NOW, order=place_request())
    with booked.transaction() as session:
        again = repository.reserve_risk(
            session, reserve_request(), NOW, order=place_request(quantity="9.00")
        )

    assert first == ReserveRiskResult(reserved=True)
    assert again == ReserveRiskResult(reserved=True, detail=repository.ALREADY_RESERVED)
    assert state_of(booked)["open_positions"] == before["open_positions"] + 1
    assert state_version(booked) == version + 1
    assert len(reservation_rows(booked)) == 1
    row = ledger_row(booked)
    assert (row.status, row.quantity) == (OrderStatus.PENDING_SUBMIT.value, Decimal("1.00"))


def test_a_denied_reservation_writes_no_order(booked: Database) -> None:
    with booked.transaction() as session:
        repository.set_halt(session, halted=True, operator="risk", reason="outage", now=NOW)
        denied = repository.reserve_risk(session, reserve_request(), NOW, order=place_request())

    assert denied.denial is DenialReason.HALTED
    assert reservation_rows(booked) == []
    assert fill_count(booked) == 0
    with booked.transaction() as session:
        assert session.get(OrderRow, "sig-1.acct.1") is None


def test_reserve_risk_retry_succeeds_even_once_the_account_is_full(db: Database) -> None:
    """A retry finds its own reservation before re-checking limits its first call consumed."""
    load(db, book(account("acct", open_positions=9)))
    assert reserve(db, reserve_request()).reserved
    assert state_of(db)["open_positions"] == 10

    assert reserve(db, reserve_request()).reserved
    assert state_of(db)["open_positions"] == 10


def test_reserve_risk_for_another_signal_reserves_again(booked: Database) -> None:
    reserve(booked, reserve_request("sig-1", risk="300"))
    reserve(booked, reserve_request("sig-2", risk="200"))

    state = state_of(booked)
    assert state["open_positions"] == 2
    assert state["risk_committed_today"] == Decimal(500)
    assert len(reservation_rows(booked)) == 2


def test_reserve_risk_for_the_same_account_on_behalf_of_another_origin_is_denied(
    booked: Database,
) -> None:
    assert reserve(booked, reserve_request()).reserved
    after_first = state_of(booked)

    reroute = reserve_request().model_copy(update={"origin_account_id": "acct-failed"})
    result = reserve(booked, reroute)

    assert result.reserved is False
    assert result.denial is DenialReason.ACCOUNT_ALREADY_USED
    assert state_of(booked) == after_first


@pytest.mark.parametrize(
    ("account_kwargs", "request_kwargs", "reason"),
    [
        ({"status": "PAUSED"}, {}, DenialReason.PAUSED),
        ({"status": "DISABLED"}, {}, DenialReason.ACCOUNT_DISABLED),
        ({"open_positions": 10}, {}, DenialReason.MAX_POSITIONS),
        (
            {"realized_loss_today": Decimal(4800)},
            {"risk": "200.01"},
            DenialReason.RISK_BUDGET_EXHAUSTED,
        ),
        ({"free_margin": "1084.99"}, {"margin": "1085"}, DenialReason.INSUFFICIENT_MARGIN),
    ],
    ids=["paused", "disabled", "max-positions", "risk-budget", "margin"],
)
def test_reserve_risk_denies_and_writes_nothing(
    db: Database,
    account_kwargs: dict[str, Any],
    request_kwargs: dict[str, str],
    reason: DenialReason,
) -> None:
    load(db, book(account("acct", **account_kwargs)))
    before = state_of(db)

    result = reserve(db, reserve_request(**request_kwargs))

    assert result.reserved is False
    assert result.denial is reason
    assert result.detail
    assert state_of(db) == before
    assert reservation_rows(db) == []


def test_reserve_risk_allows_exactly_the_remaining_budget_and_margin(db: Database) -> None:
    load(db, book(account("acct", realized_loss_today=Decimal(4800), free_margin="1085")))

    result = reserve(db, reserve_request(risk="200", margin="1085"))

    assert result.reserved is True
    assert state_of(db)["free_margin"] == Decimal(0)


def test_reserve_risk_counts_risk_already_committed_today(booked: Database) -> None:
    assert reserve(booked, reserve_request("sig-1", risk="4000")).reserved

    result = reserve(booked, reserve_request("sig-2", risk="1000.01"))

    assert result.denial is DenialReason.RISK_BUDGET_EXHAUSTED


def test_reserve_risk_denies_at_the_drawdown_limit(db: Database) -> None:
    load(db, book(account("acct", equity="45000")))
    with db.transaction() as session:
        state = session.get(AccountStateRow, "acct")
        assert state is not None
        state.peak_equity = Decimal(50000)  # 10 % below the peak: the limit

    result = reserve(db, reserve_request())

    assert result.denial is DenialReason.DRAWDOWN_LIMIT


def test_reserve_risk_denies_while_halted(booked: Database) -> None:
    with booked.transaction() as session:
        session.add(
            SystemControlRow(id=1, halted=True, reason="fat finger on desk 3", updated_at=NOW)
        )
    before = state_of(booked)

    result = reserve(booked, reserve_request())

    assert result.denial is DenialReason.HALTED
    assert "fat finger on desk 3" in result.detail
    assert state_of(booked) == before
    assert reservation_rows(booked) == []


def test_reserve_risk_for_an_account_not_in_the_book_is_denied(booked: Database) -> None:
    result = reserve(booked, reserve_request(account_id="ghost"))

    assert result.denial is DenialReason.ACCOUNT_DISABLED


# --------------------------------------------------------------------------------------------
# settle_reservation: the filled share comes from the leg's fills in the ledger


def fill_leg(
    db: Database,
    quantity: str,
    *,
    sequence: int = 1,
    signal_id: str = "sig-1",
    account_id: str = "acct",
    ordered: str = "1.00",
) -> None:
    """Record an order of the leg and a broker report filling ``quantity`` of it."""
    client_order_id = f"{signal_id}.{account_id}.{sequence}"
    request = place_request(client_order_id, quantity=ordered).model_copy(
        update={"signal_id": signal_id, "account_id": account_id, "business_sequence": sequence}
    )
    with db.transaction() as session:
        repository.record_order_intent(session, request, NOW)
    filled_all = Decimal(quantity) == Decimal(ordered)
    report(
        db,
        OrderStatus.FILLED if filled_all else OrderStatus.EXPIRED,
        [(f"{client_order_id}-E1", quantity, "1.08500")] if Decimal(quantity) > 0 else [],
        client_order_id=client_order_id,
    )


def test_settle_gives_back_the_unfilled_share_of_risk_and_margin(booked: Database) -> None:
    before = state_of(booked)
    reserve(booked, reserve_request(quantity="1.00", risk="300", margin="1085"))
    fill_leg(booked, "0.40")

    settle(booked)

    after = state_of(booked)
    assert after["risk_committed_today"] == Decimal("120")  # 300 × 0.40
    assert after["free_margin"] == before["free_margin"] - Decimal("434")  # 1085 × 0.40
    assert after["open_positions"] == before["open_positions"] + 1
    [row] = reservation_rows(booked)
    assert row.status == repository.SETTLED
    assert row.settled_at == NOW


def test_settle_twice_changes_nothing_the_second_time(booked: Database) -> None:
    reserve(booked, reserve_request(quantity="1.00", risk="300", margin="1085"))
    fill_leg(booked, "0.40")
    settle(booked)
    after_first = state_of(booked)

    settle(booked)
    fill_leg(booked, "0.60", sequence=2, ordered="0.60")  # a late completion
    settle(booked)

    assert state_of(booked) == after_first


def test_settle_with_nothing_filled_gives_everything_back(booked: Database) -> None:
    before = state_of(booked)
    reserve(booked, reserve_request(risk="300", margin="1085"))
    fill_leg(booked, "0")

    settle(booked)

    after = state_of(booked)
    assert after["risk_committed_today"] == Decimal(0)
    assert after["free_margin"] == before["free_margin"]
    assert after["open_positions"] == before["open_positions"]


def test_settle_with_no_order_at_all_gives_everything_back(booked: Database) -> None:
    before = state_of(booked)
    reserve(booked, reserve_request(risk="300", margin="1085"))

    settle(booked)

    assert state_of(booked) == before


def test_settle_fully_filled_keeps_everything(booked: Database) -> None:
    reserve(booked, reserve_request(risk="300", margin="1085"))
    reserved = state_of(booked)
    fill_leg(booked, "1.00")

    settle(booked)

    assert state_of(booked) == reserved


def test_settle_counts_every_order_of_the_leg_and_only_that_leg(booked: Database) -> None:
    load(booked, book(account("acct"), account("acct-b")))
    before = state_of(booked)
    reserve(booked, reserve_request(quantity="1.00", risk="300", margin="1000"))
    fill_leg(booked, "0.50")
    fill_leg(booked, "0.20", sequence=2, ordered="0.50")  # completion order of the same leg
    fill_leg(booked, "1.00", signal_id="sig-other")  # another signal, same account
    fill_leg(booked, "1.00", account_id="acct-b")  # same signal, another account

    settle(booked)

    after = state_of(booked)
    assert after["risk_committed_today"] == Decimal("210")  # 300 × 0.70
    assert after["free_margin"] == before["free_margin"] - Decimal("700")


def test_settle_keeps_exact_decimals_for_awkward_shares(booked: Database) -> None:
    before = state_of(booked)
    reserve(booked, reserve_request(quantity="0.07", risk="100", margin="75.95"))
    fill_leg(booked, "0.03", ordered="0.07")  # 4/7 unfilled

    settle(booked)

    after = state_of(booked)
    risk_left = Decimal(100) - Decimal(100) * (Decimal("0.04") / Decimal("0.07"))
    assert abs(after["risk_committed_today"] - risk_left) < Decimal("1e-9")
    margin_kept = Decimal("75.95") - Decimal("75.95") * (Decimal("0.04") / Decimal("0.07"))
    assert abs((before["free_margin"] - after["free_margin"]) - margin_kept) < Decimal("1e-9")


def test_settle_without_a_reservation_does_nothing(booked: Database) -> None:
    before = state_of(booked)
    fill_leg(booked, "1.00", signal_id="never-reserved")

    settle(booked, signal_id="never-reserved")

    assert state_of(booked) == before


# --------------------------------------------------------------------------------------------
# book_and_settle: the last report of a leg's order and its settlement, in one step

BOOK_CASES = {
    "filled in one execution": (OrderStatus.FILLED, [("E1", "1.00", "1.08500")], None),
    "filled in two at once": (
        OrderStatus.FILLED,
        [("E1", "0.30", "1.08500"), ("E2", "0.70", "1.08530")],
        None,
    ),
    "partly filled, then cancelled": (OrderStatus.CANCELLED, [("E1", "0.40", "1.08500")], None),
    "rejected": (OrderStatus.REJECTED, [], "No money [10019]"),
    "expired unfilled": (OrderStatus.EXPIRED, [], None),
}


def leg_ledger(db: Database, account_id: str) -> dict[str, Any]:
    """What the ledger holds for one leg: its account state, reservation, orders and fills."""
    state = state_of(db, account_id)
    with db.transaction() as session:
        reservation = session.scalars(
            select(RiskReservationRow).where(RiskReservationRow.account_id == account_id)
        ).one()
        orders = session.scalars(
            select(OrderRow).where(OrderRow.account_id == account_id).order_by(OrderRow.created_at)
        ).all()
        fills = session.scalars(
            select(FillRow)
            .join(OrderRow, OrderRow.client_order_id == FillRow.client_order_id)
            .where(OrderRow.account_id == account_id)
            .order_by(FillRow.execution_id)
        ).all()
        return {
            "state": state,
            "reservation": (reservation.status, reservation.settled_at),
            "orders": [
                (o.business_sequence, o.status, o.filled_quantity, o.average_price, o.reject_text)
                for o in orders
            ],
            "fills": [(f.execution_id, f.quantity, f.price) for f in fills],
        }


@pytest.mark.parametrize("case", list(BOOK_CASES))
@pytest.mark.parametrize("earlier_fill", [False, True], ids=["first order", "after a fill"])
def test_book_and_settle_writes_what_booking_then_settling_writes(
    db: Database, case: str, earlier_fill: bool
) -> None:
    """Two identical legs: one booked and settled in one step, the other by the two functions
    it stands for (settled unless partly filled). The same outcome and the same ledger, also
    for a retry of the same report; with an earlier order of the leg filled, its fills count."""
    status, executions, reject_text = BOOK_CASES[case]
    load(db, book(account("one-step"), account("two-steps")))
    outcomes = {}
    for account_id in ("one-step", "two-steps"):
        client_order_id = f"sig-1.{account_id}.2"
        request = reserve_request(account_id=account_id)
        order = place_request(client_order_id).model_copy(
            update={"account_id": account_id, "business_sequence": 2}
        )
        with db.transaction() as session:
            assert repository.reserve_risk(session, request, NOW, order=order).reserved
        if earlier_fill:
            fill_leg(db, "0.25", sequence=1, account_id=account_id, ordered="0.25")
        values: dict[str, Any] = {
            "status": status,
            "broker_order_id": "PB-9",
            "executions": [
                (f"{account_id}-{e}", Decimal(q), Decimal(p), NOW) for e, q, p in executions
            ],
            "reject_text": reject_text,
            "now": NOW,
        }
        for _ in range(2):  # the report, then the same report again (a retried activity)
            with db.transaction() as session:
                if account_id == "one-step":
                    outcome = repository.book_and_settle(
                        session,
                        client_order_id,
                        signal_id="sig-1",
                        account_id=account_id,
                        **values,
                    )
                else:
                    outcome = repository.apply_broker_report(session, client_order_id, **values)
                    if not 0 < outcome.filled_quantity < outcome.quantity:
                        repository.settle_reservation(session, "sig-1", account_id, NOW)
            outcomes[account_id] = outcome.model_copy(update={"client_order_id": "-"})

    assert outcomes["one-step"] == outcomes["two-steps"]
    one, two = leg_ledger(db, "one-step"), leg_ledger(db, "two-steps")
    for account_id, ledger in (("one-step", one), ("two-steps", two)):
        ledger["fills"] = sorted((e.replace(account_id, "*"), q, p) for e, q, p in ledger["fills"])
    assert one == two
    partly = 0 < outcomes["one-step"].filled_quantity < outcomes["one-step"].quantity
    assert one["reservation"][0] == (repository.RESERVED if partly else repository.SETTLED)


def test_book_and_settle_raises_on_fills_beyond_the_order_and_writes_nothing(
    booked: Database,
) -> None:
    request = reserve_request()
    with booked.transaction() as session:
        assert repository.reserve_risk(session, request, NOW, order=place_request()).reserved
    before = leg_ledger(booked, "acct")

    with pytest.raises(InvalidOrderTransition), booked.transaction() as session:
        repository.book_and_settle(
            session,
            "sig-1.acct.1",
            signal_id="sig-1",
            account_id="acct",
            status=OrderStatus.FILLED,
            broker_order_id="PB-1",
            executions=[("E1", Decimal("1.50"), Decimal("1.085"), NOW)],
            reject_text=None,
            now=NOW,
        )

    assert leg_ledger(booked, "acct") == before


# --------------------------------------------------------------------------------------------
# The order ledger


def test_record_order_intent_is_idempotent(booked: Database) -> None:
    with booked.transaction() as session:
        repository.record_order_intent(session, place_request(), NOW)
    with booked.transaction() as session:
        repository.record_order_intent(session, place_request(quantity="9.00"), NOW)

    row = ledger_row(booked)
    assert row.status == OrderStatus.PENDING_SUBMIT.value
    assert row.quantity == Decimal("1.00")
    assert row.filled_quantity == Decimal(0)


def test_apply_broker_report_dedupes_executions_and_computes_the_vwap(booked: Database) -> None:
    with booked.transaction() as session:
        repository.record_order_intent(session, place_request(), NOW)

    first = report(
        booked,
        OrderStatus.PARTIALLY_FILLED,
        [("E1", "0.30", "1.08500"), ("E2", "0.20", "1.08510"), ("E1", "0.30", "1.08500")],
    )
    assert first.status == OrderStatus.PARTIALLY_FILLED.value
    assert first.filled_quantity == Decimal("0.50")
    assert first.average_price == Decimal("1.08504")  # (0.3·1.085 + 0.2·1.0851) / 0.5

    final = report(
        booked,
        OrderStatus.FILLED,
        [("E1", "0.30", "1.08500"), ("E2", "0.20", "1.08510"), ("E3", "0.50", "1.08520")],
    )
    repeated = report(
        booked,
        OrderStatus.FILLED,
        [("E1", "0.30", "1.08500"), ("E2", "0.20", "1.08510"), ("E3", "0.50", "1.08520")],
    )

    assert final.status == OrderStatus.FILLED.value
    assert final.filled_quantity == Decimal("1.00")
    assert final.average_price == Decimal("1.08512")
    assert final.broker_order_id == "PB-1"
    assert repeated == final
    assert fill_count(booked) == 3
    row = ledger_row(booked)
    assert (row.filled_quantity, row.average_price) == (Decimal("1.00"), Decimal("1.08512"))


def test_apply_broker_report_keeps_the_reject_text_verbatim(booked: Database) -> None:
    with booked.transaction() as session:
        repository.record_order_intent(session, place_request(), NOW)
    text = "Not enough money [10019] — «marge»\n"

    outcome = report(booked, OrderStatus.REJECTED, [], reject_text=text)

    assert outcome.status == OrderStatus.REJECTED.value
    assert outcome.reject_text == text
    assert outcome.average_price is None
    assert ledger_row(booked).reject_text == text


def test_a_late_report_of_a_state_the_order_left_keeps_the_status_and_books_its_fills(
    booked: Database,
) -> None:
    """Out of order: the broker's FILLED overtook its PARTIALLY_FILLED report."""
    with booked.transaction() as session:
        repository.record_order_intent(session, place_request(), NOW)
    report(booked, OrderStatus.FILLED, [("E2", "0.40", "1.08600")])

    late = report(booked, OrderStatus.PARTIALLY_FILLED, [("E1", "0.60", "1.08500")])
    stale_new = report(booked, OrderStatus.NEW, [])

    assert late.status == stale_new.status == OrderStatus.FILLED.value
    row = ledger_row(booked)
    assert (row.status, row.filled_quantity) == (OrderStatus.FILLED.value, Decimal("1.00"))
    assert fill_count(booked) == 2


def test_a_report_no_lateness_explains_raises_and_changes_nothing(booked: Database) -> None:
    with booked.transaction() as session:
        repository.record_order_intent(session, place_request(), NOW)
    report(booked, OrderStatus.FILLED, [("E1", "1.00", "1.08500")])

    with pytest.raises(InvalidOrderTransition) as caught:
        report(booked, OrderStatus.REJECTED, [])
    assert (caught.value.current, caught.value.target) == ("FILLED", "REJECTED")
    with pytest.raises(InvalidOrderTransition, match="over the order's"):
        report(booked, OrderStatus.NEW, [("E2", "1.00", "1.09000")])  # an over-fill

    row = ledger_row(booked)
    assert row.status == OrderStatus.FILLED.value
    assert row.average_price == Decimal("1.08500")
    assert fill_count(booked) == 1


def test_report_for_an_order_not_in_the_ledger_raises(booked: Database) -> None:
    with pytest.raises(LookupError):
        report(booked, OrderStatus.NEW, [], client_order_id="never-recorded")


# --------------------------------------------------------------------------------------------
# Signals


def test_record_signal_twice_raises_duplicate_signal(booked: Database) -> None:
    with booked.transaction() as session:
        repository.record_signal(session, signal("sig-dup"), "signal-sig-dup", NOW)

    with pytest.raises(DuplicateSignal) as caught, booked.transaction() as session:
        repository.record_signal(session, signal("sig-dup"), "signal-sig-dup", NOW)

    assert caught.value.signal_id == "sig-dup"
    with booked.transaction() as session:
        assert session.scalar(select(func.count()).select_from(SignalRow)) == 1
        stored = session.get(SignalRow, "sig-dup")
        assert stored is not None
        assert stored.payload["entry"] == "1.08500"


# --------------------------------------------------------------------------------------------
# Money and time columns


@pytest.mark.parametrize(
    "value",
    [
        Decimal("1.08501"),
        Decimal("0.0000000001"),
        Decimal("-0.0000000001"),
        Decimal("123456789012345678.0123456789"),
        Decimal("100"),
        Decimal("0"),
    ],
)
def test_money_columns_round_trip_exact_decimals(booked: Database, value: Decimal) -> None:
    with booked.transaction() as session:
        session.add(DailyReturnRow(account_id="acct", day=date(2026, 1, 5), ret=value))
        state = session.get(AccountStateRow, "acct")
        assert state is not None
        state.equity = abs(value)

    with booked.transaction() as session:
        ret = session.get(DailyReturnRow, ("acct", date(2026, 1, 5)))
        state = session.get(AccountStateRow, "acct")
        assert ret is not None
        assert state is not None
        assert isinstance(ret.ret, Decimal)
        assert ret.ret == value
        assert state.equity == abs(value)


def test_money_columns_refuse_floats_and_nothing_is_written(booked: Database) -> None:
    with pytest.raises(StatementError) as caught, booked.transaction() as session:
        session.add(
            DailyReturnRow(
                account_id="acct",
                day=date(2026, 1, 5),
                ret=0.1,
            )
        )

    assert isinstance(caught.value.orig, TypeError)
    assert "Money columns take Decimal" in str(caught.value.orig)
    with booked.transaction() as session:
        assert session.scalar(select(func.count()).select_from(DailyReturnRow)) == 0


def test_account_as_of_with_a_utc_offset_keeps_its_instant(db: Database) -> None:
    """BUG on SQLite: ``UtcDateTime`` stores an aware timestamp's wall-clock time without
    converting it to UTC, then reads it back as UTC. ``11:00+02:00`` (09:00 UTC) comes back as
    ``11:00 UTC``: account data looks two hours fresher than it is. PostgreSQL is right."""
    as_of = datetime(2026, 1, 5, 11, 0, tzinfo=timezone(timedelta(hours=2)))
    load(db, book(account("acct", as_of=as_of)))

    with db.transaction() as session:
        state = session.get(AccountStateRow, "acct")
        assert state is not None
        stored = state.as_of

    assert stored == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# Two real concurrent writers (PostgreSQL)


def test_two_concurrent_reservations_for_the_last_position_slot_only_one_wins(
    postgres_db: Database,
) -> None:
    load(postgres_db, book(account("acct", open_positions=9)))  # limit 10: one slot left
    barrier = threading.Barrier(2, timeout=30)

    def reserve_after_barrier(signal_id: str) -> ReserveRiskResult:
        with postgres_db.transaction() as session:
            # Both transactions are open and have read nothing yet when the race starts.
            session.scalar(select(func.count()).select_from(SignalRow))
            barrier.wait()
            return repository.reserve_risk(session, reserve_request(signal_id), NOW)

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(reserve_after_barrier, s) for s in ("sig-race-1", "sig-race-2")]
        results = [f.result(timeout=60) for f in futures]

    assert sorted(r.reserved for r in results) == [False, True]
    [denied] = [r for r in results if not r.reserved]
    assert denied.denial is DenialReason.MAX_POSITIONS
    assert state_of(postgres_db)["open_positions"] == 10
    assert len(reservation_rows(postgres_db)) == 1


def test_an_operator_action_receipt_recorded_again_is_written_once(db: Database) -> None:
    """A workflow's receipt of an operator action (from the starter, the CLI or the Web UI):
    the recording activity retried writes nothing more; another receipt of the same run is a
    row of its own."""
    receipt = ActionReceipt(
        workflow_id="signal-s-42",
        run_id="run-1",
        action="pause_account",
        via=ActionVia.SIGNAL,
        key="signal:pause_account:1",
        target="alpha-01",
        operator="jane",
        reason="client asked",
    )
    second = receipt.model_copy(update={"key": "signal:pause_account:2"})
    with db.transaction() as session:
        assert repository.record_action_receipt(session, receipt, None, NOW)
    with db.transaction() as session:
        assert not repository.record_action_receipt(session, receipt, "ui", NOW)
        assert repository.record_action_receipt(session, second, None, NOW)
    with db.transaction() as session:
        rows = session.scalars(select(OperatorActionRow).order_by(OperatorActionRow.id)).all()
        assert [(r.receipt, r.identity) for r in rows] == [
            ("signal-s-42/run-1/signal:pause_account:1", None),
            ("signal-s-42/run-1/signal:pause_account:2", None),
        ]

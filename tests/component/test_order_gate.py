"""The last gate before a new order leaves: open reservation, kill switch, account pause,
reduce-only; and
the race it closes (an order activity that reaches the broker after its leg was cancelled)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.execution import ExecutionActivities
from orchestrator.adapters.brokers.paper import PaperBroker
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.config import Settings
from orchestrator.domain.book import AccountStatus
from orchestrator.domain.contracts.payloads import (
    CancelOrderRequest,
    ErrorType,
    PlaceOrderRequest,
    ReserveRiskRequest,
)
from orchestrator.domain.values import DenialReason, OrderType, Side
from tests.support import account, book, broker_orders, load

NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)


def reserve(db: Database, signal_id: str = "s1") -> None:
    with db.transaction() as session:
        result = repository.reserve_risk(
            session,
            ReserveRiskRequest(
                signal_id=signal_id,
                account_id="acc",
                client_order_id=f"{signal_id}:acc:1",
                quantity=Decimal(1),
                risk_amount=Decimal(300),
                margin=Decimal(1000),
            ),
            NOW,
        )
    assert result.reserved


def gate(db: Database) -> DenialReason | None:
    with db.transaction() as session:
        refusal = repository.order_gate(session, "s1", "acc")
    return None if refusal is None else refusal[0]


def test_gate_opens_only_for_a_leg_with_an_open_reservation(db: Database) -> None:
    load(db, book(account("acc")))
    assert gate(db) is DenialReason.LEG_CLOSED
    reserve(db)
    assert gate(db) is None
    with db.transaction() as session:
        repository.settle_reservation(session, "s1", "acc", NOW)
    assert gate(db) is DenialReason.LEG_CLOSED


def test_gate_refuses_when_halted_or_the_account_is_paused(db: Database) -> None:
    load(db, book(account("acc")))
    reserve(db)
    with db.transaction() as session:
        repository.set_account_status(session, "acc", AccountStatus.PAUSED, "ops", NOW)
    assert gate(db) is DenialReason.PAUSED
    with db.transaction() as session:
        repository.set_account_status(session, "acc", AccountStatus.ACTIVE, None, NOW)
        repository.set_halt(session, halted=True, operator="risk", reason="outage", now=NOW)
    assert gate(db) is DenialReason.HALTED


def test_gate_refuses_an_account_in_reduce_only_naming_who_and_why_until_entries_are_allowed(
    db: Database,
) -> None:
    load(db, book(account("acc")))
    reserve(db)
    with db.transaction() as session:
        repository.set_reduce_only(
            session, ["acc"], reduce_only=True, by="jane", reason="margin call", now=NOW
        )
        refusal = repository.order_gate(session, "s1", "acc")
    assert refusal == (
        DenialReason.REDUCE_ONLY,
        "account is reduce-only: no new risk (jane: margin call)",
    )
    with db.transaction() as session:
        repository.set_reduce_only(
            session, ["acc"], reduce_only=False, by="jane", reason="margin back", now=NOW
        )
    assert gate(db) is None


def test_a_reduce_only_refusal_at_send_time_sends_nothing_and_gives_the_risk_back(
    db: Database,
) -> None:
    """A leg reserved before the account went reduce-only (a retried order activity): the
    gate refuses it, the order never reaches the broker, and the leg's reservation is settled."""
    load(db, book(account("acc")))
    reserve(db)
    with db.transaction() as session:
        repository.set_reduce_only(
            session, ["acc"], reduce_only=True, by="jane", reason="margin call", now=NOW
        )
    activities = ExecutionActivities(
        db, PaperBroker(db), service=Settings().service_settings(), poll_interval_s=0.01
    )
    request = PlaceOrderRequest(
        signal_id="s1",
        account_id="acc",
        client_order_id="s1:acc:1",
        business_sequence=1,
        broker="alpha",
        broker_symbol="EURUSD",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        quantity=Decimal(1),
        limit_price=None,
        reference_price=Decimal("1.085"),
    )
    with pytest.raises(ApplicationError) as refused:
        ActivityEnvironment().run(activities.place_and_follow_order, request)
    assert refused.value.type == ErrorType.ORDER_REFUSED
    assert refused.value.details[0] == DenialReason.REDUCE_ONLY.value
    assert broker_orders(db) == {}
    assert gate(db) is DenialReason.LEG_CLOSED


def test_order_reaching_the_broker_after_its_leg_was_cancelled_is_never_sent(
    db: Database,
) -> None:
    load(db, book(account("acc")))
    reserve(db)
    activities = ExecutionActivities(
        db, PaperBroker(db), service=Settings().service_settings(), poll_interval_s=0.01
    )
    # The workflow's cancel_order ran first (the broker had nothing yet) and closed the leg...
    assert (
        activities.cancel_order(
            CancelOrderRequest(
                signal_id="s1", account_id="acc", client_order_id="s1:acc:1", reason="cancel"
            )
        )
        is None
    )
    # ...then the cancelled activity's thread finally gets to run.
    request = PlaceOrderRequest(
        signal_id="s1",
        account_id="acc",
        client_order_id="s1:acc:1",
        business_sequence=1,
        broker="alpha",
        broker_symbol="EURUSD",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        quantity=Decimal(1),
        limit_price=None,
        reference_price=Decimal("1.085"),
    )
    with pytest.raises(ApplicationError) as refused:
        ActivityEnvironment().run(activities.place_and_follow_order, request)
    assert refused.value.type == ErrorType.ORDER_REFUSED
    assert refused.value.details[0] == DenialReason.LEG_CLOSED.value
    assert broker_orders(db) == {}

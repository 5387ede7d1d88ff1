"""Order reconciliation in the ledger (both databases): the broker's working orders compared
with the ledger's (entries and protective orders); each difference acts (system reduce-only,
with the figures) from its second sighting, an order the broker does not report is unknown and
never taken for cancelled, no answer is only flagged; ``reconcile --accept`` adopts the
broker's view where it can and leaves the rest standing, saying why; ``starter.py reconcile``
shows order mismatches (on SQLite)."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.repository import Reading
from orchestrator.adapters.db.schema import OperatorActionRow, OrderRow
from orchestrator.domain.sync import BrokerWorking, MismatchKind, ReduceOnlyCause
from orchestrator.domain.values import Side
from orchestrator.services import sync
from tests.component.conftest import CliRunner, migrated_sqlite
from tests.component.test_reconcile import NOW, rows, sync_once
from tests.support import account, book, load

LATER = NOW + timedelta(seconds=15)


def add_order(
    db: Database,
    cid: str,
    *,
    quantity: str = "1",
    status: str = "NEW",
    purpose: str = "STOP",
    sequence: int = 1,
    filled: str = "0",
    written: timedelta = timedelta(hours=1),
) -> None:
    """A ledger order written ``written`` before the first sync."""
    with db.transaction() as session:
        session.add(
            OrderRow(
                client_order_id=cid,
                signal_id="s1",
                account_id="a",
                business_sequence=sequence,
                broker="alpha",
                broker_symbol="EURUSD",
                side="SELL",
                order_type="STOP",
                quantity=Decimal(quantity),
                limit_price=None,
                stop_price=Decimal("1.08200"),
                purpose=purpose,
                status=status,
                filled_quantity=Decimal(filled),
                created_at=NOW - written,
                updated_at=NOW - written,
            )
        )


def working(cid: str, quantity: str = "1", filled: str = "0") -> BrokerWorking:
    """An order the broker works: ``quantity`` in all, ``filled`` of it filled."""
    return BrokerWorking(
        client_order_id=cid,
        broker_symbol="EURUSD",
        side=Side.SELL,
        quantity=Decimal(quantity) - Decimal(filled),
        filled=Decimal(filled),
        order_type="LIMIT",
    )


def seen(orders: list[BrokerWorking] | None) -> Reading:
    """A reading with money, flat positions and these working orders (``None``: no answer)."""
    return Reading(
        balance=Decimal(50000),
        equity=Decimal(50000),
        free_margin=Decimal(50000),
        at=NOW,
        positions={},
        orders=orders,
    )


def ledger_order(db: Database, cid: str) -> OrderRow:
    with db.transaction() as session:
        row = session.get(OrderRow, cid)
        assert row is not None
        session.expunge_all()
        return row


def stored(db: Database) -> list[tuple[str, str]]:
    return [(m.client_order_id, m.kind) for m in sync.order_mismatches(db, "a")]


def accept(db: Database) -> sync.Accepted:
    return sync.accept(db, "a", operator="jane", reason="checked with the broker")


def test_an_order_opened_outside_the_system_acts_from_its_second_sighting_and_is_recorded(
    db: Database,
) -> None:
    load(db, book(account("a")))
    outside = [working("by-hand-1", "2", filled="0.5")]

    first = sync_once(db, seen(outside))
    after_first, _ = rows(db)
    sync_once(db, seen(outside), now=LATER)
    held, _ = rows(db)
    accepted = accept(db)
    freed, _ = rows(db)
    again = sync_once(db, seen(outside), now=LATER + timedelta(seconds=15))

    [mismatch] = first.order_mismatches
    assert (mismatch.kind, mismatch.broker_quantity, mismatch.ledger_quantity) == (
        MismatchKind.UNKNOWN_TO_LEDGER,
        Decimal("1.5"),  # what it still works
        None,
    )
    assert after_first.reduce_only is False
    assert (held.reduce_only, held.reduce_only_by, held.reduce_only_cause) == (
        True,
        "system",
        ReduceOnlyCause.RECONCILIATION.value,
    )
    assert "by-hand-1 UNKNOWN_TO_LEDGER: broker 1.5, ledger no answer" in (
        held.reduce_only_reason or ""
    )
    assert [o.client_order_id for o in accepted.adopted_orders] == ["by-hand-1"]
    assert accepted.released and freed.reduce_only is False
    recorded = ledger_order(db, "by-hand-1")
    assert (recorded.purpose, recorded.status, recorded.quantity, recorded.filled_quantity) == (
        "ADOPTED",
        "PARTIALLY_FILLED",
        Decimal(2),
        Decimal("0.5"),
    )
    assert (recorded.side, recorded.broker_symbol, recorded.order_type) == (
        "SELL",
        "EURUSD",
        "LIMIT",
    )
    assert again.order_mismatches == [] and stored(db) == []
    with db.transaction() as session:
        actions = [
            (r.action, r.operator)
            for r in session.scalars(select(OperatorActionRow).order_by(OperatorActionRow.id))
        ]
    assert actions == [
        ("reduce_only", "system"),
        ("reconcile_accept", "jane"),
        ("allow_entries", "jane"),
    ]


def test_a_working_order_the_broker_does_not_report_is_unknown_not_cancelled(
    db: Database,
) -> None:
    load(db, book(account("a")))
    add_order(db, "stop-1")

    sync_once(db, seen([]))
    second = sync_once(db, seen([]), now=LATER)
    held, _ = rows(db)
    untouched = ledger_order(db, "stop-1")
    accepted = accept(db)
    ended = ledger_order(db, "stop-1")

    [mismatch] = second.order_mismatches
    assert (mismatch.kind, mismatch.broker_quantity, mismatch.ledger_quantity) == (
        MismatchKind.MISSING_AT_BROKER,
        None,
        Decimal(1),
    )
    assert held.reduce_only and held.reduce_only_cause == "reconciliation"
    assert "stop-1 MISSING_AT_BROKER" in (held.reduce_only_reason or "")
    assert untouched.status == "NEW"  # the sync never decides it was cancelled
    assert [o.kind for o in accepted.adopted_orders] == ["MISSING_AT_BROKER"]
    assert ended.status == "CANCELLED"
    assert "not reported by the broker" in (ended.reject_text or "")
    assert "jane" in (ended.reject_text or "")
    assert accepted.released


def test_a_quantity_that_differs_acts_and_accept_takes_the_brokers(db: Database) -> None:
    load(db, book(account("a")))
    add_order(db, "tp-1", quantity="1", purpose="TAKE_PROFIT")

    sync_once(db, seen([working("tp-1", "0.6")]))
    second = sync_once(db, seen([working("tp-1", "0.6")]), now=LATER)
    held, _ = rows(db)
    accept(db)

    assert [(m.kind, m.broker_quantity, m.ledger_quantity) for m in second.order_mismatches] == [
        (MismatchKind.QUANTITY_DIFFERS, Decimal("0.6"), Decimal(1))
    ]
    assert held.reduce_only
    assert ledger_order(db, "tp-1").quantity == Decimal("0.6")
    assert stored(db) == []


def test_what_each_order_still_works_is_compared_not_its_total(db: Database) -> None:
    # Partly filled and recorded: both work 0.6. (A FIX replacement's OrderQty is its whole
    # chain's total; the adapter reports what it still works: compared the same way.)
    load(db, book(account("a")))
    add_order(
        db, "tp-2", quantity="1", purpose="TAKE_PROFIT", status="PARTIALLY_FILLED", filled="0.4"
    )

    sync_once(db, seen([working("tp-2", "1", filled="0.4")]))
    second = sync_once(db, seen([working("tp-2", "1", filled="0.4")]), now=LATER)

    assert second.order_mismatches == [] and rows(db)[0].reduce_only is False


def test_an_order_in_flight_that_agrees_by_the_next_sync_never_acts(db: Database) -> None:
    load(db, book(account("a")))
    add_order(db, "entry-1", status="NEW", purpose="ENTRY")

    first = sync_once(db, seen([]))  # filled at the broker, the ledger not yet told
    with db.transaction() as session:
        row = session.get(OrderRow, "entry-1")
        assert row is not None
        row.status = "FILLED"
    second = sync_once(db, seen([]), now=LATER)

    assert [m.kind for m in first.order_mismatches] == [MismatchKind.MISSING_AT_BROKER]
    assert second.order_mismatches == [] and stored(db) == []
    assert rows(db)[0].reduce_only is False


def test_an_order_written_ahead_of_its_submission_is_not_expected_at_the_broker(
    db: Database,
) -> None:
    load(db, book(account("a")))
    add_order(db, "entry-2", status="PENDING_SUBMIT", purpose="ENTRY", written=timedelta(0))

    sync_once(db, seen([]))
    second = sync_once(db, seen([]), now=LATER)
    known = sync_once(db, seen([working("entry-2")]), now=LATER + timedelta(seconds=15))

    assert second.order_mismatches == [] and known.order_mismatches == []
    assert rows(db)[0].reduce_only is False


def test_a_stop_written_ahead_long_ago_and_not_at_the_broker_is_missing_there(
    db: Database,
) -> None:
    # Its activity never sent it (or gave up): the position has no stop at the broker.
    load(db, book(account("a")))
    add_order(db, "stop-3", status="PENDING_SUBMIT", written=timedelta(minutes=4, seconds=50))

    young = sync_once(db, seen([]))  # written 4 min 50 s ago: may still be on its way
    sync_once(db, seen([]), now=LATER)  # 5 min 5 s: the broker should have it
    second = sync_once(db, seen([]), now=LATER + timedelta(seconds=15))
    held, _ = rows(db)

    assert young.order_mismatches == []
    assert [(m.client_order_id, m.kind) for m in second.order_mismatches] == [
        ("stop-3", MismatchKind.MISSING_AT_BROKER)
    ]
    assert held.reduce_only and "stop-3 MISSING_AT_BROKER" in (held.reduce_only_reason or "")


def test_no_answer_about_orders_is_only_flagged_and_an_earlier_difference_stands(
    db: Database,
) -> None:
    load(db, book(account("a")))
    add_order(db, "stop-1", sequence=1)
    add_order(db, "stop-2", sequence=2)

    sync_once(db, seen([working("stop-1")]))  # stop-2 not reported
    silent = sync_once(db, seen(None), now=LATER)
    held, _ = rows(db)
    accepted = accept(db)

    assert {(m.client_order_id, m.kind) for m in silent.order_mismatches} == {
        ("stop-1", MismatchKind.UNKNOWN),
        ("stop-2", MismatchKind.UNKNOWN),
    }
    # The difference seen before the broker went silent stands (and acts); the rest is unknown.
    assert held.reduce_only and "stop-2 MISSING_AT_BROKER" in (held.reduce_only_reason or "")
    assert [(o.client_order_id, o.kind) for o in accepted.adopted_orders] == [
        ("stop-2", "MISSING_AT_BROKER")
    ]
    assert [(m.client_order_id, m.kind) for m in accepted.left_orders] == [("stop-1", "UNKNOWN")]
    assert repository.left_because(accepted.left_orders[0]).startswith("the broker did not")
    assert stored(db) == [("stop-1", "UNKNOWN")]
    assert ledger_order(db, "stop-1").status == "NEW"
    assert accepted.released  # what is left does not act


def test_an_order_the_ledger_ended_but_the_broker_still_works_is_left_for_the_operator(
    db: Database,
) -> None:
    load(db, book(account("a")))
    add_order(db, "stop-old", status="CANCELLED")

    sync_once(db, seen([working("stop-old")]))
    second = sync_once(db, seen([working("stop-old")]), now=LATER)
    accepted = accept(db)
    still, _ = rows(db)
    gone = sync_once(db, seen([]), now=LATER + timedelta(seconds=15))
    cleared, _ = rows(db)

    [mismatch] = second.order_mismatches
    assert (mismatch.kind, mismatch.ledger_status) == (
        MismatchKind.UNKNOWN_TO_LEDGER,
        "CANCELLED",
    )
    assert accepted.adopted_orders == [] and not accepted.released
    assert "cancel it at the broker" in repository.left_because(accepted.left_orders[0])
    assert still.reduce_only and ledger_order(db, "stop-old").status == "CANCELLED"
    # Cancelled at the broker: the two agree again and the sync lifts its reduce-only.
    assert gone.released and cleared.reduce_only is False and stored(db) == []


def test_reconcile_shows_order_mismatches_and_accept_reports_them(
    tmp_path: Path, cli: CliRunner, capsys: Any
) -> None:
    url = migrated_sqlite(tmp_path / "orchestrator.db")
    db = Database(url)
    try:
        load(db, book(account("a")))
        add_order(db, "stop-old", status="CANCELLED")
        outside = [working("by-hand-1", "2"), working("stop-old")]
        sync_once(db, seen(outside))
        sync_once(db, seen(outside), now=LATER)

        assert cli(url, "reconcile", "--json") == 0
        shown = json.loads(capsys.readouterr().out)
        assert cli(url, "reconcile", "--account", "a") == 0
        table = capsys.readouterr().out
        argv = ["reconcile", "--account", "a", "--accept", "--reason", "by hand"]
        assert cli(url, *argv, "--operator", "jane", "--json") == 0
        accepted = json.loads(capsys.readouterr().out)

        assert [(s["client_order_id"], s["kind"], s["ledger_status"]) for s in shown] == [
            ("by-hand-1", "UNKNOWN_TO_LEDGER", None),
            ("stop-old", "UNKNOWN_TO_LEDGER", "CANCELLED"),
        ]
        assert "order mismatch" in table and "by-hand-1" in table
        assert [o["client_order_id"] for o in accepted["orders_adopted"]] == ["by-hand-1"]
        [left] = accepted["orders_left"]
        assert left["client_order_id"] == "stop-old" and "cancel it" in left["why"]
        assert accepted["reduce_only_lifted"] is False
    finally:
        db.dispose()

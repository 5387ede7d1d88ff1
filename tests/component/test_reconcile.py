"""Account sync and reconciliation in the ledger (both databases): the state a reading writes or
derives, mismatches stored and acting from their second sighting, an unknown never taken for
flat, breaches held as system reduce-only, and the operator's adoption of the broker's view;
``starter.py reconcile`` showing and accepting them (on SQLite)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.repository import Reading
from orchestrator.adapters.db.schema import (
    AccountRow,
    AccountStateRow,
    OperatorActionRow,
    PositionFillRow,
    PositionRow,
)
from orchestrator.domain.sync import MismatchKind, ReduceOnlyCause, StateSource
from orchestrator.services import sync
from tests.component.conftest import CliRunner, migrated_sqlite
from tests.support import account, book, load

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
DAY = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)  # 17:00 New York, the day before


def add_position(db: Database, signal_id: str, side: str, quantity: str) -> None:
    with db.transaction() as session:
        session.add(
            PositionRow(
                signal_id=signal_id,
                account_id="a",
                keeper_workflow_id=f"signal-{signal_id}/positions",
                broker="alpha",
                broker_symbol="EURUSD",
                side=side,
                entry_quantity=Decimal(quantity),
                average_entry=Decimal("1.08500"),
                open_quantity=Decimal(quantity),
                stop=Decimal("1.08200"),
                status="OPEN",
                realized_pnl=Decimal(0),
                opened_at=NOW - timedelta(hours=1),
                updated_at=NOW - timedelta(hours=1),
            )
        )


def money(equity: str | None, positions: dict[str, Decimal] | None, **kw: Any) -> Reading:
    return Reading(
        balance=Decimal(50000) if equity is not None else None,
        equity=Decimal(equity) if equity is not None else None,
        free_margin=Decimal(equity) if equity is not None else None,
        at=NOW if equity is not None else None,
        positions=positions,
        **kw,
    )


def sync_once(db: Database, reading: Reading, now: datetime = NOW) -> repository.SyncOutcome:
    with db.transaction() as session:
        [target] = repository.sync_accounts(session, "alpha", ["a"])
    with db.transaction() as session:
        return repository.write_sync(session, target, reading, now=now, day_start=DAY)


def rows(db: Database) -> tuple[AccountRow, AccountStateRow]:
    with db.transaction() as session:
        account_row = session.get(AccountRow, "a")
        state = session.get(AccountStateRow, "a")
        assert account_row is not None and state is not None
        session.expunge_all()
        return account_row, state


def open_positions(db: Database) -> dict[str, tuple[str, Decimal]]:
    with db.transaction() as session:
        return {
            p.signal_id: (p.side, p.open_quantity)
            for p in session.scalars(select(PositionRow).where(PositionRow.status != "CLOSED"))
        }


def test_a_reported_reading_is_written_with_its_time_source_and_peak(db: Database) -> None:
    load(db, book(account("a", as_of=NOW - timedelta(hours=2))))

    outcome = sync_once(db, money("51000", {}))

    _, state = rows(db)
    assert outcome.source is StateSource.REPORTED
    assert (state.source, state.equity, state.peak_equity, state.as_of) == (
        "reported",
        Decimal(51000),
        Decimal(51000),
        NOW,
    )
    assert state.trading_day_start == DAY


def test_without_a_reading_equity_is_derived_from_the_ledger_at_the_brokers_quote(
    db: Database,
) -> None:
    load(db, book(account("a", as_of=NOW - timedelta(hours=2))))
    add_position(db, "s1", "BUY", "2")
    # Bid 10 pips under the entry: 2 lots x 100 ticks x 1 USD.
    quotes = {"EURUSD": (Decimal("1.08400"), Decimal("1.08402"))}

    outcome = sync_once(db, money(None, {"EURUSD": Decimal(2)}, quotes=quotes))
    _, derived = rows(db)
    without_quote = sync_once(db, money(None, {"EURUSD": Decimal(2)}), now=NOW + timedelta(1))
    _, kept = rows(db)

    assert outcome.source is StateSource.DERIVED
    assert (derived.source, derived.equity, derived.as_of) == ("derived", Decimal(49800), NOW)
    assert without_quote.source is None
    assert (kept.source, kept.equity, kept.as_of) == ("derived", Decimal(49800), NOW)


def test_a_mismatch_acts_from_its_second_sighting_and_is_adopted_on_accept(db: Database) -> None:
    load(db, book(account("a")))
    add_position(db, "s1", "BUY", "3")
    broker = {"EURUSD": Decimal(1)}  # the broker holds 1 lot, the ledger 3

    first = sync_once(db, money("50000", broker))
    after_first, _ = rows(db)
    sync_once(db, money("50000", broker), now=NOW + timedelta(seconds=15))
    held, _ = rows(db)
    with db.transaction() as session:
        adopted, left, released = repository.accept_broker_view(
            session, "a", operator="jane", reason="closed 2 lots by hand", now=NOW
        )
    freed, state = rows(db)

    [mismatch] = first.mismatches
    assert (mismatch.kind, mismatch.broker_quantity, mismatch.ledger_quantity) == (
        MismatchKind.QUANTITY_DIFFERS,
        Decimal(1),
        Decimal(3),
    )
    assert after_first.reduce_only is False
    assert (held.reduce_only, held.reduce_only_by, held.reduce_only_cause) == (
        True,
        "system",
        ReduceOnlyCause.RECONCILIATION.value,
    )
    assert "broker 1, ledger 3" in (held.reduce_only_reason or "")
    assert [a.resized for a in adopted] == [["s1"]] and left == [] and released
    assert open_positions(db) == {"s1": ("BUY", Decimal(1))}
    assert freed.reduce_only is False
    assert repository_mismatches(db) == []
    with db.transaction() as session:
        recorded = [
            (r.action, r.operator)
            for r in session.scalars(select(OperatorActionRow).order_by(OperatorActionRow.id))
        ]
    assert recorded == [
        ("reduce_only", "system"),
        ("reconcile_accept", "jane"),
        ("allow_entries", "jane"),
    ]
    assert state.open_positions == 0  # resized, none opened or closed
    # No keeper runs it: the close at the broker is booked here, with its cause, at the
    # average entry (the price is unknown), P&L 0.
    with db.transaction() as session:
        [fill] = session.scalars(select(PositionFillRow)).all()
        booked = (fill.signal_id, fill.cause, fill.quantity, fill.price, fill.pnl)
    assert booked == ("s1", "CLOSED_AT_BROKER", Decimal(2), Decimal("1.08500"), Decimal(0))


def repository_mismatches(db: Database) -> list[Any]:
    with db.transaction() as session:
        return repository.list_mismatches(session, "a")


def test_no_answer_for_positions_is_unknown_never_flat_and_never_acts(db: Database) -> None:
    load(db, book(account("a")))
    add_position(db, "s1", "SELL", "2")

    sync_once(db, money("50000", None))
    outcome = sync_once(db, money("50000", None), now=NOW + timedelta(seconds=15))

    [mismatch] = outcome.mismatches
    assert (mismatch.kind, mismatch.broker_quantity, mismatch.ledger_quantity) == (
        MismatchKind.UNKNOWN,
        None,
        Decimal(-2),
    )
    assert rows(db)[0].reduce_only is False
    with db.transaction() as session:
        adopted, left, _ = repository.accept_broker_view(
            session, "a", operator="jane", reason="try", now=NOW
        )
        assert adopted == [] and [m.kind for m in left] == ["UNKNOWN"]
    assert open_positions(db) == {"s1": ("SELL", Decimal(2))}


def test_a_drawdown_breach_holds_until_an_operator_lifts_it_and_then_is_not_put_back(
    db: Database,
) -> None:
    load(db, book(account("a")))  # max drawdown 10 %

    outcome = sync_once(db, money("44000", {}))
    held, _ = rows(db)
    later_day = sync_once(db, money("44000", {}), now=NOW + timedelta(days=1))
    still, _ = rows(db)
    with db.transaction() as session:
        repository.set_reduce_only(
            session, ["a"], reduce_only=False, by="jane", reason="seen", now=NOW + timedelta(days=1)
        )
        repository.record_operator_action(
            session,
            action="allow_entries",
            target="a",
            operator="jane",
            reason="seen",
            reached=[],
            outcome={},
            now=NOW + timedelta(days=1),
        )
    sync_once(db, money("44000", {}), now=NOW + timedelta(days=1, seconds=15))
    lifted, _ = rows(db)

    assert outcome.new_breach is not None
    assert outcome.new_breach.cause is ReduceOnlyCause.DRAWDOWN
    assert "12.00 %" in outcome.new_breach.reason and "10.00 %" in outcome.new_breach.reason
    assert held.reduce_only_cause == "drawdown"
    assert later_day.released is False and still.reduce_only
    assert lifted.reduce_only is False


def test_an_operators_reduce_only_is_left_alone(db: Database) -> None:
    load(db, book(account("a")))
    with db.transaction() as session:
        repository.set_reduce_only(
            session, ["a"], reduce_only=True, by="jane", reason="margin call", now=NOW
        )

    sync_once(db, money("44000", {}))

    held, _ = rows(db)
    assert (held.reduce_only_by, held.reduce_only_reason) == ("jane", "margin call")


# --------------------------------------------------------------------------------------------
# The commands


def test_reconcile_shows_the_mismatches_and_accept_adopts_the_brokers_view(
    tmp_path: Path, cli: CliRunner, capsys: Any
) -> None:
    url = migrated_sqlite(tmp_path / "orchestrator.db")
    db = Database(url)
    try:
        load(db, book(account("a")))
        sync_once(db, money("50000", {"EURUSD": Decimal(2)}))
        sync_once(db, money("50000", {"EURUSD": Decimal(2)}), now=NOW + timedelta(seconds=15))

        assert cli(url, "reconcile", "--json") == 0
        [shown] = json.loads(capsys.readouterr().out)
        assert cli(url, "reconcile", "--account", "a") == 0
        table = capsys.readouterr().out
        assert cli(url, "accounts", "list", "--json") == 0
        [listed] = json.loads(capsys.readouterr().out)
        argv = ["reconcile", "--account", "a", "--accept", "--reason", "by hand"]
        assert cli(url, *argv, "--operator", "jane", "--json") == 0
        accepted = json.loads(capsys.readouterr().out)

        assert (shown["kind"], shown["broker_quantity"], shown["ledger_quantity"]) == (
            "UNKNOWN_TO_LEDGER",
            "2",
            "0",
        )
        assert "UNKNOWN_TO_LEDGER" in table
        assert (listed["state_source"], listed["reduce_only"]) == ("reported", True)
        assert listed["reduce_only_by"] == "system"
        [adopted] = accepted["adopted"]
        assert adopted["opened"] and accepted["reduce_only_lifted"] is True
        assert sync.mismatches(db) == []
        assert list(open_positions(db).values()) == [("BUY", Decimal(2))]
    finally:
        db.dispose()


def test_reconcile_accept_refuses_bad_input_with_exit_2(
    tmp_path: Path, cli: CliRunner, capsys: Any
) -> None:
    url = migrated_sqlite(tmp_path / "orchestrator.db")
    db = Database(url)
    try:
        load(db, book(account("a")))
        assert cli(url, "reconcile", "--accept", "--reason", "r") == 2
        assert "--accept needs --account" in capsys.readouterr().err
        assert cli(url, "reconcile", "--account", "ghost", "--accept", "--reason", "r") == 2
        assert "unknown account 'ghost'" in capsys.readouterr().err
        assert cli(url, "reconcile", "--account", "a", "--accept") == 2
        assert "give a reason" in capsys.readouterr().err
    finally:
        db.dispose()

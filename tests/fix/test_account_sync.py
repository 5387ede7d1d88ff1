"""The account sync over FIX, end to end from the sync activity to the ledger (SQLite):

- FIX 4.4, the suite's own venue (``tests.fix.venue``): money from CollateralInquiry →
  CollateralReport, positions from RequestForPositions → PositionReport, working orders from
  OrderMassStatusRequest; an order another session placed for the account and an order the
  ledger has working that the venue does not hold are both found, and act from the second sync.
- FIX 4.2, the venue again: no AN, BB or AF; equity derived; one OrderStatusRequest per order
  the ledger has working, which finds the one the venue does not know.
- QuickFIX's ``executor`` (FIX 4.4) and ``ordermatch`` (FIX 4.2), which refuse status
  requests and the account questions: equity derived, orders unknown (never "missing", never
  "cancelled"), and the account not put in reduce-only for it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from activities.sync import AccountSyncActivities
from orchestrator.adapters.brokers.fix import FixBroker
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import AccountRow, AccountStateRow, OrderRow, PositionRow
from orchestrator.config import Settings
from orchestrator.domain.contracts.sync import SyncRequest, SyncResult
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.sync import MismatchKind
from orchestrator.domain.values import Side
from tests.fix.conftest import StartBroker, await_status, session_log, stop_ticket, ticket
from tests.fix.peers import new_comp_id, running_peer
from tests.support import account, book, load

pytestmark = pytest.mark.fix

LOT = Decimal(100000)


class NoClient:
    """The sync's reading activity needs no Temporal client (only a FLATTEN does)."""


def ledger(db: Database, *orders: tuple[str, str, str]) -> None:
    """The book's account ``acct-1`` (broker alpha) and these working orders of it in the
    ledger: ``(client order id, side, lots)``."""
    load(db, book(account("acct-1")))  # equity 50,000: no limit breached by the tests
    now = datetime.now(UTC)
    with db.transaction() as session:
        for sequence, (cid, side, lots) in enumerate(orders, start=1):
            session.add(
                OrderRow(
                    client_order_id=cid,
                    signal_id="sig-1",
                    account_id="acct-1",
                    business_sequence=sequence,
                    broker="alpha",
                    broker_symbol="EURUSD",
                    side=side,
                    order_type="LIMIT",
                    quantity=Decimal(lots),
                    limit_price=Decimal("1.09000"),
                    purpose="TAKE_PROFIT",
                    status=OrderStatus.NEW.value,
                    filled_quantity=Decimal(0),
                    created_at=now,
                    updated_at=now,
                )
            )


def sync_twice(db: Database, broker: FixBroker) -> tuple[SyncResult, SyncResult]:
    """Two syncs of broker alpha's accounts, the second a moment later (a difference acts from
    its second sighting)."""
    clock = [datetime.now(UTC)]
    activities = AccountSyncActivities(
        db,
        broker,
        NoClient(),  # type: ignore[arg-type]
        Settings(),
        clock=lambda: clock[0],
    )
    first = activities.sync_accounts(SyncRequest(broker="alpha"))
    clock[0] += timedelta(seconds=15)
    return first, activities.sync_accounts(SyncRequest(broker="alpha"))


def kinds(result: SyncResult) -> list[tuple[str, MismatchKind]]:
    return [(m.client_order_id, m.kind) for m in result.order_mismatches]


def account_rows(db: Database) -> tuple[AccountRow, AccountStateRow]:
    with db.transaction() as session:
        row, state = session.get(AccountRow, "acct-1"), session.get(AccountStateRow, "acct-1")
        assert row is not None and state is not None
        session.expunge_all()
        return row, state


def test_fix44_sync_reads_collateral_positions_and_mass_status_and_reconciles_orders(
    tmp_path: Path, start_broker: StartBroker, sqlite_db: Database
) -> None:
    ours, other = new_comp_id(), new_comp_id("OTHER")
    ledger(sqlite_db, ("fx-stop", "SELL", "0.50"), ("fx-gone", "SELL", "0.50"))
    with sqlite_db.transaction() as session:
        now = datetime.now(UTC)
        session.add(
            PositionRow(
                signal_id="sig-1",
                account_id="acct-1",
                keeper_workflow_id="signal-sig-1/positions",
                broker="alpha",
                broker_symbol="EURUSD",
                side="BUY",
                entry_quantity=Decimal("0.50"),
                average_entry=Decimal("1.08500"),
                open_quantity=Decimal("0.50"),
                stop=Decimal("1.08200"),
                status="OPEN",
                realized_pnl=Decimal(0),
                opened_at=now,
                updated_at=now,
            )
        )
    with running_peer("venue", tmp_path, [ours, other]) as peer:
        broker = start_broker(peer.client_config(ours, units_per_lot=LOT))
        peer.tell("price EURUSD 1.08500")
        peer.tell("collateral acct-1 50000.00 50250.50 49100.25")
        broker.submit(ticket("fx-entry", Side.BUY, "0.50", "1.08500"))
        await_status(broker, "fx-entry", OrderStatus.FILLED)
        broker.submit(stop_ticket("fx-stop", Side.SELL, "0.50", stop="1.08200"))
        # Placed for the same account by another session: the ledger never saw it.
        stranger = start_broker(peer.client_config(other, units_per_lot=LOT))
        stranger.submit(ticket("fx-foreign", Side.BUY, "0.10", "1.07000"))

        first, second = sync_twice(sqlite_db, broker)
        asked = [j["type"] for j in peer.journal() if j["type"] in {"AN", "BB", "AF", "H"}]

    row, state = account_rows(sqlite_db)
    assert first.reported == ["acct-1"]
    assert (state.source, state.balance, state.equity, state.free_margin) == (
        "reported",
        Decimal("50000.00"),
        Decimal("50250.50"),
        Decimal("49100.25"),
    )
    assert first.mismatches == []  # the venue's 0.5 long is the ledger's
    assert kinds(first) == [
        ("fx-foreign", MismatchKind.UNKNOWN_TO_LEDGER),
        ("fx-gone", MismatchKind.MISSING_AT_BROKER),
    ]
    foreign = first.order_mismatches[0]
    assert (foreign.broker_symbol, foreign.side, foreign.broker_quantity) == (
        "EURUSD",
        Side.BUY,
        Decimal("0.1"),
    )
    assert first.order_mismatch_count == 2 and kinds(second) == kinds(first)
    assert (row.reduce_only, row.reduce_only_cause) == (True, "reconciliation")
    assert "fx-foreign UNKNOWN_TO_LEDGER" in (row.reduce_only_reason or "")
    assert sorted(set(asked)) == ["AF", "AN", "BB"]  # mass status: no per-order requests


def test_fix42_sync_derives_equity_and_asks_the_status_of_each_working_order(
    tmp_path: Path, start_broker: StartBroker, sqlite_db: Database
) -> None:
    ours = new_comp_id()
    ledger(sqlite_db, ("h-rest", "SELL", "0.50"), ("h-ghost", "SELL", "0.30"))
    with running_peer("venue", tmp_path, [ours], venue_begin_string="FIX.4.2") as peer:
        broker = start_broker(peer.client_config(ours, units_per_lot=LOT, status_requests=True))
        peer.tell("price EURUSD 1.08500")
        broker.submit(ticket("h-rest", Side.SELL, "0.50", "1.09000"))  # rests at the venue

        first, second = sync_twice(sqlite_db, broker)
        asked = [(j["type"], j["cl_ord_id"]) for j in peer.journal() if j["type"] != "control"]

    row, state = account_rows(sqlite_db)
    assert first.derived == ["acct-1"] and state.source == "derived"
    assert state.equity == Decimal(50000)  # no open position: the balance
    assert kinds(first) == [("h-ghost", MismatchKind.MISSING_AT_BROKER)]
    assert kinds(second) == kinds(first)
    assert row.reduce_only and "h-ghost MISSING_AT_BROKER" in (row.reduce_only_reason or "")
    # FIX 4.2 has no AN, BB or AF: only orders and one status request per order, per sync.
    assert sorted(asked) == sorted([("D", "h-rest")] + [("H", "h-ghost"), ("H", "h-rest")] * 2)


@pytest.mark.parametrize("peer_name", ["executor", "ordermatch"])
def test_a_peer_that_refuses_status_requests_leaves_orders_unknown_and_equity_derived(
    peer_name: str, tmp_path: Path, start_broker: StartBroker, sqlite_db: Database
) -> None:
    ours = new_comp_id()
    ledger(sqlite_db, ("qf-1", "SELL", "0.50"))
    with running_peer(peer_name, tmp_path, [ours]) as peer:  # type: ignore[arg-type]
        broker = start_broker(peer.client_config(ours, status_requests=True))
        # executor fills it at once, ordermatch rests it: the ledger's NEW is stale either way.
        broker.submit(ticket("qf-1", Side.SELL, "0.50", "1.09000"))

        first, second = sync_twice(sqlite_db, broker)
        log = session_log(broker)

    row, state = account_rows(sqlite_db)
    assert first.derived == ["acct-1"] and state.source == "derived"
    assert kinds(first) == [("qf-1", MismatchKind.UNKNOWN)]  # never "missing", never cancelled
    assert kinds(second) == kinds(first)
    assert row.reduce_only is False  # an unknown is flagged, it does not act
    assert "\x0135=H\x01" in log and "\x01372=H\x01" in log  # asked, refused (35=j)
    with sqlite_db.transaction() as session:
        order = session.get(OrderRow, "qf-1")
        assert order is not None and order.status == "NEW"

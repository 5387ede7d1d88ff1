"""What the broker says about an account over FIX 4.4, against the suite's own venue
(``tests.fix.venue``): positions (RequestForPositions → PositionReport), collateral
(CollateralInquiry → CollateralReport) and the orders it holds (OrderMassStatusRequest), each
parsed; an answer of "none" is empty, a refusal or FIX 4.2 is ``None`` (unknown, never flat)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from orchestrator.adapters.brokers.base import BrokerPosition
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.values import Side
from tests.fix.conftest import StartBroker, await_status, stop_ticket, ticket
from tests.fix.peers import new_comp_id, running_peer

pytestmark = pytest.mark.fix

LOT = Decimal(100000)


def test_positions_are_the_net_of_the_venues_fills_per_symbol_and_none_is_flat(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours = new_comp_id()
    with running_peer("venue", tmp_path, [ours]) as peer:
        broker = start_broker(peer.client_config(ours, units_per_lot=LOT))
        broker.submit(ticket("pq-1", Side.BUY, "0.50", "1.08500"))
        broker.submit(ticket("pq-2", Side.SELL, "0.20", "1.08600"))
        broker.submit(ticket("pq-3", Side.SELL, "0.30", "1.26500", symbol="GBPUSD"))
        for cid in ("pq-1", "pq-2", "pq-3"):
            await_status(broker, cid, OrderStatus.FILLED)

        assert broker.positions("acct-1") == [
            BrokerPosition("EURUSD", Side.BUY, Decimal("0.3"), None),
            BrokerPosition("GBPUSD", Side.SELL, Decimal("0.3"), None),
        ]
        # The venue answers "no positions found" for an account without any: flat.
        assert broker.positions("acct-2") == []


def test_positions_request_the_venue_does_not_support_is_unknown_not_flat(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours = new_comp_id()
    with running_peer("venue", tmp_path, [ours]) as peer:
        broker = start_broker(peer.client_config(ours))
        peer.tell("positions unsupported")  # PosReqResult 4 from now on
        assert broker.positions("acct-1") is None
        assert [j["result"] for j in peer.journal() if j["type"] == "AN"] == [
            "positions not supported"
        ]


def test_collateral_report_gives_balance_equity_and_free_margin_and_none_without_one(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours = new_comp_id()
    with running_peer("venue", tmp_path, [ours]) as peer:
        broker = start_broker(peer.client_config(ours))
        peer.tell("collateral acct-1 10000.00 10250.50 9100.25")

        reading = broker.account_state("acct-1")
        assert reading is not None
        assert (reading.balance, reading.equity, reading.free_margin) == (
            Decimal("10000.00"),
            Decimal("10250.50"),
            Decimal("9100.25"),
        )
        assert reading.reported is True
        # No collateral for this account: the venue refuses the inquiry (CollateralInquiryAck).
        assert broker.account_state("acct-2") is None


def test_mass_status_lists_the_accounts_working_orders_including_ones_we_never_sent(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours, other = new_comp_id(), new_comp_id("OTHER")
    with running_peer("venue", tmp_path, [ours, other]) as peer:
        broker = start_broker(peer.client_config(ours, units_per_lot=LOT))
        peer.tell("price EURUSD 1.08500")
        broker.submit(ticket("ms-filled", Side.BUY, "0.50", "1.08500"))
        await_status(broker, "ms-filled", OrderStatus.FILLED)
        broker.submit(stop_ticket("ms-stop", Side.SELL, "0.50", stop="1.08200"))
        broker.submit(ticket("ms-tp", Side.SELL, "0.50", "1.09000"))
        # Placed for the same account by another session: the ledger here never saw it.
        stranger = start_broker(peer.client_config(other, units_per_lot=LOT))
        stranger.submit(ticket("ms-foreign", Side.BUY, "0.10", "1.07000"))

        working = broker.open_orders_at_venue("acct-1")
        assert working is not None
        assert sorted((o.client_order_id, o.status, o.quantity) for o in working) == [
            ("ms-foreign", OrderStatus.NEW, Decimal("0.1")),
            ("ms-stop", OrderStatus.NEW, Decimal("0.5")),
            ("ms-tp", OrderStatus.NEW, Decimal("0.5")),
        ]
        assert broker.open_orders_at_venue("acct-2") == []  # TotNumReports 0: no orders


def test_fix42_session_has_no_positions_collateral_or_mass_status_and_sends_none(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours = new_comp_id()
    with running_peer("venue", tmp_path, [ours], venue_begin_string="FIX.4.2") as peer:
        broker = start_broker(peer.client_config(ours))
        assert broker.config.begin_string == "FIX.4.2"
        assert broker.positions("acct-1") is None
        assert broker.account_state("acct-1") is None
        assert broker.open_orders_at_venue("acct-1") is None
        broker.submit(ticket("fix42-1"))  # the session works; it was never asked
        await_status(broker, "fix42-1", OrderStatus.FILLED)
        assert [j["type"] for j in peer.journal()] == ["D"]

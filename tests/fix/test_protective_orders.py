"""A position's protective orders over FIX, against the suite's own venue (``tests.fix.venue``,
FIX 4.4): a stop order triggered by a price move, a stop moved by cancel/replace (35=G), a
take-profit cancelled, and a replace the venue refuses. The test moves the market with
``peer.tell("price SYMBOL PX")``."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from orchestrator.adapters.brokers.base import BrokerPosition, ReplaceRejected
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.values import Side
from tests.fix.conftest import StartBroker, await_status, stop_ticket, ticket
from tests.fix.peers import FixPeer, new_comp_id, running_peer

pytestmark = pytest.mark.fix

LOT = Decimal(100000)


def received(peer: FixPeer, msg_type: str) -> list[tuple[str, str]]:
    """(ClOrdID, what the venue did) of each message of ``msg_type`` that reached it."""
    return [(j["cl_ord_id"], j["result"]) for j in peer.journal() if j["type"] == msg_type]


def test_stop_rests_until_the_price_trades_through_it_then_fills_at_the_market(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours = new_comp_id()
    with running_peer("venue", tmp_path, [ours]) as peer:
        broker = start_broker(peer.client_config(ours, units_per_lot=LOT))
        peer.tell("price EURUSD 1.08500")
        broker.submit(ticket("stp-entry", Side.BUY, "0.50", "1.08500"))
        await_status(broker, "stp-entry", OrderStatus.FILLED)

        placed = broker.submit(stop_ticket("stp-1", Side.SELL, "0.50", stop="1.08200"))
        assert placed.status is OrderStatus.NEW
        peer.tell("price EURUSD 1.08300")  # above the stop: nothing happens
        working = broker.open_orders_at_venue("acct-1")
        assert working is not None
        assert [(o.client_order_id, o.status) for o in working] == [("stp-1", OrderStatus.NEW)]
        assert broker.positions("acct-1") == [
            BrokerPosition("EURUSD", Side.BUY, Decimal("0.5"), None)
        ]

        peer.tell("price EURUSD 1.08150")  # through the stop
        filled = await_status(broker, "stp-1", OrderStatus.FILLED)
        # A stop becomes a market order: it fills at the market, below its stop price.
        assert [(e.quantity, e.price) for e in filled.executions] == [
            (Decimal("0.5"), Decimal("1.0815"))
        ]
        assert broker.positions("acct-1") == []  # the venue answers "no positions": flat


def test_stop_moved_by_cancel_replace_changes_quantity_and_price_and_fills_at_the_new_stop(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours = new_comp_id()
    with running_peer("venue", tmp_path, [ours]) as peer:
        broker = start_broker(peer.client_config(ours, units_per_lot=LOT))
        peer.tell("price EURUSD 1.08500")
        broker.submit(stop_ticket("mv-1", Side.SELL, "0.50", stop="1.08200"))

        moved = broker.replace("mv-1", stop_ticket("mv-2", Side.SELL, "0.40", stop="1.08350"))
        assert moved.client_order_id == "mv-2"
        assert moved.status is OrderStatus.NEW
        assert moved.quantity == Decimal("0.40")
        replaced = broker.status("mv-1")
        assert replaced is not None
        assert replaced.status is OrderStatus.CANCELLED  # replaced: it works no more
        assert [o.client_order_id for o in broker.open_orders("acct-1")] == ["mv-2"]
        assert received(peer, "G") == [("mv-2", "replaced")]

        peer.tell("price EURUSD 1.08300")  # through the new stop, not the old one
        filled = await_status(broker, "mv-2", OrderStatus.FILLED)
        assert [(e.quantity, e.price) for e in filled.executions] == [
            (Decimal("0.4"), Decimal("1.083"))
        ]
        # Idempotent on the new id: the same replace again returns it and sends nothing.
        again = broker.replace("mv-1", stop_ticket("mv-2", Side.SELL, "0.40", stop="1.08350"))
        assert again.status is OrderStatus.FILLED
        assert len(received(peer, "G")) == 1


def test_take_profit_limit_rests_above_the_market_and_is_cancelled(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours = new_comp_id()
    with running_peer("venue", tmp_path, [ours]) as peer:
        broker = start_broker(peer.client_config(ours, units_per_lot=LOT))
        peer.tell("price EURUSD 1.08500")
        take_profit = broker.submit(ticket("tp-1", Side.SELL, "0.50", "1.09000"))
        assert take_profit.status is OrderStatus.NEW

        cancelled = broker.cancel("tp-1")
        assert cancelled is not None
        assert cancelled.status is OrderStatus.CANCELLED
        assert cancelled.executions == ()
        assert received(peer, "F") == [("tp-1/C1", "cancelled")]
        peer.tell("price EURUSD 1.09500")  # would have filled it
        assert broker.open_orders_at_venue("acct-1") == []


def test_replace_refused_by_the_venue_raises_with_its_text_and_the_order_still_works(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours = new_comp_id()
    with running_peer("venue", tmp_path, [ours]) as peer:
        broker = start_broker(peer.client_config(ours, units_per_lot=LOT))
        broker.submit(stop_ticket("rf-1", Side.SELL, "0.50", stop="1.08200"))

        with pytest.raises(ReplaceRejected) as refused:
            broker.replace("rf-1", stop_ticket("rf-2", Side.SELL, "0", stop="1.08300"))
        assert refused.value.text == "Quantity must exceed what has filled"  # verbatim
        assert refused.value.order is not None
        assert refused.value.order.status is OrderStatus.NEW
        assert broker.status("rf-2") is None
        assert [o.client_order_id for o in broker.open_orders("acct-1")] == ["rf-1"]


def test_replace_of_a_stop_that_filled_meanwhile_says_so_and_sends_nothing(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours = new_comp_id()
    with running_peer("venue", tmp_path, [ours]) as peer:
        broker = start_broker(peer.client_config(ours, units_per_lot=LOT))
        broker.submit(stop_ticket("fm-1", Side.SELL, "0.50", stop="1.08200"))
        peer.tell("price EURUSD 1.08100")
        await_status(broker, "fm-1", OrderStatus.FILLED)

        with pytest.raises(ReplaceRejected) as refused:
            broker.replace("fm-1", stop_ticket("fm-2", Side.SELL, "0.50", stop="1.08000"))
        assert refused.value.order is not None
        assert refused.value.order.status is OrderStatus.FILLED
        assert sum(e.quantity for e in refused.value.order.executions) == Decimal("0.5")
        assert received(peer, "G") == []

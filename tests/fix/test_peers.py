"""The adapter against QuickFIX's own example programs: ``ordermatch`` (FIX 4.2, a limit order
book) and ``executor`` (FIX 4.4, fills every limit order). Nobody on this team wrote them."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from orchestrator.adapters.brokers.base import ReplaceNotSupported
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.values import Side
from tests.fix.conftest import StartBroker, await_status, session_log, stop_ticket, ticket
from tests.fix.peers import new_comp_id, running_peer

pytestmark = pytest.mark.fix


def test_ordermatch_limit_order_with_no_counterparty_is_accepted_and_works(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours = new_comp_id()
    with running_peer("ordermatch", tmp_path, [ours]) as peer:
        broker = start_broker(peer.client_config(ours))
        order = broker.submit(ticket("om-new-1"))
        assert order.status is OrderStatus.NEW
        assert order.executions == ()
        assert [o.client_order_id for o in broker.open_orders("acct-1")] == ["om-new-1"]


def test_ordermatch_resting_counter_order_partially_fills_then_cancel_ends_cancelled(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours, theirs = new_comp_id(), new_comp_id("CPTY")
    with running_peer("ordermatch", tmp_path, [ours, theirs]) as peer:
        counterparty = start_broker(peer.client_config(theirs))
        resting = counterparty.submit(
            ticket("om-ask-1", Side.SELL, "0.20", "1.08400", account_id="cpty")
        )
        assert resting.status is OrderStatus.NEW
        broker = start_broker(peer.client_config(ours))

        order = broker.submit(ticket("om-part-1", Side.BUY, "0.50", "1.08500"))
        partial = await_status(broker, "om-part-1", OrderStatus.PARTIALLY_FILLED)
        assert [(e.quantity, e.price) for e in partial.executions] == [
            (Decimal("0.2"), Decimal("1.084"))
        ]
        assert order.client_order_id == partial.client_order_id

        cancelled = broker.cancel("om-part-1")
        assert cancelled is not None
        assert cancelled.status is OrderStatus.CANCELLED
        assert sum(e.quantity for e in cancelled.executions) == Decimal("0.2")
        assert broker.open_orders("acct-1") == []
        # The counterparty's order filled completely against ours.
        ask = await_status(counterparty, "om-ask-1", OrderStatus.FILLED)
        assert ask.executions[0].quantity == Decimal("0.2")


def test_ordermatch_order_crossing_a_larger_resting_order_is_filled(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours, theirs = new_comp_id(), new_comp_id("CPTY")
    with running_peer("ordermatch", tmp_path, [ours, theirs]) as peer:
        counterparty = start_broker(peer.client_config(theirs))
        counterparty.submit(ticket("om-ask-2", Side.SELL, "1.00", "1.08450", account_id="cpty"))
        broker = start_broker(peer.client_config(ours))
        broker.submit(ticket("om-fill-1", Side.BUY, "0.37", "1.08500"))
        filled = await_status(broker, "om-fill-1", OrderStatus.FILLED)
        assert [(e.quantity, e.price) for e in filled.executions] == [
            (Decimal("0.37"), Decimal("1.0845"))
        ]


def test_ordermatch_market_order_is_rejected_with_the_peers_text(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours = new_comp_id()
    with running_peer("ordermatch", tmp_path, [ours]) as peer:
        broker = start_broker(peer.client_config(ours))
        rejected = broker.submit(ticket("om-mkt-1", price=None))
        assert rejected.status is OrderStatus.REJECTED
        assert rejected.reject_text  # ordermatch's own words, kept verbatim
        assert broker.status("om-mkt-1") == rejected


def test_ordermatch_order_filled_by_two_counter_orders_has_one_execution_per_fill(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours, theirs = new_comp_id(), new_comp_id("CPTY")
    with running_peer("ordermatch", tmp_path, [ours, theirs]) as peer:
        counterparty = start_broker(peer.client_config(theirs))
        broker = start_broker(peer.client_config(ours))
        broker.submit(ticket("om-two-1", Side.BUY, "0.30", "1.08500"))
        counterparty.submit(ticket("om-two-ask", Side.SELL, "0.10", "1.08500", account_id="c"))
        counterparty.submit(ticket("om-two-ask2", Side.SELL, "0.20", "1.08500", account_id="c"))
        filled = await_status(broker, "om-two-1", OrderStatus.FILLED)
        assert [(e.quantity, e.price) for e in filled.executions] == [
            (Decimal("0.1"), Decimal("1.085")),
            (Decimal("0.2"), Decimal("1.085")),
        ]
        assert len({e.execution_id for e in filled.executions}) == 2


def test_executor_fix44_limit_order_is_filled(tmp_path: Path, start_broker: StartBroker) -> None:
    ours = new_comp_id()
    with running_peer("executor", tmp_path, [ours]) as peer:
        broker = start_broker(peer.client_config(ours, units_per_lot=Decimal(100000)))
        filled = broker.submit(ticket("ex-fill-1", Side.SELL, "0.25", "1.08500"))
        assert filled.status is OrderStatus.FILLED
        assert [(e.quantity, e.price) for e in filled.executions] == [
            (Decimal("0.25"), Decimal("1.085"))
        ]


def test_executor_market_order_is_rejected_by_a_session_reject(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours = new_comp_id()
    with running_peer("executor", tmp_path, [ours]) as peer:
        broker = start_broker(peer.client_config(ours))
        rejected = broker.submit(ticket("ex-mkt-1", price=None))
        assert rejected.status is OrderStatus.REJECTED
        assert rejected.reject_text is not None
        assert "incorrect" in rejected.reject_text.lower()


# -- protective orders and questions about the account -----------------------------------------


def test_ordermatch_take_profit_limit_rests_then_is_cancelled(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours = new_comp_id()
    with running_peer("ordermatch", tmp_path, [ours]) as peer:
        broker = start_broker(peer.client_config(ours))
        take_profit = broker.submit(ticket("om-tp-1", Side.SELL, "0.50", "1.09000"))
        assert take_profit.status is OrderStatus.NEW
        cancelled = broker.cancel("om-tp-1")
        assert cancelled is not None
        assert cancelled.status is OrderStatus.CANCELLED
        assert broker.open_orders("acct-1") == []


def test_ordermatch_stop_order_is_rejected_with_its_text_not_left_hanging(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours = new_comp_id()
    with running_peer("ordermatch", tmp_path, [ours]) as peer:
        broker = start_broker(peer.client_config(ours))
        rejected = broker.submit(stop_ticket("om-stp-1", Side.SELL, "0.50", stop="1.08200"))
        assert rejected.status is OrderStatus.REJECTED
        # ordermatch's own words, verbatim: it reads the (absent) Price of every order before it
        # looks at the OrdType, so a stop fails there, not at "Unsupported Order Type".
        assert rejected.reject_text == "Incorrect data format for value"
        assert "\x0140=3\x01" in session_log(broker)  # sent as OrdType 3 …
        assert "\x0199=1.082\x01" in session_log(broker)  # … with its StopPx


def test_ordermatch_refuses_cancel_replace_so_replace_is_not_supported_and_the_order_stands(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours = new_comp_id()
    with running_peer("ordermatch", tmp_path, [ours]) as peer:
        broker = start_broker(peer.client_config(ours, cancel_replace=True))
        broker.submit(ticket("om-rep-1", Side.SELL, "0.50", "1.09000"))
        with pytest.raises(ReplaceNotSupported, match="cancel_replace: false"):
            broker.replace("om-rep-1", ticket("om-rep-2", Side.SELL, "0.50", "1.09500"))
        assert "\x0135=j\x01" in session_log(broker)  # ordermatch's BusinessMessageReject
        assert broker.status("om-rep-2") is None
        # What the caller does instead: cancel, then submit anew.
        cancelled = broker.cancel("om-rep-1")
        assert cancelled is not None
        assert cancelled.status is OrderStatus.CANCELLED
        assert broker.submit(ticket("om-rep-2", Side.SELL, "0.50", "1.09500")).status is (
            OrderStatus.NEW
        )


def test_connection_configured_without_cancel_replace_sends_no_replace(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours = new_comp_id()
    with running_peer("ordermatch", tmp_path, [ours]) as peer:
        broker = start_broker(peer.client_config(ours, cancel_replace=False))
        broker.submit(ticket("om-cfg-1", Side.SELL, "0.50", "1.09000"))
        with pytest.raises(ReplaceNotSupported):
            broker.replace("om-cfg-1", ticket("om-cfg-2", Side.SELL, "0.50", "1.09500"))
        assert "\x0135=G\x01" not in session_log(broker)
        working = broker.status("om-cfg-1")
        assert working is not None
        assert working.status is OrderStatus.NEW


def test_executor_stop_order_is_rejected_by_a_session_reject(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours = new_comp_id()
    with running_peer("executor", tmp_path, [ours]) as peer:
        broker = start_broker(peer.client_config(ours))
        rejected = broker.submit(stop_ticket("ex-stp-1", Side.SELL, "0.50", stop="1.08200"))
        assert rejected.status is OrderStatus.REJECTED
        assert rejected.reject_text is not None
        assert "incorrect" in rejected.reject_text.lower()


def test_executor_refuses_positions_collateral_and_mass_status_so_each_is_unknown(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours = new_comp_id()
    with running_peer("executor", tmp_path, [ours]) as peer:
        broker = start_broker(peer.client_config(ours, units_per_lot=Decimal(100000)))
        broker.submit(ticket("ex-pos-1", Side.BUY, "0.25", "1.08500"))
        assert broker.positions("acct-1") is None  # not "flat", although it filled
        assert broker.account_state("acct-1") is None
        assert broker.open_orders_at_venue("acct-1") is None
        log = session_log(broker)
        for msg_type in ("AN", "BB", "AF"):  # each refused by a BusinessMessageReject
            assert "\x0135=j\x01" in log
            assert f"\x01372={msg_type}\x01" in log

"""Safety rules of the FIX adapter, against the suite's own acceptor (``tests.fix.venue``) for
what QuickFIX's example programs cannot do: status requests, duplicate ClOrdIDs, and a journal
of every application message that reached the venue."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from orchestrator.adapters.brokers.fix import FixBroker, FixNotConnected, FixSessionInUse, OrderRef
from orchestrator.domain.errors import BrokerUnavailable
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.values import Side
from tests.fix.conftest import StartBroker, await_status, session_log, stop_ticket, ticket
from tests.fix.peers import FixPeer, new_comp_id, running_peer

pytestmark = pytest.mark.fix


def journal(peer: FixPeer) -> list[tuple[str, str, str, str]]:
    """(MsgType, ClOrdID, PossDupFlag, what the venue did) per message that reached it."""
    return [(j["type"], j["cl_ord_id"], j["poss_dup"], j["result"]) for j in peer.journal()]


def test_order_while_session_is_down_is_refused_and_never_reaches_the_venue(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours = new_comp_id()
    with running_peer("venue", tmp_path, [ours]) as peer:
        broker = start_broker(peer.client_config(ours))
        peer.command("kill")  # the venue is gone: the session drops
        assert broker.wait_logged_out(15)

        with pytest.raises(FixNotConnected) as refused:
            broker.submit(ticket("down-1"))
        assert isinstance(refused.value, BrokerUnavailable)  # retried by the activity
        assert broker.status("down-1") is None

        peer.command("start")
        assert broker.wait_logged_on(15)
        broker.submit(ticket("down-1"))  # the retry, same client order id
        await_status(broker, "down-1", OrderStatus.FILLED)
        assert journal(peer) == [("D", "down-1", "N", "accepted")]


def test_order_stored_while_disconnected_is_gap_filled_not_replayed_on_reconnect(
    tmp_path: Path, start_broker: StartBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = new_comp_id()
    with running_peer("venue", tmp_path, [ours]) as peer:
        broker = start_broker(peer.client_config(ours, status_requests=True, ack_timeout_s=1.0))
        peer.command("kill")
        assert broker.wait_logged_out(15)
        # The race the guard cannot close: the session drops between our check and QuickFIX's
        # send. QuickFIX then stores the order (sendToTarget still says True) and would
        # deliver it after the next logon, when the venue asks for the missing sequence number.
        monkeypatch.setattr(broker, "is_logged_on", lambda: True)
        monkeypatch.setattr(broker, "_require_logged_on", lambda: None)
        with pytest.raises(BrokerUnavailable):
            broker.submit(ticket("gap-1"))
        monkeypatch.undo()

        peer.command("start")
        assert broker.wait_logged_on(15)
        # The venue processes in sequence order: once it answers this status request, the
        # stored order's sequence number has been resent or gap-filled.
        assert broker.status("gap-1") is None
        assert ("D", "gap-1") not in [(t, c) for t, c, _, _ in journal(peer)]
        assert "\x0135=4\x01" in session_log(broker)  # SequenceReset …
        assert "\x01123=Y\x01" in session_log(broker)  # … GapFillFlag=Y, in its place

        broker.submit(ticket("gap-1"))  # the activity's retry
        await_status(broker, "gap-1", OrderStatus.FILLED)
        orders = [j for j in journal(peer) if j[0] == "D"]
        assert orders == [("D", "gap-1", "N", "accepted")]


def test_replace_while_down_is_refused_and_one_stored_in_a_disconnect_is_gap_filled(
    tmp_path: Path, start_broker: StartBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = new_comp_id()
    with running_peer("venue", tmp_path, [ours]) as peer:
        broker = start_broker(peer.client_config(ours, status_requests=True, ack_timeout_s=1.0))
        broker.submit(stop_ticket("rg-1", stop="1.08200"))
        peer.command("kill")
        assert broker.wait_logged_out(15)
        with pytest.raises(FixNotConnected):
            broker.replace("rg-1", stop_ticket("rg-2", stop="1.08300"))

        # The race the guard cannot close (as for orders): QuickFIX stores the replace.
        monkeypatch.setattr(broker, "is_logged_on", lambda: True)
        monkeypatch.setattr(broker, "_require_logged_on", lambda: None)
        with pytest.raises(BrokerUnavailable):
            broker.replace("rg-1", stop_ticket("rg-2", stop="1.08300"))
        monkeypatch.undo()

        peer.command("start")
        assert broker.wait_logged_on(15)
        # Answered in sequence, after the stored replace's number was resent or gap-filled.
        assert broker.status("rg-2") is None
        assert [t for t, _, _, _ in journal(peer)] == ["D", "H"]  # no G ever arrived
        assert "\x0135=4\x01" in session_log(broker)
        assert "\x01123=Y\x01" in session_log(broker)


def test_duplicate_client_order_id_is_looked_up_not_reported_rejected(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    first, second = new_comp_id(), new_comp_id()
    with running_peer("venue", tmp_path, [first, second]) as peer:
        before = start_broker(peer.client_config(first, status_requests=True))
        before.submit(ticket("dup-1", Side.SELL, "0.50", "1.08500"))
        await_status(before, "dup-1", OrderStatus.FILLED)

        # A process that does not know the order (a restarted worker) sends it again.
        after = start_broker(peer.client_config(second, status_requests=True))
        again = after.submit(ticket("dup-1", Side.SELL, "0.50", "1.08500"))
        assert again.status is OrderStatus.FILLED
        assert again.reject_text is None
        assert sum(e.quantity for e in again.executions) == Decimal("0.50")
        assert [e.price for e in again.executions] == [Decimal("1.085")]
        assert [j for j in journal(peer) if j[0] == "D"] == [
            ("D", "dup-1", "N", "accepted"),
            ("D", "dup-1", "N", "duplicate"),
        ]


def test_after_restart_order_states_are_recovered_by_status_request(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    first, second = new_comp_id(), new_comp_id()
    with running_peer("venue", tmp_path, [first, second]) as peer:
        before = start_broker(peer.client_config(first, status_requests=True))
        before.submit(ticket("rec-work", symbol="REST"))
        before.submit(ticket("rec-fill", quantity="0.50"))
        await_status(before, "rec-fill", OrderStatus.FILLED)
        before.stop()

        # The ledger knew all three; it had booked half of rec-fill before the crash.
        ledger = {
            "rec-work": OrderRef("rec-work", "acct-1", "REST", Side.BUY, Decimal("0.50")),
            "rec-fill": OrderRef(
                "rec-fill",
                "acct-1",
                "EURUSD",
                Side.BUY,
                Decimal("0.50"),
                booked_quantity=Decimal("0.25"),
                booked_price=Decimal("1.085"),
            ),
            "rec-lost": OrderRef("rec-lost", "acct-1", "EURUSD", Side.BUY, Decimal("0.50")),
        }
        after = start_broker(
            peer.client_config(second, status_requests=True), order_lookup=ledger.get
        )
        working = after.status("rec-work")
        assert working is not None
        assert working.status is OrderStatus.NEW
        filled = after.status("rec-fill")
        assert filled is not None
        assert filled.status is OrderStatus.FILLED
        # Only what the ledger has not booked yet comes back as a new execution.
        assert [(e.quantity, e.price) for e in filled.executions] == [
            (Decimal("0.25"), Decimal("1.085"))
        ]
        assert after.status("rec-lost") is None  # the venue never had it
        assert after.status("rec-never") is None  # not in the ledger: nothing is asked
        assert [(t, c, r) for t, c, _, r in journal(peer) if t == "H"] == [
            ("H", "rec-work", "answered"),
            ("H", "rec-fill", "answered"),
            ("H", "rec-lost", "unknown"),
        ]


def test_second_initiator_for_the_same_session_in_one_process_is_refused(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    ours = new_comp_id()
    with running_peer("venue", tmp_path, [ours]) as peer:
        config = peer.client_config(ours)
        start_broker(config)
        with pytest.raises(FixSessionInUse):
            FixBroker(config).start()

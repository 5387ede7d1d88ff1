"""The paper broker's positions and account state, on both databases: derived from its own
fills and marked at its market's quotes."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import update

from orchestrator.adapters.brokers.base import AccountReading, BrokerPosition, OrderTicket
from orchestrator.adapters.brokers.paper import PaperBroker
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import AccountStateRow
from orchestrator.domain.values import OrderType, Side
from tests.component.conftest import FakeClock
from tests.support import account, book, load

D = Decimal
MARGIN_PER_LOT = D(1085)  # EURUSD at broker alpha (tests.support); a tick of 0.00001 is 1 USD


def order(
    client_order_id: str,
    quantity: str,
    side: Side,
    *,
    reference: str = "1.08500",
    order_type: OrderType = OrderType.MARKET,
    stop: str | None = None,
) -> OrderTicket:
    return OrderTicket(
        client_order_id=client_order_id,
        account_id="acct",
        symbol="EURUSD",
        side=side,
        order_type=order_type,
        quantity=D(quantity),
        limit_price=None,
        reference_price=D(reference),
        stop_price=D(stop) if stop is not None else None,
    )


def paper(db: Database, clock: FakeClock, **behaviour: Any) -> PaperBroker:
    load(db, book(account("acct", equity="50000", paper=behaviour)))
    return PaperBroker(db, clock=clock)


def quote_now(broker: PaperBroker, bid: str, ask: str) -> None:
    broker.market.set_quote("EURUSD", D(bid), D(ask))


def reading(broker: PaperBroker) -> AccountReading:
    found = broker.account_state("acct")
    assert found is not None
    return found


def test_a_long_added_to_and_partly_closed_then_marked_at_the_bid(
    db: Database, clock: FakeClock
) -> None:
    broker = paper(db, clock)
    quote_now(broker, "1.08500", "1.08502")
    broker.submit(order("entry-1", "1.00", Side.BUY, reference="1.08500"))
    broker.submit(order("entry-2", "1.00", Side.BUY, reference="1.08600"))
    clock.advance(ms=1_000)
    quote_now(broker, "1.08650", "1.08652")
    broker.submit(order("exit", "0.50", Side.SELL))  # at the bid: 100 ticks over the average
    clock.advance(ms=1_000)
    quote_now(broker, "1.08700", "1.08702")

    positions = broker.positions("acct")
    state = reading(broker)

    assert positions == [BrokerPosition("EURUSD", Side.BUY, D("1.50"), D("1.08550"))]
    assert state.balance == D("50050")  # 100 ticks × 1 USD × 0.5 lots realized
    assert state.equity == D("50050") + D("225")  # 150 ticks × 1 USD × 1.5 lots, at the bid
    assert state.free_margin == state.equity - MARGIN_PER_LOT * D("1.50")
    assert (state.reported, state.at) == (True, clock.now)


def test_a_short_is_marked_at_the_ask(db: Database, clock: FakeClock) -> None:
    broker = paper(db, clock)
    broker.submit(order("entry", "1.00", Side.SELL, reference="1.08500"))
    quote_now(broker, "1.08400", "1.08410")

    state = reading(broker)

    assert broker.positions("acct") == [
        BrokerPosition("EURUSD", Side.SELL, D("1.00"), D("1.08500"))
    ]
    assert (state.balance, state.equity) == (D("50000"), D("50090"))
    assert state.free_margin == D("50090") - MARGIN_PER_LOT


def test_a_stop_that_closed_the_position_leaves_it_flat_with_the_loss_booked(
    db: Database, clock: FakeClock
) -> None:
    broker = paper(db, clock)
    quote_now(broker, "1.08500", "1.08502")
    broker.submit(order("entry", "1.00", Side.BUY))
    broker.submit(order("stop", "1.00", Side.SELL, order_type=OrderType.STOP, stop="1.08200"))
    broker.market.set_quote(
        "EURUSD", D("1.08150"), D("1.08152"), at=clock.now + timedelta(seconds=1)
    )
    clock.advance(ms=1_000)

    # Nobody read the stop: the readings themselves bring the book up to date.
    positions = broker.positions("acct")
    state = reading(broker)

    assert positions == []
    assert state == AccountReading(
        balance=D("49650"), equity=D("49650"), free_margin=D("49650"), reported=True, at=clock.now
    )


def test_fills_still_to_come_are_not_in_the_position_until_they_are_due(
    db: Database, clock: FakeClock
) -> None:
    broker = paper(db, clock, slices=2, latency_ms=1000)
    broker.submit(order("entry", "1.00", Side.BUY))

    clock.advance(ms=500)
    half = broker.positions("acct")
    clock.advance(ms=500)
    whole = broker.positions("acct")

    assert half == [BrokerPosition("EURUSD", Side.BUY, D("0.50"), D("1.08500"))]
    assert whole == [BrokerPosition("EURUSD", Side.BUY, D("1.00"), D("1.08500"))]


def test_without_a_quote_an_open_position_is_marked_at_its_own_price(
    db: Database, clock: FakeClock
) -> None:
    broker = paper(db, clock)
    broker.submit(order("entry", "2.00", Side.BUY))

    state = reading(broker)

    assert (state.balance, state.equity) == (D("50000"), D("50000"))
    assert state.free_margin == D("50000") - MARGIN_PER_LOT * 2


def test_the_starting_balance_is_the_one_the_account_had_when_the_broker_first_saw_it(
    db: Database, clock: FakeClock
) -> None:
    """Our ledger's state may later carry the broker's own readings: they never feed back."""
    broker = paper(db, clock)
    broker.submit(order("entry", "1.00", Side.BUY))
    with db.transaction() as session:
        session.execute(update(AccountStateRow).values(balance=D("123")))

    assert reading(broker).balance == D("50000")


def test_an_account_with_no_orders_is_flat_at_its_balance(db: Database, clock: FakeClock) -> None:
    broker = paper(db, clock)

    assert broker.positions("acct") == []
    assert reading(broker) == AccountReading(
        balance=D("50000"), equity=D("50000"), free_margin=D("50000"), reported=True, at=clock.now
    )


def test_an_account_the_book_does_not_hold_gets_no_answer(db: Database, clock: FakeClock) -> None:
    broker = paper(db, clock)

    assert broker.positions("nobody") is None
    assert broker.account_state("nobody") is None


def test_many_accounts_read_at_once_answer_as_each_read_alone(
    db: Database, clock: FakeClock
) -> None:
    # The account sync reads a page of accounts at once: the same money, positions and
    # working orders as the calls for one account, and nothing for an account not in the book.
    load(db, book(account("acct", equity="50000"), account("other", equity="20000")))
    broker = PaperBroker(db, clock=clock)
    quote_now(broker, "1.08500", "1.08502")
    broker.submit(order("entry-1", "1.00", Side.BUY, reference="1.08500"))
    broker.submit(order("stop-1", "1.00", Side.SELL, order_type=OrderType.STOP, stop="1.08200"))
    clock.advance(ms=1_000)
    quote_now(broker, "1.08650", "1.08652")

    views = broker.account_views(["acct", "other", "nobody"])

    assert sorted(views) == ["acct", "other"]
    for account_id in ("acct", "other"):
        view = views[account_id]
        assert view.reading == broker.account_state(account_id)
        assert view.positions == broker.positions(account_id)
        assert view.orders == broker.open_orders(account_id)
    assert [o.client_order_id for o in views["acct"].orders or []] == ["stop-1"]
    assert views["acct"].positions == [BrokerPosition("EURUSD", Side.BUY, D("1.00"), D("1.08500"))]
    assert views["other"].positions == [] and views["other"].orders == []

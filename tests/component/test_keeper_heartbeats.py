"""A keeper's activity that makes progress, however slowly, is not timed out as lost: it beats
between its broker steps, not only between positions. Under a loaded ledger or broker one
position's stop and take-profit can take longer than the heartbeat timeout; an attempt that
beat only after each position was then failed and retried, and each retry the same, so the
position's stop stayed written ahead and never reached the broker."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from temporalio import activity
from temporalio.testing import ActivityEnvironment

from activities.positions import PositionActivities
from orchestrator.adapters.brokers.base import BrokerOrder, OrderTicket
from orchestrator.adapters.brokers.paper import PaperBroker
from orchestrator.adapters.db.engine import Database
from orchestrator.config import Settings
from orchestrator.domain.contracts.positions import ProtectionRequest, ProtectionTarget
from orchestrator.domain.values import OrderType, Side
from tests.support import account, book, load

HEARTBEAT_TIMEOUT = timedelta(seconds=0.6)
SLOW_SEND_S = 0.3
"""Each send takes half the heartbeat timeout: a stop and a take-profit together outlast it."""


class SlowBroker(PaperBroker):
    """The paper broker, each send slow, noting each send and heartbeat in one log."""

    def __init__(self, db: Database, log: list[str]) -> None:
        super().__init__(db)
        self.log = log

    def submit(self, ticket: OrderTicket) -> BrokerOrder:
        time.sleep(SLOW_SEND_S)
        self.log.append(f"send {ticket.order_type.value}")
        return super().submit(ticket)


def test_protecting_one_position_beats_between_its_stop_and_its_take_profit(
    db: Database,
) -> None:
    load(db, book(account("acc")))
    log: list[str] = []
    broker = SlowBroker(db, log)
    env = ActivityEnvironment()
    env.info = activity.Info(
        **{
            **env.info.__dict__,
            "heartbeat_timeout": HEARTBEAT_TIMEOUT,
            "started_time": datetime.now(UTC),
            "attempt": 1,
        }
    )
    env.on_heartbeat = lambda *details: log.append("beat")
    request = ProtectionRequest(
        targets=[
            ProtectionTarget(
                signal_id="s1",
                account_id="acc",
                broker="alpha",
                broker_symbol="EURUSD",
                position_side=Side.BUY,
                quantity=Decimal(1),
                stop=Decimal("1.0700"),
                take_profit=Decimal("1.1000"),
                generation=1,
                current_stop=None,
                current_take_profit=None,
            )
        ],
        execution=Settings().execution_settings(),
    )

    [outcome] = env.run(PositionActivities(db, broker).protect, request)

    assert outcome.stop is not None and outcome.take_profit is not None
    stop_sent = log.index(f"send {OrderType.STOP.value}")
    take_profit_sent = log.index(f"send {OrderType.LIMIT.value}")
    assert "beat" in log[stop_sent:take_profit_sent], log

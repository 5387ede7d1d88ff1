"""The account sync's activities: each account of a broker read through the broker interface
(money and positions), its state written with its time and source, reconciled with the ledger,
and checked against its limits; and the FLATTEN a breached limit starts when the account's
limits say so.

``sync_accounts`` is blocking (database and broker), on the thread pool of the worker that
holds the broker's session; ``flatten_account`` is ``async`` (the Temporal client). Both are
safe to retry: a sync writes what it reads (a second run reads again), and a FLATTEN's id is
the workflow's, so it starts once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, time

from temporalio import activity
from temporalio.client import Client

from orchestrator.adapters.brokers.base import Broker
from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.observability import metrics
from orchestrator.config import Settings
from orchestrator.domain import ids
from orchestrator.domain.actions import ActionKind, TradeAction
from orchestrator.domain.contracts.activities import AccountSync
from orchestrator.domain.contracts.sync import (
    BreachAction,
    FlattenRequest,
    FlattenResult,
    SyncRequest,
    SyncResult,
)
from orchestrator.domain.errors import BrokerUnavailable, DuplicateSignal, SystemHalted
from orchestrator.domain.sync import StateSource, net_by_symbol, trading_day_start
from orchestrator.services import actions

log = logging.getLogger(__name__)


class AccountSyncActivities(AccountSync):
    """The sync's activities (see :class:`~orchestrator.domain.contracts.activities.AccountSync`)
    on the ledger, a broker and the Temporal client. ``clock`` is the wall clock the trading
    day is decided from (a test chooses the time)."""

    def __init__(
        self,
        db: Database,
        broker: Broker,
        client: Client,
        settings: Settings,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._db = db
        self._broker = broker
        self._client = client
        self._settings = settings
        self._clock = clock or (lambda: datetime.now(UTC))

    @activity.defn
    def sync_accounts(self, request: SyncRequest) -> SyncResult:
        now = self._clock()
        boundary: time = self._settings.account_day_boundary
        day_start = trading_day_start(now, boundary, self._settings.account_day_timezone)
        with self._db.transaction() as session:
            accounts = repository.sync_accounts(session, request.broker, request.accounts)
        result = SyncResult(
            broker=request.broker, at=now, trading_day_start=day_start if accounts else None
        )
        for account in accounts:
            reading = self._read(account)
            with self._db.transaction() as session:
                outcome = repository.write_sync(
                    session, account, reading, now=now, day_start=day_start
                )
            source = outcome.source.value if outcome.source is not None else "unread"
            metrics.ACCOUNT_SYNC.labels(request.broker, source).inc()
            if outcome.source is StateSource.REPORTED:
                result.reported.append(account.account_id)
            elif outcome.source is StateSource.DERIVED:
                result.derived.append(account.account_id)
            else:
                result.unread.append(account.account_id)
            if outcome.day_reset:
                result.day_reset.append(account.account_id)
            if outcome.released:
                result.released.append(account.account_id)
            for mismatch in outcome.mismatches:
                metrics.RECONCILIATION_MISMATCHES.labels(request.broker, mismatch.kind).inc()
            result.mismatches.extend(outcome.mismatches)
            if outcome.new_breach is not None:
                result.breaches.append(
                    BreachAction(
                        account_id=account.account_id,
                        breach=outcome.new_breach,
                        flatten=outcome.flatten,
                    )
                )
            if activity.in_activity():  # the benchmark runs the body on its own
                activity.heartbeat(account.account_id)
        if result.unread:
            metrics.ACCOUNT_SYNC_UNREAD.labels(request.broker).inc(len(result.unread))
            log.warning(
                "broker %s gave nothing for %d account(s) (no reading, no price to derive "
                "one): their state ages until it answers: %s",
                request.broker,
                len(result.unread),
                ", ".join(result.unread[:20]),
            )
        return result

    def _read(self, account: repository.SyncAccount) -> repository.Reading:
        """What the broker gives for the account: its money, its positions, and (only when it
        gives no money) its quotes of the ledger's symbols. A broker that cannot be reached
        gives nothing for this account; the others are still read."""
        account_id = account.account_id
        try:
            money = self._broker.account_state(account_id)
            held = self._broker.positions(account_id)
            quotes = {}
            if money is None:
                for symbol in sorted({h.broker_symbol for h in account.holdings}):
                    quote = self._broker.quote(account_id, symbol)
                    if quote is not None:
                        quotes[symbol] = (quote.bid, quote.ask)
        except BrokerUnavailable as exc:
            log.warning("broker unavailable reading account %s: %s", account_id, exc)
            return repository.Reading(None, None, None, None, None)
        return repository.Reading(
            balance=money.balance if money else None,
            equity=money.equity if money else None,
            free_margin=money.free_margin if money else None,
            at=money.at if money else None,
            positions=None
            if held is None
            else net_by_symbol((p.symbol, p.side, p.quantity) for p in held),
            average_prices={} if held is None else {p.symbol: p.average_price for p in held},
            quotes=quotes,
        )

    @activity.defn
    async def flatten_account(self, request: FlattenRequest) -> FlattenResult:
        action = TradeAction(
            action_id=request.action_id,
            action=ActionKind.FLATTEN,
            accounts=[request.account_id],
            note=request.reason[:500],
        )
        try:
            handle = await actions.submit_action(self._client, self._db, self._settings, action)
        except DuplicateSignal:  # a retry: the first attempt started it
            return FlattenResult(
                action_id=request.action_id,
                workflow_id=ids.signal_workflow_id(request.action_id),
            )
        except SystemHalted as exc:
            return FlattenResult(action_id=request.action_id, workflow_id=None, refused=str(exc))
        return FlattenResult(action_id=request.action_id, workflow_id=handle.id)

    def all(self) -> list[Callable[..., object]]:
        return [self.sync_accounts, self.flatten_account]

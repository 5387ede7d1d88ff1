"""The account sync's activities: each account of a broker read through the broker interface
(money, positions and working orders), its state written with its time and source, reconciled
with the ledger, and checked against its limits; and the FLATTEN a breached limit starts when
the account's limits say so. Accounts go in pages of ``SYNC_PAGE``: the ledger is read for the
page at once, the broker asked for ``SYNC_CONCURRENCY`` accounts at a time, and the page's
outcomes written in one transaction.

``sync_accounts`` is blocking (database and broker), on the thread pool of the worker that
holds the broker's session; ``flatten_account`` is ``async`` (the Temporal client). Both are
safe to retry: a sync writes what it reads (a second run reads again), and a FLATTEN's id is
the workflow's, so it starts once.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time

from temporalio import activity
from temporalio.client import Client

from orchestrator.adapters.brokers.base import AccountView, AccountViews, Broker, BrokerOrder
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
from orchestrator.domain.sync import (
    BrokerWorking,
    StateSource,
    net_by_symbol,
    trading_day_start,
    written_ahead_grace,
)
from orchestrator.services import actions

log = logging.getLogger(__name__)

SYNC_PAGE = 250
"""Accounts read from the ledger, and written back, per transaction."""
SYNC_CONCURRENCY = 8
"""Accounts asked of the broker at once (each call blocks on the broker: a FIX round trip, a
paper broker's transaction), unless the broker says otherwise (``concurrent_reads``: the paper
broker on SQLite asks one at a time)."""


def working_of(order: BrokerOrder) -> BrokerWorking:
    return BrokerWorking(
        client_order_id=order.client_order_id,
        broker_symbol=order.symbol,
        side=order.side,
        quantity=order.working_quantity,
        filled=order.filled_quantity,
        broker_order_id=order.broker_order_id,
        order_type=order.order_type,
    )


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
            ids = repository.sync_account_ids(session, request.broker, request.accounts)
        result = SyncResult(
            broker=request.broker, at=now, trading_day_start=day_start if ids else None
        )
        counts = [0, 0]
        concurrency = getattr(self._broker, "concurrent_reads", SYNC_CONCURRENCY)
        workers = max(1, min(concurrency, len(ids)))
        with ThreadPoolExecutor(workers, thread_name_prefix="account-sync") as pool:
            for start in range(0, len(ids), SYNC_PAGE):
                page_ids = ids[start : start + SYNC_PAGE]
                for outcome in self._sync_page(
                    request.broker, page_ids, pool, (now, day_start), result
                ):
                    counts[0] += len(outcome.mismatches)
                    counts[1] += len(outcome.order_mismatches)
                if activity.in_activity():  # the benchmark runs the body on its own
                    activity.heartbeat(page_ids[-1])
        result = result.model_copy(
            update={"mismatch_count": counts[0], "order_mismatch_count": counts[1]}
        )
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

    def _sync_page(
        self,
        broker: str,
        ids: list[str],
        pool: ThreadPoolExecutor,
        when: tuple[datetime, datetime],
        result: SyncResult,
    ) -> list[repository.SyncOutcome]:
        """One page of accounts: the ledger read at once, the broker asked per account
        concurrently, and every account's outcome written in one transaction. ``when``: the
        sync's time and the trading-day start it uses."""
        now, day_start = when
        with self._db.transaction() as session:
            accounts = repository.sync_accounts(session, broker, ids)
        grace = written_ahead_grace(self._settings.order_schedule_to_close_s)
        readings = self._read_page(accounts, pool, now - grace)
        with self._db.transaction() as session:
            page = repository.load_page(session, accounts, readings)
            outcomes = [
                repository.write_sync(
                    session,
                    account,
                    reading,
                    now=now,
                    day_start=day_start,
                    page=page,
                    written_ahead_grace=grace,
                )
                for account, reading in zip(accounts, readings, strict=True)
            ]
        for account, outcome in zip(accounts, outcomes, strict=True):
            self._count(broker, account.account_id, outcome, result)
        return outcomes

    @staticmethod
    def _count(
        broker: str, account_id: str, outcome: repository.SyncOutcome, result: SyncResult
    ) -> None:
        source = outcome.source.value if outcome.source is not None else "unread"
        metrics.ACCOUNT_SYNC.labels(broker, source).inc()
        if outcome.source is StateSource.REPORTED:
            result.reported.append(account_id)
        elif outcome.source is StateSource.DERIVED:
            result.derived.append(account_id)
        else:
            result.unread.append(account_id)
        if outcome.day_reset:
            result.day_reset.append(account_id)
        if outcome.released:
            result.released.append(account_id)
        for mismatch in outcome.mismatches:
            metrics.RECONCILIATION_MISMATCHES.labels(broker, mismatch.kind).inc()
        for order in outcome.order_mismatches:
            metrics.RECONCILIATION_MISMATCHES.labels(broker, f"ORDER_{order.kind}").inc()
        result.add_mismatches(outcome.mismatches, outcome.order_mismatches)
        if outcome.new_breach is not None:
            result.breaches.append(
                BreachAction(
                    account_id=account_id, breach=outcome.new_breach, flatten=outcome.flatten
                )
            )

    def _read_page(
        self,
        accounts: list[repository.SyncAccount],
        pool: ThreadPoolExecutor,
        written_before: datetime,
    ) -> list[repository.Reading]:
        """The broker's answers for a page of accounts: at once where the broker can answer
        for many (:class:`AccountViews`: its class's own method, so that a wrapper delegating
        other calls is asked call by call), else per account, several at a time."""
        if not (
            isinstance(self._broker, AccountViews) and hasattr(type(self._broker), "account_views")
        ):
            readings = []
            read = functools.partial(self._read, written_before=written_before)
            for account, reading in zip(accounts, pool.map(read, accounts), strict=True):
                readings.append(reading)
                if activity.in_activity():  # a slow broker must not outlast the heartbeat
                    activity.heartbeat(account.account_id)
            return readings
        try:
            views = self._broker.account_views([a.account_id for a in accounts])
        except BrokerUnavailable as exc:
            log.warning("broker unavailable reading %d accounts: %s", len(accounts), exc)
            views = {}
        nothing = AccountView(reading=None, positions=None, orders=None)
        return [self._reading(a, views.get(a.account_id, nothing)) for a in accounts]

    def _read(
        self, account: repository.SyncAccount, *, written_before: datetime
    ) -> repository.Reading:
        """What the broker gives for one account: its money, its positions, its working
        orders. A broker that cannot be reached gives nothing for this account; the others
        are still read."""
        account_id = account.account_id
        try:
            view = AccountView(
                reading=self._broker.account_state(account_id),
                positions=self._broker.positions(account_id),
                orders=self._working_orders(account, written_before),
            )
        except BrokerUnavailable as exc:
            log.warning("broker unavailable reading account %s: %s", account_id, exc)
            return repository.Reading(None, None, None, None, None)
        return self._reading(account, view)

    def _reading(self, account: repository.SyncAccount, view: AccountView) -> repository.Reading:
        """The reading of the broker's view, with (only when it gives no money) its quotes of
        the ledger's symbols to derive the money from."""
        money, held, working = view.reading, view.positions, view.orders
        quotes = {}
        if money is None:
            try:
                for symbol in sorted({h.broker_symbol for h in account.holdings}):
                    quote = self._broker.quote(account.account_id, symbol)
                    if quote is not None:
                        quotes[symbol] = (quote.bid, quote.ask)
            except BrokerUnavailable as exc:
                log.warning("no quotes for account %s: %s", account.account_id, exc)
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
            orders=None if working is None else [working_of(o) for o in working],
        )

    def _working_orders(
        self, account: repository.SyncAccount, written_before: datetime
    ) -> list[BrokerOrder] | None:
        """The broker's working orders of the account; a broker that cannot be reached for
        them leaves them unknown (its money and positions still count)."""
        try:
            return self._broker.working_orders(
                account.account_id, account.known_orders(written_before)
            )
        except BrokerUnavailable as exc:
            log.warning("orders of %s unknown: %s", account.account_id, exc)
            return None

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

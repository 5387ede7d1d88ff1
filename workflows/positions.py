"""``PositionsWorkflow``: the one writer of the positions a signal's legs opened
(``signal-{id}/positions``, or ``signal-{id}/batch-{n}/positions`` for a batch's legs).

Started by the workflow that runs the legs at the first fill, with ``ABANDON``: it outlives the
signal's execution for as long as any of its positions is open (weeks, through continue-as-new).
Its loop, one step at a time, so each position has exactly one writer (a long module: the
loop and the steps it takes stay together; what an action does is in ``position_actions``):

    entry fills (signals from the legs) ─┐
                                         ├─► positions in memory ─► protect: stop and
    news of protective orders ───────────┘     take-profit for exactly the open quantity
    (a check, on a durable timer)              (placed, replaced, cancelled) ─► record in the
                                               ledger (positions, closing fills, account state)

One-cancels-other is ours (FIX 4.2/4.4 have no contingency orders): when one side fills, fully
or partly, the other is reduced to what is left open, or cancelled. A stop the broker refuses
closes the position at market, or leaves it UNPROTECTED, as configured.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from typing import TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orchestrator.domain import ids, positions
    from orchestrator.domain.actions import AccountOutcome, ActionKind
    from orchestrator.domain.contracts.activities import Positions
    from orchestrator.domain.contracts.positions import (
        BrokerFill,
        ClosedAtBroker,
        CloseOrder,
        CloseOutcome,
        CloseRequest,
        EntriesDone,
        EntryFillsRequest,
        KeeperAction,
        OrderNews,
        PositionFill,
        PositionFills,
        PositionsInput,
        PositionsRecord,
        PositionsResult,
        ProtectionOutcome,
        ProtectionRequest,
        ProtectionTarget,
        WatchedOrder,
        WatchRequest,
    )
    from orchestrator.domain.orders import OrderStatus
    from orchestrator.domain.positions import (
        CloseCause,
        Position,
        PositionStatus,
        ProtectionKind,
        RefusedStop,
    )
    from workflows.position_actions import PositionActions
    from workflows.steps import DATABASE_RETRY, DATABASE_STEP, ORDER_RETRY

CHECK_FIRST = timedelta(seconds=1)
"""After a change, the protective orders are checked again this soon."""
CHECK_MOST = timedelta(seconds=30)
"""Between checks with nothing new, the wait doubles up to this."""
BROKER_STEP = timedelta(minutes=2)
"""start-to-close of one protect, check or close activity (retried after)."""
HISTORY_BUDGET = 8_000
"""Events after which the keeper continues as new (Temporal warns at 10,240)."""


Routed = TypeVar("Routed", ProtectionTarget, WatchedOrder, CloseOrder)
Result = TypeVar("Result")


@workflow.defn
class PositionsWorkflow(PositionActions):
    """Keeps a signal's positions protected at the broker until each is closed."""

    def __init__(self) -> None:
        self._positions: dict[str, Position] = {}
        self._fills: deque[PositionFill] = deque()
        self._entries_done = False
        self._legs_done = False
        self._scope: list[str] | None = None
        self._seen: set[str] = set()
        self._actions: deque[KeeperAction] = deque()
        self._actions_done: dict[str, list[AccountOutcome]] = {}
        self._at_broker: deque[ClosedAtBroker] = deque()

    @workflow.signal
    def position_filled(self, fill: PositionFill) -> None:
        """A leg's entries filled (more of) a position."""
        self._fills.append(fill)

    @workflow.signal
    def positions_filled(self, fills: PositionFills) -> None:
        """Legs' entries filled (more of) positions: every fill of one workflow task of the
        workflow that runs the legs, in the order its legs told them."""
        self._fills.extend(fills.fills)

    @workflow.signal
    def entries_done(self, done: EntriesDone) -> None:
        """No more entry fills will come (the keeper checks the ledger's once more)."""
        self._legs_done = True
        self._scope = done.scope

    @workflow.signal
    def closed_at_broker(self, news: ClosedAtBroker) -> None:
        """The broker no longer holds (some of) a position: closed by an order we did not
        send (an operator accepted the broker's view). Applied by the keeper's loop."""
        self._at_broker.append(news)

    @workflow.query
    def positions(self) -> list[Position]:
        return list(self._positions.values())

    @workflow.update
    async def act(self, action: KeeperAction) -> list[AccountOutcome]:
        """A MODIFY or CLOSE of these positions (all, or the accounts listed), carried out by
        the keeper's own loop, one step at a time like everything else it does; answers what it
        did to each account. An action it has carried out already is answered again, not
        repeated. A CLOSE waits for the entries to be done (a close of a signal still executing
        comes after its entries were stopped), so that what filled is closed too."""
        if action.action_id not in self._actions_done and all(
            queued.action_id != action.action_id for queued in self._actions
        ):
            self._actions.append(action)
        await workflow.wait_condition(lambda: action.action_id in self._actions_done)
        return self._actions_done[action.action_id]

    @act.validator
    def _act_is_one_it_can_do(self, action: KeeperAction) -> None:
        if action.kind not in (ActionKind.MODIFY, ActionKind.CLOSE):
            raise ValueError(f"a keeper modifies or closes positions, not {action.kind}")
        if action.kind is ActionKind.MODIFY and action.stop is None and action.take_profit is None:
            raise ValueError("MODIFY needs a new stop, a new take-profit, or both")

    @workflow.run
    async def run(self, request: PositionsInput) -> PositionsResult:
        self._request = request
        self._positions = {p.account_id: p for p in request.positions}
        self._legs_done = self._legs_done or request.legs_done
        if request.scope is not None:
            self._scope = request.scope
        self._entries_done = request.entries_done
        self._seen = set(request.seen_executions)
        self._actions_done = dict(request.actions_done)
        self._at_broker.extendleft(reversed(request.at_broker))
        wait = CHECK_FIRST
        while not self._finished():
            if self._legs_done and not self._entries_done:
                await self._entries_from_ledger()
            changed = self._take_fills()
            if self._take_at_broker():
                changed = True
            if self._action_due():
                await self._act(self._actions.popleft())
                changed = True
            if not all(positions.protection_settled(p) for p in self._positions.values()):
                await self._protect()
                changed = True
            if changed:
                await self._record()
                wait = CHECK_FIRST
            if self._working_orders():
                if await self._check():
                    await self._record()
                    wait = CHECK_FIRST
                    continue
                with contextlib.suppress(TimeoutError):  # the builtin: nothing new came
                    await workflow.wait_condition(
                        self._news, timeout=wait, timeout_summary="next check"
                    )
                wait = min(wait * 2, CHECK_MOST)
            else:
                await workflow.wait_condition(lambda: self._news() or self._finished())
            if workflow.info().get_current_history_length() > HISTORY_BUDGET and not (
                self._actions
            ):
                await self._continue_as_new()
        await self._record()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return PositionsResult(
            signal_id=request.signal.signal_id,
            positions=list(self._positions.values()),
            realized_pnl=sum((p.realized_pnl for p in self._positions.values()), Decimal(0)),
        )

    # ----------------------------------------------------------------------------------------

    def _heartbeat(self) -> timedelta:
        """A protect, check or close activity beats per position or order (and while it follows
        a closing order), as an entry's does: one lost with its worker is retried after the
        entries' heartbeat timeout, not after ``BROKER_STEP``."""
        return timedelta(seconds=self._request.execution.order_heartbeat_s)

    def _news(self) -> bool:
        return (
            bool(self._fills)
            or bool(self._at_broker)
            or (self._legs_done and not self._entries_done)
            or self._action_due()
        )

    def _action_due(self) -> bool:
        """The next action can be carried out now: a MODIFY at once, a CLOSE once no more
        entry fills will come."""
        return bool(self._actions) and (
            self._entries_done or self._actions[0].kind is ActionKind.MODIFY
        )

    async def _entries_from_ledger(self) -> None:
        """Once the legs are done: what the ledger says their entries filled, per account,
        taken as the last word (a leg cancelled after a partial fill, a completion cut short:
        no filled quantity is left without its position)."""
        signal = self._request.signal
        self._fills.extend(
            await workflow.execute_activity_method(
                Positions.entry_fills,
                EntryFillsRequest(signal_id=signal.signal_id, account_ids=self._scope),
                start_to_close_timeout=DATABASE_STEP,
                retry_policy=DATABASE_RETRY,
                summary="entry fills in the ledger",
            )
        )
        self._entries_done = True

    def _finished(self) -> bool:
        return (
            self._entries_done
            and not self._fills
            and not self._actions
            and not self._at_broker
            and all(
                p.status is PositionStatus.CLOSED and positions.protection_settled(p)
                for p in self._positions.values()
            )
        )

    def _working_orders(self) -> list[WatchedOrder]:
        watched = []
        for position in self._positions.values():
            for order in (position.stop_order, position.take_profit_order):
                if order is not None and order.working:
                    watched.append(
                        WatchedOrder(
                            signal_id=position.signal_id,
                            account_id=position.account_id,
                            broker=position.broker,
                            client_order_id=order.client_order_id,
                            kind=order.kind,
                            filled=order.filled,
                        )
                    )
        return watched

    def _take_fills(self) -> bool:
        """Apply the entry fills the legs sent: open or grow positions."""
        signal = self._request.signal
        changed = False
        while self._fills:
            fill = self._fills.popleft()
            known = self._positions.get(fill.account_id)
            if known is None:
                levels = self._levels_for(fill.account_id)
                position = positions.opened(
                    signal.signal_id,
                    signal.side,
                    levels.stop or signal.stop,
                    levels.take_profit or signal.take_profit,
                    account_id=fill.account_id,
                    broker=fill.broker,
                    broker_symbol=fill.broker_symbol,
                    contract=fill.contract,
                    entry_quantity=fill.entry_quantity,
                    average_entry=fill.average_entry,
                )
            else:
                position = positions.grown(known, fill.entry_quantity, fill.average_entry)
            if position != known:
                self._positions[fill.account_id] = position
                changed = True
        return changed

    def _take_at_broker(self) -> bool:
        """Apply the closes at the broker that were reported: each books a closing fill, cause
        ``CLOSED_AT_BROKER``, for what the broker no longer holds (at the price given, else at
        the average entry: P&L 0, the note says the price is unknown). Once, by its id."""
        changed = False
        while self._at_broker:
            news = self._at_broker.popleft()
            position = self._positions.get(news.account_id)
            if news.execution_id in self._seen or position is None:
                continue
            self._seen.add(news.execution_id)
            if position.open_quantity <= 0:
                continue
            price = news.price or position.average_entry
            position, fill = positions.reduced(
                position,
                execution_id=news.execution_id,
                client_order_id=news.execution_id,
                quantity=news.quantity,
                price=price,
                cause=CloseCause.CLOSED_AT_BROKER,
                at=workflow.now(),
            )
            if fill is None:
                continue
            text = f"closed at the broker ({news.operator}: {news.reason})"
            if news.price is None:
                text += "; price unknown: booked at the average entry, P&L 0"
            note = f"{position.note}; " if position.note else ""
            self._positions[news.account_id] = position.model_copy(update={"note": f"{note}{text}"})
            changed = True
        return changed

    async def _protect(self) -> None:
        """One activity makes every unsettled position's protective orders right (a close at
        the broker reported meanwhile applied first: the orders cover what is left)."""
        self._take_at_broker()
        targets = []
        for position in self._positions.values():
            if positions.protection_settled(position):
                continue
            generation = position.generation + 1
            self._positions[position.account_id] = position.model_copy(
                update={"generation": generation}
            )
            unprotected = position.status is PositionStatus.UNPROTECTED
            targets.append(
                ProtectionTarget(
                    signal_id=position.signal_id,
                    account_id=position.account_id,
                    broker=position.broker,
                    broker_symbol=position.broker_symbol,
                    position_side=position.side,
                    quantity=position.to_cover,
                    closing=position.open_quantity - position.to_cover,
                    stop=position.stop,
                    take_profit=position.take_profit,
                    generation=generation,
                    current_stop=position.stop_order,
                    current_take_profit=position.take_profit_order,
                    skip_stop=unprotected,
                )
            )
        execution = self._request.execution
        outcomes = await self._per_broker(
            targets,
            lambda group, queue: workflow.execute_activity_method(
                Positions.protect,
                ProtectionRequest(targets=group, execution=execution),
                task_queue=queue,
                start_to_close_timeout=BROKER_STEP,
                heartbeat_timeout=self._heartbeat(),
                retry_policy=ORDER_RETRY,
                summary=f"protect {len(group)} position(s)",
            ),
        )
        refused = [o.account_id for o in outcomes if self._apply_protection(o)]
        if refused:
            await self._close(refused, CloseCause.STOP_REFUSED)
            for account_id in refused:
                self._unprotected_if_open(account_id)

    def _apply_protection(self, outcome: ProtectionOutcome) -> bool:
        """Take the protect activity's word for a position's orders; whether its stop was
        refused (and the position is not UNPROTECTED already)."""
        for news in outcome.superseded:  # fills a replaced order got first still count
            self._apply_news(news)
        position = self._positions[outcome.account_id]
        position = position.model_copy(
            update={"stop_order": outcome.stop, "take_profit_order": outcome.take_profit}
        )
        target = outcome.take_profit
        if target is not None and target.status is OrderStatus.REJECTED:
            text = target.reject_text or "rejected without a reason"
            note = f"{position.note}; " if position.note else ""
            position = position.model_copy(
                update={"note": f"{note}take-profit refused by the broker: {text}"}
            )
        refused = outcome.stop_refused is not None and position.open_quantity > 0
        if refused and self._request.execution.on_refused_stop is RefusedStop.KEEP:
            position = position.model_copy(
                update={
                    "status": PositionStatus.UNPROTECTED,
                    "note": f"stop refused by the broker: {outcome.stop_refused}",
                }
            )
        elif refused:
            position = position.model_copy(
                update={"note": f"stop refused by the broker: {outcome.stop_refused}"}
            )
        self._positions[position.account_id] = position
        return refused and self._request.execution.on_refused_stop is RefusedStop.CLOSE

    async def _check(self) -> bool:
        """Ask the broker about every working protective order; apply what filled or ended."""
        news = await self._per_broker(
            self._working_orders(),
            lambda group, queue: workflow.execute_activity_method(
                Positions.check_orders,
                WatchRequest(orders=group, wait_s=0),
                task_queue=queue,
                start_to_close_timeout=BROKER_STEP,
                retry_policy=DATABASE_RETRY,
                heartbeat_timeout=self._heartbeat(),
                summary=f"check {len(group)} protective order(s)",
            ),
        )
        for item in news:
            self._apply_news(item)
        return bool(news)

    def _apply_news(self, news: OrderNews) -> None:
        position = self._positions[news.account_id]
        position = self._apply_executions(
            position, news.kind, news.client_order_id, news.executions
        )
        for field in ("stop_order", "take_profit_order"):
            order = getattr(position, field)
            if order is not None and order.client_order_id == news.client_order_id:
                filled = sum((e.quantity for e in news.executions), Decimal(0))
                position = position.model_copy(
                    update={
                        field: order.model_copy(
                            update={
                                "status": news.status,
                                "filled": filled,
                                "reject_text": news.reject_text,
                            }
                        )
                    }
                )
        if news.kind is ProtectionKind.STOP and news.status is OrderStatus.REJECTED:
            position = position.model_copy(
                update={"note": f"stop refused by the broker: {news.reject_text}"}
            )
        self._positions[position.account_id] = position

    def _apply_executions(
        self,
        position: Position,
        kind: ProtectionKind,
        client_order_id: str,
        executions: list[BrokerFill],
    ) -> Position:
        cause = CloseCause.STOP_HIT if kind is ProtectionKind.STOP else CloseCause.TAKE_PROFIT_HIT
        for execution in executions:
            if execution.execution_id in self._seen:
                continue
            self._seen.add(execution.execution_id)
            position, _ = positions.reduced(
                position,
                execution_id=execution.execution_id,
                client_order_id=client_order_id,
                quantity=execution.quantity,
                price=execution.price,
                cause=cause,
                at=execution.at,
            )
        return position

    async def _close(
        self,
        accounts: list[str],
        cause: CloseCause,
        quantities: dict[str, Decimal] | None = None,
    ) -> None:
        """Close these positions at market: ``quantities`` of each, else whatever is open. The
        orders go out in groups of at most the orders-in-flight limit, as entries do."""
        orders = []
        for account_id in accounts:
            position = self._positions[account_id]
            quantity = min(
                position.open_quantity, (quantities or {}).get(account_id, position.open_quantity)
            )
            if quantity <= 0:
                continue
            number = position.closing_orders + 1
            self._positions[account_id] = position.model_copy(update={"closing_orders": number})
            orders.append(
                CloseOrder(
                    signal_id=position.signal_id,
                    account_id=account_id,
                    broker=position.broker,
                    broker_symbol=position.broker_symbol,
                    side=positions.closing_side(position.side),
                    quantity=quantity,
                    number=number,
                    client_order_id=ids.closing_client_order_id(
                        position.signal_id, account_id, number
                    ),
                    reference_price=position.stop,
                    cause=cause,
                )
            )
        execution = self._request.execution
        causes = {o.client_order_id: o.cause for o in orders}
        limit = execution.max_orders_in_flight or len(orders) or 1
        for start in range(0, len(orders), limit):
            outcomes = await self._per_broker(
                orders[start : start + limit],
                lambda group, queue: workflow.execute_activity_method(
                    Positions.close_positions,
                    CloseRequest(orders=group, execution=execution),
                    task_queue=queue,
                    start_to_close_timeout=BROKER_STEP,
                    heartbeat_timeout=self._heartbeat(),
                    retry_policy=ORDER_RETRY,
                    summary=f"close {len(group)} position(s) at market",
                ),
            )
            for outcome in outcomes:
                self._apply_close(outcome, causes[outcome.client_order_id])

    def _apply_close(self, outcome: CloseOutcome, cause: CloseCause) -> None:
        position = self._positions[outcome.account_id]
        if outcome.status is OrderStatus.REJECTED:
            text = outcome.reject_text or "rejected without a reason"
            note = f"{position.note}; " if position.note else ""
            position = position.model_copy(
                update={"note": f"{note}the close at market was rejected: {text}"}
            )
        for execution in outcome.executions:
            if execution.execution_id in self._seen:
                continue
            self._seen.add(execution.execution_id)
            position, _ = positions.reduced(
                position,
                execution_id=execution.execution_id,
                client_order_id=outcome.client_order_id,
                quantity=execution.quantity,
                price=execution.price,
                cause=cause,
                at=execution.at,
            )
        self._positions[position.account_id] = position

    def _unprotected_if_open(self, account_id: str) -> None:
        """A position whose stop was refused and that closing at market did not flatten
        either stays open UNPROTECTED, with both reasons: it is never re-sent the same stop."""
        position = self._positions[account_id]
        if position.open_quantity <= 0 or position.status is PositionStatus.UNPROTECTED:
            return
        self._positions[account_id] = position.model_copy(
            update={"status": PositionStatus.UNPROTECTED}
        )

    async def _per_broker(
        self,
        items: list[Routed],
        call: Callable[[list[Routed], str | None], Awaitable[list[Result]]],
    ) -> list[Result]:
        """One activity per broker among ``items``, on the task queue of the worker that holds
        that broker's session (run side by side), their results in the brokers' name order."""
        groups: dict[str, list[Routed]] = {}
        for item in items:
            groups.setdefault(item.broker, []).append(item)
        execution = self._request.execution
        results = await asyncio.gather(
            *(call(groups[b], execution.broker_queue(b)) for b in sorted(groups))
        )
        return [r for result in results for r in result]

    async def _record(self) -> None:
        await workflow.execute_activity_method(
            Positions.record_positions,
            PositionsRecord(
                keeper_workflow_id=workflow.info().workflow_id,
                positions=list(self._positions.values()),
            ),
            start_to_close_timeout=DATABASE_STEP,
            retry_policy=DATABASE_RETRY,
            summary="record positions",
        )

    async def _continue_as_new(self) -> None:
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._take_fills()
        workflow.continue_as_new(
            self._request.model_copy(
                update={
                    "positions": list(self._positions.values()),
                    "legs_done": self._legs_done,
                    "entries_done": self._entries_done,
                    "scope": self._scope,
                    "seen_executions": sorted(self._seen),
                    "actions_done": self._actions_done,
                    "at_broker": list(self._at_broker),
                }
            )
        )

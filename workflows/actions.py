"""``TradeActionWorkflow``: an action on positions (MODIFY, CLOSE, FLATTEN), a signal of its own
with its own id (``signal-{action_id}``: the same id twice starts nothing new).

    targets (ledger) ─► refused? (unknown signal; a stop or take-profit through the market)
        │
        ├─ CLOSE of a signal still executing: cancel it (waiting legs CANCELLED, working
        │  entries cancelled) and wait for its report, which names its keepers
        │
        └─► hand the action to each keeper (its ``act`` update) ─► what each account got

The keepers do the work, each for the positions it alone writes: replace the protective orders
(MODIFY), or reduce them and close at market (CLOSE). The keeper's history records the action
too, so the trade's own audit trail shows it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orchestrator.domain import search_attributes as sa
    from orchestrator.domain.actions import (
        AccountOutcome,
        ActionKind,
        ActionReport,
        ActionStatus,
        TradeAction,
        stop_through_market,
        take_profit_through_market,
    )
    from orchestrator.domain.contracts.actions import (
        ActionInput,
        DeliverRequest,
        HeldPosition,
        KeeperTarget,
        QuoteAnswer,
        QuoteRequest,
        StopEntriesRequest,
    )
    from orchestrator.domain.contracts.activities import Actions, Execution, Positions
    from orchestrator.domain.contracts.positions import KeeperAction
    from orchestrator.domain.report import SignalStatus
    from orchestrator.domain.settings import ServiceSettings
    from workflows.steps import DATABASE_RETRY, DATABASE_STEP, ORDER_RETRY

ACTION_STEP = timedelta(hours=1)
"""start-to-close of waiting on a signal's end or a keeper's answer (heartbeats find a lost
worker sooner). An exit never expires: the retries go on until it is done."""
HEARTBEAT = timedelta(seconds=30)


@workflow.defn
class TradeActionWorkflow:
    """Carries one action to the keepers of the positions it is for."""

    @workflow.run
    async def run(self, request: ActionInput) -> ActionReport:
        action = request.action
        workflow.upsert_search_attributes(
            [sa.SIGNAL_STATUS.value_set(SignalStatus.EXECUTING.value)]
        )
        settings = await workflow.execute_activity_method(
            Execution.service_settings,
            start_to_close_timeout=DATABASE_STEP,
            retry_policy=DATABASE_RETRY,
            summary="the worker's settings",
        )
        targets = await workflow.execute_activity_method(
            Actions.action_targets,
            request,
            start_to_close_timeout=DATABASE_STEP,
            retry_policy=DATABASE_RETRY,
            summary=f"positions {action.action} is for",
        )
        refusal = targets.refusal
        if refusal is None and action.action is ActionKind.MODIFY:
            refusal = await self._through_the_market(action, targets.positions, settings)
        if refusal is not None:
            return self._finish(action, ActionStatus.REFUSED, refusal, [])
        keepers = targets.keepers
        if action.action is ActionKind.CLOSE and targets.signal_running:
            assert action.signal_id is not None
            stopped = await workflow.execute_activity_method(
                Actions.stop_entries,
                StopEntriesRequest(signal_id=action.signal_id, action_id=action.action_id),
                start_to_close_timeout=ACTION_STEP,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=ORDER_RETRY,
                summary=f"stop the entries of {action.signal_id}",
            )
            known = {k.keeper_workflow_id for k in keepers}
            keepers = keepers + [
                KeeperTarget(
                    keeper_workflow_id=keeper,
                    signal_id=action.signal_id,
                    accounts=action.accounts,
                )
                for keeper in stopped.keepers
                if keeper not in known
            ]
        outcomes = await asyncio.gather(*(self._deliver(action, k) for k in keepers))
        lines = sorted(
            (line for outcome in outcomes for line in outcome),
            key=lambda line: (line.signal_id, line.account_id),
        )
        held = {(p.signal_id, p.account_id) for p in targets.positions}
        message = (
            f"{len(lines)} position(s)" if lines or held else "no open position: nothing to do"
        )
        return self._finish(action, ActionStatus.COMPLETED, message, lines)

    async def _deliver(self, action: TradeAction, target: KeeperTarget) -> list[AccountOutcome]:
        return await workflow.execute_activity_method(
            Actions.deliver,
            DeliverRequest(
                keeper_workflow_id=target.keeper_workflow_id,
                action=KeeperAction(
                    action_id=action.action_id,
                    kind=ActionKind.MODIFY
                    if action.action is ActionKind.MODIFY
                    else ActionKind.CLOSE,
                    accounts=target.accounts,
                    stop=action.stop,
                    take_profit=action.take_profit,
                    fraction=action.fraction,
                ),
            ),
            start_to_close_timeout=ACTION_STEP,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=ORDER_RETRY,
            summary=f"{action.action} by {target.keeper_workflow_id}",
        )

    async def _through_the_market(
        self, action: TradeAction, held: list[HeldPosition], settings: ServiceSettings
    ) -> str | None:
        """Why the MODIFY cannot be done: a new stop or take-profit already through the
        current price of a position it is for (where the broker gives one)."""
        groups: dict[str, list[HeldPosition]] = {}
        for position in held:
            groups.setdefault(position.broker, []).append(position)
        answers: list[QuoteAnswer] = []
        for broker in sorted(groups):
            answers += await workflow.execute_activity_method(
                Positions.quotes,
                QuoteRequest(positions=groups[broker]),
                task_queue=settings.execution.broker_queue(broker),
                start_to_close_timeout=DATABASE_STEP,
                retry_policy=DATABASE_RETRY,
                summary=f"quotes at {broker}",
            )
        quotes = {a.account_id: a for a in answers}
        problems = []
        for position in held:
            quote = quotes.get(position.account_id)
            if quote is None:
                continue
            prices = f"bid {quote.bid}, ask {quote.ask}"
            if action.stop is not None and stop_through_market(
                position.side, action.stop, quote.bid, quote.ask
            ):
                problems.append(
                    f"{position.account_id}: the stop {action.stop} is through the market "
                    f"({position.broker_symbol} {prices}) for a {position.side} position"
                )
            if action.take_profit is not None and take_profit_through_market(
                position.side, action.take_profit, quote.bid, quote.ask
            ):
                problems.append(
                    f"{position.account_id}: the take-profit {action.take_profit} is already "
                    f"reached ({position.broker_symbol} {prices}) for a {position.side} position"
                )
        if not problems:
            return None
        return "refused, nothing changed: " + "; ".join(problems)

    def _finish(
        self,
        action: TradeAction,
        status: ActionStatus,
        message: str,
        lines: list[AccountOutcome],
    ) -> ActionReport:
        workflow.upsert_search_attributes([sa.SIGNAL_STATUS.value_set(status.value)])
        return ActionReport(
            action_id=action.action_id,
            action=action.action,
            signal_id=action.signal_id,
            status=status,
            message=message,
            accounts=lines,
        )

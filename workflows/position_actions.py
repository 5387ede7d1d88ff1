"""The position keeper's actions: a MODIFY (new stop, take-profit) or a CLOSE (all or a share)
of the positions it holds, sent by an action's own workflow through the keeper's ``act``
update and carried out by the keeper's loop (``workflows/positions.py``), so each position
keeps exactly one writer."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orchestrator.domain import positions
    from orchestrator.domain.actions import AccountOutcome, ActionKind, close_quantity
    from orchestrator.domain.contracts.positions import KeeperAction, Levels, PositionsInput
    from orchestrator.domain.orders import average_price
    from orchestrator.domain.positions import CloseCause, Position, PositionStatus
    from orchestrator.domain.values import plain


class PositionActions:
    """What ``PositionsWorkflow`` does with an action; its state and steps are the keeper's."""

    _request: PositionsInput
    _positions: dict[str, Position]
    _actions_done: dict[str, list[AccountOutcome]]

    async def _protect(self) -> None:
        raise NotImplementedError

    async def _record(self) -> None:
        raise NotImplementedError

    async def _close(
        self, accounts: list[str], cause: CloseCause, quantities: dict[str, Decimal] | None = None
    ) -> None:
        raise NotImplementedError

    def _levels_for(self, account_id: str) -> Levels:
        """The stop and take-profit a position opened now takes: a MODIFY's, else the signal's
        (``None`` fields)."""
        request = self._request
        own = request.account_levels.get(account_id, Levels())
        return Levels(
            stop=own.stop or request.levels.stop,
            take_profit=own.take_profit or request.levels.take_profit,
        )

    def _targets(self, action: KeeperAction) -> tuple[list[Position], list[AccountOutcome]]:
        """The open positions the action is for, and a line for each account it lists that
        has none here."""
        signal_id = self._request.signal.signal_id
        chosen = [
            p
            for p in self._positions.values()
            if p.open_quantity > 0 and (action.accounts is None or p.account_id in action.accounts)
        ]
        held = {p.account_id for p in chosen}
        missing = [
            AccountOutcome(
                signal_id=signal_id,
                account_id=account_id,
                done="nothing: no open position",
                refused="no open position of this signal on the account",
            )
            for account_id in action.accounts or []
            if account_id not in held
        ]
        return chosen, missing

    async def _act(self, action: KeeperAction) -> None:
        chosen, outcomes = self._targets(action)
        if action.kind is ActionKind.MODIFY:
            outcomes += await self._modify(action, chosen)
        else:
            outcomes += await self._close_by_action(action, chosen)
        await self._record()
        self._actions_done[action.action_id] = sorted(outcomes, key=lambda o: o.account_id)

    async def _modify(self, action: KeeperAction, chosen: list[Position]) -> list[AccountOutcome]:
        """New levels for the chosen positions (and for positions opened later), then their
        protective orders replaced at once: cancel/replace where the broker can, so a position
        that had a stop keeps one throughout."""
        new = Levels(stop=action.stop, take_profit=action.take_profit)
        request = self._request
        if action.accounts is None:
            levels = Levels(
                stop=new.stop or request.levels.stop,
                take_profit=new.take_profit or request.levels.take_profit,
            )
            self._request = request.model_copy(update={"levels": levels})
        else:
            account_levels = dict(request.account_levels)
            for account_id in action.accounts:
                own = account_levels.get(account_id, Levels())
                account_levels[account_id] = Levels(
                    stop=new.stop or own.stop, take_profit=new.take_profit or own.take_profit
                )
            self._request = request.model_copy(update={"account_levels": account_levels})
        before = {p.account_id: p for p in chosen}
        for position in chosen:
            update: dict[str, object] = {}
            if action.stop is not None:
                update["stop"] = action.stop
                if position.status is PositionStatus.UNPROTECTED:
                    update["status"] = PositionStatus.OPEN  # the new stop is tried
            if action.take_profit is not None:
                update["take_profit"] = action.take_profit
            self._positions[position.account_id] = position.model_copy(update=update)
        if not all(positions.protection_settled(p) for p in self._positions.values()):
            await self._protect()
        outcomes = []
        for account_id, old in sorted(before.items()):
            now = self._positions[account_id]
            changes = []
            if action.stop is not None:
                changes.append(f"stop {plain(old.stop)} → {plain(now.stop)}")
            if action.take_profit is not None:
                was = "none" if old.take_profit is None else plain(old.take_profit)
                changes.append(f"take-profit {was} → {plain(action.take_profit)}")
            refused = now.note if now.note and now.note != old.note else None
            outcomes.append(
                AccountOutcome(
                    signal_id=now.signal_id,
                    account_id=account_id,
                    done=", ".join(changes) + (f" ({refused})" if refused else ""),
                    open_quantity=now.open_quantity,
                    closed=old.open_quantity - now.open_quantity,
                    realized_pnl=now.realized_pnl - old.realized_pnl,
                    refused=refused,
                )
            )
        return outcomes

    def _exit_waves(self, accounts: list[str]) -> list[tuple[list[str], timedelta]]:
        """The accounts' closes in the order they go, each group with the wait before it: all
        at once by default; with exit delay bounds, each account's delay drawn from the
        workflow's seeded random (the same on replay), grouped by delay."""
        execution = self._request.execution
        low, high = execution.exit_delay_min_ms, execution.exit_delay_max_ms
        if high <= 0:
            return [(accounts, timedelta(0))]
        rng = workflow.random()
        delays = {a: low + int(rng.random() * (high - low)) for a in accounts}
        waves: list[tuple[list[str], timedelta]] = []
        elapsed = 0
        for delay in sorted(set(delays.values())):
            group = [a for a in accounts if delays[a] == delay]
            waves.append((group, timedelta(milliseconds=delay - elapsed)))
            elapsed = delay
        return waves

    async def _close_by_action(
        self, action: KeeperAction, chosen: list[Position]
    ) -> list[AccountOutcome]:
        """Each chosen position's share closed at market: its protective orders first reduced
        to what the close leaves (cancelled for a whole close), then the closing order."""
        quantities = {
            p.account_id: close_quantity(p.open_quantity, action.fraction, p.contract)
            for p in chosen
        }
        before = {p.account_id: p for p in chosen}
        for account_id, quantity in quantities.items():
            position = self._positions[account_id]
            self._positions[account_id] = position.model_copy(update={"closing": quantity})
        if not all(positions.protection_settled(p) for p in self._positions.values()):
            await self._protect()  # a fill found on the way shrinks what is closed below
        closing = {a: min(q, self._positions[a].open_quantity) for a, q in quantities.items()}
        for accounts, wait in self._exit_waves(sorted(closing)):
            if wait > timedelta(0):
                await workflow.sleep(wait, summary=f"exit delay of {len(accounts)} close(s)")
            await self._close(accounts, CloseCause.CLOSED_BY_SIGNAL, closing)
        for account_id in quantities:
            position = self._positions[account_id]
            self._positions[account_id] = position.model_copy(update={"closing": Decimal(0)})
        outcomes = []
        for account_id, old in sorted(before.items()):
            now = self._positions[account_id]
            mine = [
                c for c in now.closes[len(old.closes) :] if c.cause is CloseCause.CLOSED_BY_SIGNAL
            ]
            closed = sum((c.quantity for c in mine), Decimal(0))
            if quantities[account_id] <= 0:
                done = (
                    f"nothing: {plain(action.fraction)} of {plain(old.open_quantity)} is below "
                    f"the minimum lot {plain(old.contract.min_lot)}"
                )
            elif closed > 0:
                price = average_price((c.quantity, c.price) for c in mine) or Decimal(0)
                pnl = sum((c.pnl for c in mine), Decimal(0))
                done = (
                    f"closed {plain(closed)} of {plain(old.open_quantity)} "
                    f"@ {plain(price)} (P&L {pnl:.2f})"
                )
            else:
                done = f"not closed: {now.note or 'the close did not fill'}"
            outcomes.append(
                AccountOutcome(
                    signal_id=now.signal_id,
                    account_id=account_id,
                    done=done,
                    closed=closed,
                    open_quantity=now.open_quantity,
                    realized_pnl=sum((c.pnl for c in mine), Decimal(0)),
                    refused=None if closed > 0 or quantities[account_id] <= 0 else done,
                )
            )
        return outcomes

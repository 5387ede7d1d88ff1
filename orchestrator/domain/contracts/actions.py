"""What crosses between an action's workflow (``workflows/actions.py``: MODIFY, CLOSE, FLATTEN)
and the activities that find its positions, stop its signal's entries, and hand it to the
positions' keepers."""

from __future__ import annotations

from decimal import Decimal

from orchestrator.domain.actions import TradeAction
from orchestrator.domain.contracts.positions import KeeperAction
from orchestrator.domain.values import Identifier, Model, PositiveDecimal, Side, SymbolName


class ActionInput(Model):
    action: TradeAction


class HeldPosition(Model):
    """An open position an action is for, as the ledger has it."""

    signal_id: Identifier
    account_id: Identifier
    broker: Identifier
    broker_symbol: SymbolName
    side: Side
    open_quantity: Decimal


class KeeperTarget(Model):
    """One keeper to hand the action to, and the accounts of its positions it is for
    (``None``: all of them)."""

    keeper_workflow_id: str
    signal_id: Identifier
    accounts: list[Identifier] | None = None


class ActionTargets(Model):
    """What an action acts on: the keepers of the positions, the open positions the ledger
    knows of them, and whether the target signal is still executing. ``refusal``: it cannot be
    done at all (nothing was changed)."""

    keepers: list[KeeperTarget] = []
    positions: list[HeldPosition] = []
    signal_running: bool = False
    refusal: str | None = None


class QuoteRequest(Model):
    positions: list[HeldPosition]


class QuoteAnswer(Model):
    account_id: Identifier
    broker_symbol: SymbolName
    bid: PositiveDecimal
    ask: PositiveDecimal


class StopEntriesRequest(Model):
    """Cancel a signal that is still executing (its waiting legs and working entries), on
    behalf of an action that closes it, and wait for its report."""

    signal_id: Identifier
    action_id: Identifier


class StopEntriesResult(Model):
    keepers: list[str]
    """The keepers its legs (and its batches' legs) started: each holds what did fill."""
    legs_stopped: int = 0
    orders_cancelled: int = 0


class DeliverRequest(Model):
    keeper_workflow_id: str
    action: KeeperAction

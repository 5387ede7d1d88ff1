"""What crosses between the position keeper (``workflows/positions.py``), the legs that open
positions, and the activities that place, follow and record protective and closing orders."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import Field

from orchestrator.domain.actions import AccountOutcome, ActionKind
from orchestrator.domain.orders import OrderStatus
from orchestrator.domain.positions import (
    CloseCause,
    Contract,
    Position,
    ProtectionKind,
    ProtectiveOrder,
)
from orchestrator.domain.settings import ExecutionSettings
from orchestrator.domain.signal import Signal
from orchestrator.domain.values import (
    Fraction,
    Identifier,
    Model,
    NonNegativeDecimal,
    PositiveDecimal,
    Side,
    SymbolName,
)


class PositionFill(Model):
    """A leg's entries filled (more of) a position: sent by the leg's workflow to the keeper.
    Totals, not increments, so a repeat changes nothing."""

    account_id: Identifier
    broker: Identifier
    broker_symbol: SymbolName
    contract: Contract
    entry_quantity: PositiveDecimal
    """Everything the account's entries in this signal filled so far."""
    average_entry: PositiveDecimal
    final: bool = False
    """No more entry fills will come for this account (its leg, completion or reroute ended)."""


class PositionFills(Model):
    """The fills of every leg that ended in one workflow task of the workflow running them,
    sent to the keeper in one signal (``positions_filled``) instead of one each."""

    fills: Annotated[list[PositionFill], Field(min_length=1)]


class EntriesDone(Model):
    """The signal (or batch) workflow's legs have all ended: no more positions will open."""

    accounts: list[Identifier]
    """Accounts that filled, every one of which the keeper has been told of."""
    scope: list[Identifier] | None = None
    """The accounts whose entries are this keeper's: a batch's legs' accounts and the reroute
    targets they filled (each batch has its own keeper, and a position exactly one writer);
    ``None``: every account of the signal (a signal run without batches)."""


class Levels(Model):
    """A stop and take-profit that a MODIFY set: positions opened after it take them."""

    stop: PositiveDecimal | None = None
    take_profit: PositiveDecimal | None = None


class KeeperAction(Model):
    """A MODIFY or CLOSE, as the action's workflow hands it to a keeper (``act`` update)."""

    action_id: Identifier
    kind: ActionKind
    accounts: list[Identifier] | None = None
    """Only these accounts' positions (default: every position the keeper holds)."""
    stop: PositiveDecimal | None = None
    take_profit: PositiveDecimal | None = None
    fraction: Fraction = Decimal(1)


class ClosedAtBroker(Model):
    """A close we did not order: the broker no longer holds ``quantity`` of the account's
    position (an operator accepted its view, ``reconcile --accept``). Sent to the position's
    keeper (its ``closed_at_broker`` signal), which books the closing fill, cause
    ``CLOSED_AT_BROKER``, and makes the protective orders right for what is left."""

    execution_id: str
    """The closing fill's id (derived from the reconciliation, the same on a repeat)."""
    account_id: Identifier
    quantity: PositiveDecimal
    price: PositiveDecimal | None = None
    """The price it closed at, when known; else the fill is booked at the average entry
    (P&L 0) and the position's note says the price is unknown."""
    operator: str
    reason: str


class PositionsInput(Model):
    """The keeper's input; carried whole across continue-as-new."""

    signal: Signal
    execution: ExecutionSettings
    positions: list[Position] = []
    legs_done: bool = False
    """The legs said they are done (the ledger's entry fills not yet read)."""
    entries_done: bool = False
    """No more entry fills will come: the ledger's were read after the legs were done."""
    scope: list[Identifier] | None = None
    """Whose entry fills the ledger's sweep reads (``EntriesDone.scope``)."""
    seen_executions: list[str] = []
    """Executions of protective and closing orders already applied: a report seen twice (a
    retried watch, a resent FIX report) changes nothing."""
    levels: Levels = Levels()
    """A MODIFY of every account: the levels positions opened later take."""
    account_levels: dict[str, Levels] = {}
    """A MODIFY of listed accounts: the levels their positions opened later take."""
    actions_done: dict[str, list[AccountOutcome]] = {}
    """Actions carried out, by id, with what each did: the same action again does nothing more
    and answers the same."""
    at_broker: list[ClosedAtBroker] = []
    """Closes at the broker received and not yet applied (carried across continue-as-new)."""


class PositionsResult(Model):
    """The keeper's result once every position it held is closed."""

    signal_id: Identifier
    positions: list[Position]
    realized_pnl: Decimal


# --------------------------------------------------------------------------------------------
# Activities


class ProtectionTarget(Model):
    """What one position's protective orders must be at the broker: a stop (and take-profit)
    for exactly ``quantity``, under client order ids of ``generation``; or nothing (quantity 0).
    The orders it has now are cancelled, or replaced where the broker can."""

    signal_id: Identifier
    account_id: Identifier
    broker: Identifier
    broker_symbol: SymbolName
    position_side: Side
    quantity: NonNegativeDecimal
    stop: PositiveDecimal
    take_profit: PositiveDecimal | None
    generation: int
    current_stop: ProtectiveOrder | None
    current_take_profit: ProtectiveOrder | None
    skip_stop: bool = False
    """The position is UNPROTECTED (its stop was refused, and the setting keeps it open): no
    stop is placed again; its take-profit is kept right."""
    closing: NonNegativeDecimal = Decimal(0)
    """Of the open quantity, what a signal's close is about to take off: not covered (the
    protective orders are reduced first, so they never exceed what the close leaves)."""


class ProtectionOutcome(Model):
    account_id: Identifier
    stop: ProtectiveOrder | None
    take_profit: ProtectiveOrder | None
    stop_refused: str | None = None
    """The broker's text, verbatim, when it refused the stop."""
    superseded: list[OrderNews] = []
    """The orders replaced or cancelled, as the broker left them, and the new ones that filled
    as they were placed, each with every execution (a fill that came first counts)."""


class ProtectionRequest(Model):
    targets: list[ProtectionTarget]
    execution: ExecutionSettings


class WatchedOrder(Model):
    signal_id: Identifier
    account_id: Identifier
    broker: Identifier
    client_order_id: str
    kind: ProtectionKind
    filled: NonNegativeDecimal
    """What the keeper knows it filled: a report with more is news."""


class WatchRequest(Model):
    orders: list[WatchedOrder]
    wait_s: int
    """Return after this long with no news (the keeper then looks again)."""


class BrokerFill(Model):
    execution_id: str
    quantity: PositiveDecimal
    price: PositiveDecimal
    at: datetime


class OrderNews(Model):
    """What changed for one watched order: its status and every execution it has."""

    account_id: Identifier
    client_order_id: str
    kind: ProtectionKind
    status: OrderStatus
    executions: list[BrokerFill]
    reject_text: str | None = None


class CloseOrder(Model):
    """A market order that reduces a position: never denied for budget, margin or positions."""

    signal_id: Identifier
    account_id: Identifier
    broker: Identifier
    broker_symbol: SymbolName
    side: Side
    """The closing side (opposite the position's)."""
    quantity: PositiveDecimal
    number: Annotated[int, Field(ge=1)]
    """The position's n-th closing order (``{signal}:{account}:C{n}``)."""
    client_order_id: str
    reference_price: PositiveDecimal
    cause: CloseCause


class CloseRequest(Model):
    orders: list[CloseOrder]
    execution: ExecutionSettings


class CloseOutcome(Model):
    account_id: Identifier
    client_order_id: str
    status: OrderStatus
    executions: list[BrokerFill]
    reject_text: str | None = None


class EntryFillsRequest(Model):
    signal_id: Identifier
    account_ids: list[Identifier] | None = None
    """Only these accounts' entry fills (a batch keeper's scope); ``None``: all of them."""


class PositionsRecord(Model):
    """The positions as the keeper holds them now, for the ledger (the positions table, their
    closing fills, and what closing does to each account's state)."""

    keeper_workflow_id: str
    positions: list[Position]


ProtectionOutcome.model_rebuild()

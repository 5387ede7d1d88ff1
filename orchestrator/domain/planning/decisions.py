"""What a plan decides, with why: legs with their size and delay rationale, and denials."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from orchestrator.domain.values import DenialReason, Identifier, Model, PositiveDecimal, SymbolName


class SizeRationale(Model):
    """Every factor that shaped one leg's size, in the order they were applied."""

    equity: Decimal
    risk_per_trade: Decimal
    risk_amount: Decimal
    """equity × risk_per_trade, account currency."""
    per_lot_risk: Decimal
    """|entry − stop| / tick_size × tick_value, account currency per lot."""
    base_lots: Decimal
    drawdown: Decimal
    drawdown_factor: Decimal
    correlated_accounts: int
    """Accounts of this account's correlated group that were eligible for this signal before
    sizing (itself included). Members later denied on size still count: it errs small."""
    correlation_factor: Decimal
    variance_factor: Decimal
    """The size variance drawn (1 on a reroute target: it replaces an order already sized)."""
    target_lots: Decimal
    budget_cap_lots: Decimal
    margin_cap_lots: Decimal
    max_lots: Decimal
    carried_risk: Decimal | None = None
    """On a reroute target: the failed order's risk at the stop still to move on (the reroute
    fraction of it, less what earlier targets took), in this account's currency."""
    carried_cap_lots: Decimal | None = None
    """The lots that carry ``carried_risk`` through this account's contract."""
    capped_lots: Decimal
    binding: str
    """Which of target / budget / margin / max_lots / carried_risk decided the size before
    rounding."""
    final_lots: Decimal


class DelayRationale(Model):
    delay_ms: int
    group: str | None
    group_size: int
    effective_gap_ms: int
    """The gap kept from the previous account of the same group (0 when alone)."""


class LegOrder(Model):
    """What executing one leg needs: a batch child gets its legs in this form, the rationale
    staying in the plan (the signal's history re-derives it)."""

    sequence: int
    """Position in execution order, from 1."""
    account_id: Identifier
    broker: Identifier
    broker_symbol: SymbolName
    quantity: PositiveDecimal
    """Lots, a multiple of the lot step within [min lot, max lot]."""
    client_order_id: str
    delay_ms: int
    tick_size: PositiveDecimal
    """The contract's tick, to express slippage in ticks."""
    tick_value: PositiveDecimal
    """Account-currency value of one tick for one lot: to value the position it opens."""
    min_lot: PositiveDecimal
    lot_step: PositiveDecimal
    reroute_on_pause: bool = False
    risk_amount: Decimal
    """Risk the order commits if stopped out: quantity × per-lot risk."""
    margin: Decimal


class PlannedLeg(LegOrder):
    """A leg of the plan, with why it has this size and this delay."""

    size: SizeRationale
    delay: DelayRationale

    def slim(self) -> LegOrder:
        """This leg without its rationale, as batch children get it."""
        return LegOrder.model_validate(self.model_dump(exclude={"size", "delay"}))


class Denial(Model):
    account_id: Identifier
    reason: DenialReason
    detail: str
    size: SizeRationale | None = None
    """For a denial on size (below the min lot once capped): every factor and the cap that
    bound, as a leg's rationale has them."""


class Plan(Model):
    signal_id: Identifier
    plan_version: int
    seed: int
    planned_at: datetime
    legs: list[PlannedLeg]
    denials: list[Denial]
    reserve: list[Identifier]
    """Accounts eligible at planning time but not given a leg, in order: reroute candidates."""
    groups: dict[str, list[Identifier]] = {}
    """Correlated groups among the eligible accounts: group id → its members, each sized down
    by 1/√k and spaced by the correlated gap."""

"""The paper broker's behaviour model: how it treats an account's orders (the book's ``paper:``)."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from orchestrator.domain.values import Fraction, Model


class PaperFill(StrEnum):
    FULL = "full"
    PARTIAL = "partial"
    REJECT = "reject"


class PaperBehaviour(Model):
    """How the embedded paper broker treats this account's orders."""

    fill: PaperFill = PaperFill.FULL
    partial_ratio: Fraction = Decimal("0.5")
    """With ``fill: partial``: the share of each order that fills; the rest expires."""
    partial_orders: Annotated[int, Field(ge=1)] | None = None
    """With ``fill: partial``: only the account's first N orders fill partly, later ones fully
    (``None``: every order)."""
    stall_after: Annotated[int, Field(ge=0)] | None = None
    """Orders after the account's first N stay working, unfilled, until cancelled: a market
    whose liquidity has gone."""
    slices: Annotated[int, Field(ge=1, le=20)] = 1
    """Executions each fill arrives in."""
    reject_text: str = "Order rejected by broker"
    """With ``fill: reject``: the broker's rejection text, kept verbatim in reports."""
    latency_ms: Annotated[int, Field(ge=0, le=60_000)] = 0
    """Time from submission to the last execution."""
    stop_refusal: str | None = None
    """With a text: every STOP order is refused with it, verbatim (a venue without stop orders,
    or one whose minimum stop distance the stop is inside)."""
    resting_fill_ratio: Fraction = Decimal(1)
    """The share of a resting order (stop, take-profit) that fills when a quote reaches it
    (floored to the lot step; at least one step): the rest keeps working and needs a later
    quote through its price. Below 1: a thin market."""
    slippage_ticks: Annotated[int, Field(ge=0, le=1000)] = 0
    """Adverse ticks from the reference price on market orders that open or add to a position
    (one that reduces it fills at the paper market's quote when the symbol has one)."""

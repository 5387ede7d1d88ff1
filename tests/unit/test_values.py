"""The plain decimal: the one way a decimal is written in texts, tables, JSON and FIX fields."""

from __future__ import annotations

from decimal import Decimal

from orchestrator.domain.positions import Contract, realized_pnl
from orchestrator.domain.values import Side, plain


def test_a_decimal_is_written_without_exponent_or_trailing_zeros() -> None:
    assert plain(Decimal("150.000")) == "150"
    assert plain(Decimal("1.5E+2")) == "150"
    assert plain(Decimal("0.0400")) == "0.04"
    assert plain(Decimal("-12.50")) == "-12.5"


def test_any_zero_is_written_0() -> None:
    contract = Contract(
        tick_size=Decimal("0.00001"),
        tick_value=Decimal("1"),
        lot_step=Decimal("0.01"),
        min_lot=Decimal("0.01"),
    )
    nothing_on_a_short = realized_pnl(
        Side.SELL, Decimal("1.08500"), Decimal("1.08500"), Decimal("1"), contract
    )
    assert nothing_on_a_short.is_signed()  # the arithmetic's negative zero
    assert [plain(z) for z in (nothing_on_a_short, Decimal("0E-10"), Decimal(0))] == ["0"] * 3

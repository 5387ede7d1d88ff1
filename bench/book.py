"""The benchmarks' book: one broker, one symbol, accounts alike (equity 50,000, every one
eligible). Shared by ``bench.overhead`` and ``bench.correlation_timing``."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from orchestrator.adapters.book_file import AccountRecord, AccountState, Book
from orchestrator.domain.book import AccountLimits, SymbolSpec

BROKER = "bench"
SYMBOL = "EURUSD"

SPEC = SymbolSpec(
    broker=BROKER,
    symbol=SYMBOL,
    tick_size=Decimal("0.00001"),
    tick_value=Decimal(1),
    contract_size=Decimal(100000),
    min_lot=Decimal("0.01"),
    lot_step=Decimal("0.01"),
    max_lot=Decimal(50),
    margin_per_lot=Decimal(1085),
)


def bench_account(account_id: str, *, generous: bool = False) -> AccountRecord:
    """Active, no drawdown, budget and margin for a ~1.7-lot leg many times over. ``generous``:
    limits no number of signals in a throughput run reaches (same equity, so the same size)."""
    equity = Decimal(50000)
    many = Decimal(10) ** 9
    return AccountRecord(
        id=account_id,
        broker=BROKER,
        currency="USD",
        limits=AccountLimits(
            risk_per_trade=Decimal("0.01"),
            daily_loss_budget=many if generous else Decimal(5000),
            max_drawdown=Decimal("0.10"),
            max_open_positions=1_000_000 if generous else 10,
            max_lots=Decimal(20),
        ),
        state=AccountState(
            balance=equity,
            equity=equity,
            peak_equity=equity,
            free_margin=many if generous else equity,
        ),
    )


def bench_book(account_ids: Sequence[str], *, generous: bool = False) -> Book:
    return Book(
        symbols=[SPEC],
        accounts=[bench_account(a, generous=generous) for a in account_ids],
        returns=[],
    )

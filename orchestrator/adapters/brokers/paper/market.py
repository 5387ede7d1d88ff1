"""The paper broker's market: a deterministic price path (bid and ask) per symbol.

The path lives in the database (``paper_quotes``): each quote holds from its time until the
symbol's next one. Three ways write it: a quote set now (how tests drive the price), a CSV file
of quotes, and a seeded random walk (the same seed always gives the same path). The paper broker
reads it to trigger resting orders, to price closing market orders and to mark positions
(docs/paper-broker.md).
"""

from __future__ import annotations

import csv
import io
import random
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from orchestrator.adapters.brokers.base import Quote
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import PaperQuoteRow
from orchestrator.adapters.files import read_text
from orchestrator.domain.errors import ValidationFailed
from orchestrator.domain.values import SYMBOL_PATTERN

CSV_RELATIVE = ("symbol", "offset_s", "bid", "ask")
"""Columns of a CSV whose times are seconds after a start time."""
CSV_ABSOLUTE = ("symbol", "at", "bid", "ask")
"""Columns of a CSV whose times are absolute (ISO 8601 with a timezone)."""

_MAX_PROBLEMS = 20
_ROWS_PER_STATEMENT = 500
"""Quotes per insert statement: well inside SQLite's limit on bound parameters."""


class PaperMarket:
    """Writes and reads the paper market's quotes. ``clock`` is "now" (the paper broker's
    clock, so a test's fake clock moves both)."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] | None = None) -> None:
        self._db = db
        self._clock = clock or (lambda: datetime.now(UTC))

    def set_quote(
        self, symbol: str, bid: Decimal, ask: Decimal, at: datetime | None = None
    ) -> Quote:
        """The symbol's price from ``at`` (default: now) on; replaces a quote at that time."""
        quote = Quote(bid=bid, ask=ask, at=at or self._clock())
        self.write(symbol, [quote])
        return quote

    def write(self, symbol: str, quotes: Iterable[Quote]) -> int:
        """Write quotes of one symbol (replacing any at the same times), all or nothing.
        :class:`ValidationFailed` names every bad one. Returns how many were written."""
        return self._write([(symbol, quote) for quote in quotes], source=f"quotes of {symbol}")

    def load_csv(self, path: Path, *, start: datetime | None = None) -> int:
        """Write the quotes of a CSV file (docs/paper-broker.md), all or nothing.

        The header is ``symbol,offset_s,bid,ask`` (seconds after ``start``, default now) or
        ``symbol,at,bid,ask`` (ISO 8601 times with a timezone). :class:`ValidationFailed`
        names the file and each bad line. Returns how many quotes were written."""
        quotes = parse_quotes_csv(read_text(path), str(path), start or self._clock())
        return self._write(quotes, source=str(path))

    def walk(
        self,
        symbol: str,
        *,
        start_bid: Decimal,
        spread: Decimal,
        tick: Decimal,
        steps: int,
        step_s: float,
        seed: int,
        start: datetime | None = None,
        max_ticks: int = 1,
    ) -> list[Quote]:
        """Write a seeded random walk of ``steps`` quotes and return them (see
        :func:`random_walk`): the same arguments always write the same path."""
        path = random_walk(
            start_bid=start_bid,
            spread=spread,
            tick=tick,
            steps=steps,
            step_s=step_s,
            seed=seed,
            start=start or self._clock(),
            max_ticks=max_ticks,
        )
        self.write(symbol, path)
        return path

    def quote_at(self, symbol: str, at: datetime | None = None) -> Quote | None:
        """The quote in force at ``at`` (default: now): the latest at or before it; ``None``
        when the symbol has none by then."""
        with self._db.transaction() as session:
            return latest_quote(session, symbol, at or self._clock())

    def quotes_between(self, symbol: str, start: datetime, end: datetime) -> list[Quote]:
        """Every quote of the symbol from ``start`` to ``end`` (both inclusive), in time
        order."""
        with self._db.transaction() as session:
            rows = session.scalars(
                select(PaperQuoteRow)
                .where(
                    PaperQuoteRow.symbol == symbol,
                    PaperQuoteRow.at >= start,
                    PaperQuoteRow.at <= end,
                )
                .order_by(PaperQuoteRow.at)
            )
            return [_quote(row) for row in rows]

    def _write(self, quotes: list[tuple[str, Quote]], *, source: str) -> int:
        problems = [
            (f"{symbol} at {quote.at.isoformat() if quote.at.tzinfo else quote.at}", problem)
            for symbol, quote in quotes
            for problem in quote_problems(symbol, quote)
        ]
        if problems:
            raise ValidationFailed(source, problems[:_MAX_PROBLEMS])
        with self._db.transaction() as session:
            write_quotes(session, quotes)
        return len(quotes)


def quote_problems(symbol: str, quote: Quote) -> list[str]:
    """What is wrong with a quote: a symbol the broker interface cannot carry, a price that
    is not a positive finite decimal, an ask below the bid, a time without a timezone."""
    problems = []
    if re.fullmatch(SYMBOL_PATTERN, symbol) is None:
        problems.append(f"symbol {symbol!r} is not a symbol name")
    for name, price in (("bid", quote.bid), ("ask", quote.ask)):
        if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
            problems.append(f"{name} must be a positive decimal, got {price!r}")
    if not problems and quote.ask < quote.bid:
        problems.append(f"ask {quote.ask} is below bid {quote.bid}")
    if quote.at.tzinfo is None:
        problems.append("the time must carry a timezone")
    return problems


def write_quotes(session: Session, quotes: list[tuple[str, Quote]]) -> None:
    """Insert quotes, replacing any of the same symbol and time."""
    insert_for = (
        postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    )
    for first in range(0, len(quotes), _ROWS_PER_STATEMENT):
        chunk = quotes[first : first + _ROWS_PER_STATEMENT]
        values: list[dict[str, Any]] = [
            {"symbol": symbol, "at": q.at, "bid": q.bid, "ask": q.ask} for symbol, q in chunk
        ]
        statement = insert_for(PaperQuoteRow).values(values)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["symbol", "at"],
                set_={"bid": statement.excluded.bid, "ask": statement.excluded.ask},
            )
        )


def latest_quote(session: Session, symbol: str, at: datetime) -> Quote | None:
    """The symbol's quote in force at ``at``: the latest at or before it."""
    row = session.scalar(
        select(PaperQuoteRow)
        .where(PaperQuoteRow.symbol == symbol, PaperQuoteRow.at <= at)
        .order_by(PaperQuoteRow.at.desc())
        .limit(1)
    )
    return None if row is None else _quote(row)


def quotes_from(session: Session, symbol: str, since: datetime, until: datetime) -> Iterator[Quote]:
    """The symbol's quotes from ``since`` to ``until`` (both inclusive), in time order, read a
    page at a time (a caller that stops at the first quote it needs reads no further)."""
    after_page = PaperQuoteRow.at >= since
    while True:
        rows = session.scalars(
            select(PaperQuoteRow)
            .where(PaperQuoteRow.symbol == symbol, after_page, PaperQuoteRow.at <= until)
            .order_by(PaperQuoteRow.at)
            .limit(_ROWS_PER_STATEMENT)
        ).all()
        for row in rows:
            yield _quote(row)
        if len(rows) < _ROWS_PER_STATEMENT:
            return
        after_page = PaperQuoteRow.at > rows[-1].at


def random_walk(
    *,
    start_bid: Decimal,
    spread: Decimal,
    tick: Decimal,
    steps: int,
    step_s: float,
    seed: int,
    start: datetime,
    max_ticks: int = 1,
) -> list[Quote]:
    """A seeded random walk of ``steps`` quotes, ``step_s`` seconds apart from ``start``.

    The first quote's bid is ``start_bid``; each later bid moves a whole number of ticks,
    drawn uniformly from ``-max_ticks..max_ticks`` (more than one tick: gaps), and never falls
    below one tick. Every ask is its bid plus ``spread``. Draws come only from
    ``random.Random(seed).random()``, whose sequence Python keeps the same across versions, so
    a seed names one path for good.
    """
    problems = [
        (name, message)
        for name, bad, message in (
            ("start_bid", not start_bid.is_finite() or start_bid <= 0, "must be positive"),
            ("spread", not spread.is_finite() or spread < 0, "must not be negative"),
            ("tick", not tick.is_finite() or tick <= 0, "must be positive"),
            ("steps", steps < 1, "must be at least 1"),
            ("step_s", not step_s > 0, "must be positive"),
            ("max_ticks", max_ticks < 1, "must be at least 1"),
            ("start", start.tzinfo is None, "must carry a timezone"),
        )
        if bad
    ]
    if problems:
        raise ValidationFailed("random walk", problems)
    rng = random.Random(seed)
    step = timedelta(seconds=step_s)
    bid = start_bid
    path = [Quote(bid=bid, ask=bid + spread, at=start)]
    for i in range(1, steps):
        move = int(rng.random() * (2 * max_ticks + 1)) - max_ticks
        bid = max(bid + move * tick, tick)
        path.append(Quote(bid=bid, ask=bid + spread, at=start + step * i))
    return path


def parse_quotes_csv(text: str, source: str, start: datetime) -> list[tuple[str, Quote]]:
    """The quotes of a CSV text (header ``symbol,offset_s,bid,ask`` or ``symbol,at,bid,ask``);
    :class:`ValidationFailed` names each bad line (the first 20)."""
    with io.StringIO(text, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = tuple(name.strip() for name in reader.fieldnames or ())
        if sorted(columns) not in (sorted(CSV_RELATIVE), sorted(CSV_ABSOLUTE)):
            raise ValidationFailed(
                source,
                [
                    (
                        "header",
                        f"expected columns {','.join(CSV_RELATIVE)} or {','.join(CSV_ABSOLUTE)}, "
                        f"got {','.join(columns) or 'none'}",
                    )
                ],
            )
        reader.fieldnames = list(columns)
        relative = "offset_s" in columns
        quotes: list[tuple[str, Quote]] = []
        problems: list[tuple[str, str]] = []
        for line, row in enumerate(reader, start=2):
            try:
                symbol = (row["symbol"] or "").strip()
                at = _offset(row["offset_s"], start) if relative else _instant(row["at"])
                quote = Quote(bid=_number("bid", row["bid"]), ask=_number("ask", row["ask"]), at=at)
            except ValueError as exc:
                problems.append((f"line {line}", str(exc)))
            else:
                found = quote_problems(symbol, quote)
                problems += [(f"line {line}", problem) for problem in found]
                if not found:
                    quotes.append((symbol, quote))
            if len(problems) >= _MAX_PROBLEMS:
                break
    if problems:
        raise ValidationFailed(source, problems)
    return quotes


def _number(column: str, text: str | None) -> Decimal:
    try:
        value = Decimal((text or "").strip())
    except InvalidOperation:
        raise ValueError(f"{column} {text!r} is not a decimal number") from None
    if not value.is_finite():
        raise ValueError(f"{column} {text!r} is not a finite decimal number")
    return value


def _offset(text: str | None, start: datetime) -> datetime:
    seconds = _number("offset_s", text)
    if seconds < 0:
        raise ValueError(f"offset_s {text!r} must not be negative")
    return start + timedelta(microseconds=int(seconds * 1_000_000))


def _instant(text: str | None) -> datetime:
    try:
        at = datetime.fromisoformat((text or "").strip())
    except ValueError:
        raise ValueError(f"at {text!r} is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise ValueError(f"at {text!r} must carry a timezone (e.g. 2026-03-02T09:00:00Z)")
    return at.astimezone(UTC)


def _quote(row: PaperQuoteRow) -> Quote:
    return Quote(bid=row.bid, ask=row.ask, at=row.at)

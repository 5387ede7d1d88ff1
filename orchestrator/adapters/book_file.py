"""The account book file: its documented format, parsing and validation.

A book is YAML or JSON with ``symbols`` (broker contract specs), ``accounts`` (limits, mandate,
symbol map, current state and paper-broker behaviour) and optionally ``returns``, a CSV file of
daily returns (``account_id,day,return``) relative to the book file. Validation is complete
before anything is written: one bad record refuses the whole file, and every problem is named
by file, account and field.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, ValidationError, model_validator

from orchestrator.adapters.brokers.paper.config import PaperBehaviour
from orchestrator.adapters.files import read_text
from orchestrator.domain.book import AccountLimits, AccountStatus, Mandate, SymbolSpec
from orchestrator.domain.errors import ValidationFailed
from orchestrator.domain.values import (
    Identifier,
    Model,
    NonNegativeDecimal,
    PositionCount,
    SymbolName,
)

__all__ = [
    "AccountRecord",
    "AccountState",
    "Book",
    "BookFile",
    "DailyReturn",
    "PaperBehaviour",  # defined with the paper broker; part of each account record
    "describe_errors",
    "read_book",
    "read_returns",
]


class AccountState(Model):
    balance: NonNegativeDecimal
    equity: NonNegativeDecimal
    peak_equity: NonNegativeDecimal
    free_margin: NonNegativeDecimal
    open_positions: PositionCount = 0
    realized_loss_today: NonNegativeDecimal = Decimal(0)
    as_of: datetime | None = None
    """When the figures were true; defaults to the load time."""

    @model_validator(mode="after")
    def _peak_not_below_equity(self) -> AccountState:
        if self.peak_equity < self.equity:
            raise ValueError("peak_equity must be at least equity")
        if self.as_of is not None and self.as_of.tzinfo is None:
            raise ValueError("as_of must carry a timezone (e.g. 2026-01-05T09:00:00Z)")
        return self


class AccountRecord(Model):
    id: Identifier
    name: str = Field(default="", max_length=200)
    broker: Identifier
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    status: AccountStatus = AccountStatus.ACTIVE
    limits: AccountLimits
    mandate: Mandate = Mandate()
    symbol_map: dict[SymbolName, SymbolName | None] = {}
    """Canonical → broker symbol; unmapped symbols keep their name, ``null`` means none."""
    state: AccountState
    reserve_only: bool = False
    """Used only as a reroute target for other accounts' failed orders."""
    reroute_on_pause: bool = False
    """If an operator pauses the account while a leg of it waits, reroute that leg."""
    paper: PaperBehaviour = PaperBehaviour()

    def broker_symbol(self, symbol: str) -> str | None:
        return self.symbol_map.get(symbol, symbol)


class BookFile(Model):
    symbols: list[SymbolSpec] = []
    accounts: list[AccountRecord]
    returns: str | None = None
    """Path of a CSV of daily returns, relative to the book file."""

    @model_validator(mode="after")
    def _unique(self) -> BookFile:
        seen: set[str] = set()
        for account in self.accounts:
            if account.id in seen:
                raise ValueError(f"account id {account.id!r} appears twice")
            seen.add(account.id)
        keys: set[str] = set()
        for spec in self.symbols:
            if spec.key in keys:
                raise ValueError(f"symbol {spec.symbol!r} of broker {spec.broker!r} appears twice")
            keys.add(spec.key)
        return self


class DailyReturn(Model):
    account_id: Identifier
    day: date
    ret: Decimal


class Book(Model):
    """A validated book, ready to be written in one transaction."""

    symbols: list[SymbolSpec]
    accounts: list[AccountRecord]
    returns: list[DailyReturn]


def read_book(path: Path) -> Book:
    """Parse and validate a book file; raise :class:`ValidationFailed` naming every problem."""
    source = str(path)
    text = read_text(path)
    try:
        raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValidationFailed(source, [("", f"not valid {_kind(path)}: {exc}")]) from exc
    if not isinstance(raw, dict):
        raise ValidationFailed(source, [("", "expected a mapping with 'accounts' at the top")])
    try:
        parsed = BookFile.model_validate(raw)
    except ValidationError as exc:
        raise ValidationFailed(source, describe_errors(exc, raw)) from exc

    returns: list[DailyReturn] = []
    if parsed.returns is not None:
        returns = read_returns(path.parent / parsed.returns, {a.id for a in parsed.accounts})
    return Book(symbols=parsed.symbols, accounts=parsed.accounts, returns=returns)


def read_returns(path: Path, known_accounts: set[str]) -> list[DailyReturn]:
    source = str(path)
    problems: list[tuple[str, str]] = []
    result: list[DailyReturn] = []
    with io.StringIO(read_text(path), newline="") as handle:
        reader = csv.DictReader(handle)
        required = {"account_id", "day", "return"}
        if reader.fieldnames is None or not required <= set(reader.fieldnames):
            raise ValidationFailed(source, [("header", "expected columns account_id,day,return")])
        for line, row in enumerate(reader, start=2):
            try:
                account_id = row["account_id"]
                if account_id not in known_accounts:
                    raise ValueError(f"unknown account {account_id!r}")
                result.append(
                    DailyReturn(
                        account_id=account_id,
                        day=date.fromisoformat(row["day"]),
                        ret=Decimal(row["return"]),
                    )
                )
            except (ValueError, TypeError, InvalidOperation, ValidationError) as exc:
                problems.append((f"line {line}", str(exc).splitlines()[0]))
            if len(problems) >= 20:
                break
    if problems:
        raise ValidationFailed(source, problems)
    return result


def describe_errors(exc: ValidationError, raw: Any) -> list[tuple[str, str]]:
    """Turn pydantic errors into ``(location, message)`` with the account id where known."""
    problems: list[tuple[str, str]] = []
    for error in exc.errors():
        parts: list[str] = []
        loc = list(error["loc"])
        node: Any = raw
        for i, key in enumerate(loc):
            if isinstance(key, int):
                parts[-1] = f"{parts[-1]}[{key}]" if parts else f"[{key}]"
                item = node[key] if isinstance(node, list) and key < len(node) else None
                if i == 1 and loc[0] == "accounts" and isinstance(item, dict) and "id" in item:
                    parts[-1] += f" (account {item['id']})"
                node = item
            else:
                parts.append(str(key))
                node = node.get(key) if isinstance(node, dict) else None
        problems.append((".".join(parts), error["msg"]))
    return problems


def _kind(path: Path) -> str:
    return "JSON" if path.suffix.lower() == ".json" else "YAML"

"""Correlation of the accounts' returns, as planning reads it: groups of accounts correlated
above a threshold (computed by :mod:`orchestrator.domain.correlate`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import (
    Field,
)

from orchestrator.domain.values import Fraction, Identifier, Model


class CorrelationRequest(Model):
    account_ids: list[Identifier] | None = None
    """Correlate these accounts; ``None``: the accounts of the paged snapshot of ``run_id``."""
    run_id: str | None = None
    """The signal workflow run whose stored snapshot and result the pages come from."""
    page: int = 0
    lookback_days: Annotated[int, Field(ge=2)]
    threshold: Fraction
    min_observations: Annotated[int, Field(ge=2)]
    max_peers: Annotated[int, Field(ge=0)] = 10


class AccountCorrelation(Model):
    account_id: Identifier
    group: str | None
    """Id of the connected group of accounts correlated above the threshold; ``None`` alone."""
    max_correlation: Decimal | None
    peers: list[Identifier]
    """Accounts above the threshold, strongest first, capped at ``max_peers``."""
    observations: int
    insufficient_history: bool


class CorrelationResult(Model):
    threshold: Decimal
    accounts: list[AccountCorrelation]
    page: int = 0
    pages: int = 1

    def by_account(self) -> dict[str, AccountCorrelation]:
        return {a.account_id: a for a in self.accounts}

"""TradingView alerts: the body TradingView sends from the documented template, as a signal.

TradingView sends the alert's text as the body and cannot add headers, so the shared secret
travels in the body (``secret``). An alert's problems are named by the alert's own fields.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.domain.errors import ValidationFailed
from orchestrator.domain.signal import Signal
from orchestrator.domain.values import Identifier, OrderType, PositiveDecimal
from orchestrator.services.submit import parse_signal

# Where a TradingView alert's fields end up in the Signal, to name them in errors.
_ALERT_FIELD_FOR = {"signal_id": "id", "symbol": "ticker", "side": "action", "entry": "close"}


class TradingViewAlert(BaseModel):
    """A TradingView alert message, filled by TradingView from the template in docs/webhook.md.

    TradingView sends the alert's text as the body and cannot add headers, so the shared
    secret travels in the body (``secret``). Prices are strings or numbers, parsed as exact
    decimals.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ticker: str = Field(min_length=1, max_length=64)
    """``{{ticker}}``; an exchange prefix (``FX:EURUSD``) is dropped."""
    action: str
    """``{{strategy.order.action}}`` or a literal: ``buy`` or ``sell`` (any case)."""
    close: PositiveDecimal
    """``{{close}}``: the signal's entry (reference) price."""
    stop: PositiveDecimal | None = None
    """Protective stop price. Give this or ``stop_offset``."""
    stop_offset: PositiveDecimal | None = None
    """Stop distance from ``close`` in price units, for alerts that cannot compute a stop."""
    take_profit: PositiveDecimal | None = None
    order_type: OrderType = OrderType.MARKET
    account_ids: list[Identifier] | None = Field(default=None, min_length=1)
    id: Identifier | None = None
    """Signal id. Default: ``tv-`` + a hash of the alert, so a re-sent alert is the same signal."""
    time: str | None = Field(default=None, max_length=64)
    """``{{timenow}}``: required unless ``id`` is given, so two alerts on different bars at the
    same price are two signals while a re-sent one is not."""
    exchange: str | None = Field(default=None, max_length=64)
    interval: str | None = Field(default=None, max_length=16)
    secret: str | None = Field(default=None, max_length=256)
    """The shared secret (``TEO_WEBHOOK_SHARED_SECRET``), when no auth header is sent."""

    @field_validator("action")
    @classmethod
    def _buy_or_sell(cls, action: str) -> str:
        side = action.strip().upper()
        if side not in {"BUY", "SELL"}:
            raise ValueError("action must be buy or sell")
        return side

    def to_signal_fields(self) -> dict[str, Any]:
        """The project's signal JSON for this alert (validated afterwards by ``Signal``)."""
        problems: list[tuple[str, str]] = []
        if (self.stop is None) == (self.stop_offset is None):
            problems.append(("stop", "give exactly one of stop and stop_offset"))
        if self.id is None and not self.time:
            problems.append(("time", "required unless id is given (use {{timenow}})"))
        if problems:
            raise ValidationFailed("alert", problems)
        stop = self.stop
        if stop is None:
            assert self.stop_offset is not None
            direction = -1 if self.action == "BUY" else 1
            stop = self.close + direction * self.stop_offset
        note = " ".join(
            part for part in ("TradingView", self.exchange, self.ticker, self.interval) if part
        )
        return {
            "signal_id": self.id or self._derived_id(),
            "symbol": self.ticker.rpartition(":")[2],
            "side": self.action,
            "entry": self.close,
            "stop": stop,
            "take_profit": self.take_profit,
            "order_type": self.order_type,
            "account_ids": self.account_ids,
            "note": note,
        }

    def _derived_id(self) -> str:
        canonical = self.model_dump(mode="json", exclude={"secret"}, exclude_none=True)
        digest = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
        return f"tv-{digest[:24]}"


def signal_of_alert(payload: dict[str, Any]) -> Signal:
    """The signal an alert's body describes. A malformed alert raises pydantic's
    ``ValidationError``; an alert that makes no valid signal raises :class:`ValidationFailed`
    naming the alert's own fields, not the Signal's they were mapped to."""
    alert = TradingViewAlert.model_validate(payload)
    try:
        return parse_signal(alert.to_signal_fields(), source="alert")
    except ValidationFailed as exc:
        renamed = [
            (_ALERT_FIELD_FOR.get(field.split(".")[0], field), message)
            for field, message in exc.problems
        ]
        raise ValidationFailed("alert", renamed) from exc

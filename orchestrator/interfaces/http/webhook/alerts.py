"""TradingView alerts: the body TradingView sends from the documented template, as a signal.

TradingView sends the alert's text as the body and cannot add headers, so the shared secret
travels in the body (``secret``). An alert's problems are named by the alert's own fields.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.domain.actions import ActionKind, TradeAction
from orchestrator.domain.errors import ValidationFailed
from orchestrator.domain.signal import Signal
from orchestrator.domain.values import Fraction, Identifier, OrderType, PositiveDecimal
from orchestrator.services.actions import parse_action
from orchestrator.services.submit import parse_signal

# Where a TradingView alert's fields end up in the Signal, to name them in errors.
_ALERT_FIELD_FOR = {"signal_id": "id", "symbol": "ticker", "side": "action", "entry": "close"}
_ACTION_ALERT_FIELD_FOR = {
    "action_id": "id",
    "signal_id": "target",
    "symbol": "ticker",
    "accounts": "account_ids",
}
ALERT_ACTIONS = {"BUY", "SELL", "CLOSE", "EXIT", "MODIFY", "FLATTEN"}


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
    """``{{strategy.order.action}}`` or a literal: ``buy`` or ``sell`` (an entry, unless
    ``market_position`` is ``flat``), ``close`` or ``exit``, ``modify``, ``flatten`` (any
    case)."""
    close: PositiveDecimal | None = None
    """``{{close}}``: the signal's entry (reference) price; an entry needs it."""
    market_position: str | None = Field(default=None, max_length=16)
    """``{{strategy.market_position}}``: ``flat`` after the order makes a buy or sell a close
    of ``target``'s positions (a strategy's exit)."""
    target: Identifier | None = None
    """A close's or a modify's: the id of the signal whose positions it is for."""
    fraction: Fraction | None = None
    """A close's share of each position (default: all of it)."""
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
    def _known_action(cls, action: str) -> str:
        word = action.strip().upper()
        if word not in ALERT_ACTIONS:
            raise ValueError("action must be buy, sell, close, exit, modify or flatten")
        return word

    @property
    def kind(self) -> ActionKind | None:
        """The action on positions this alert asks for; ``None``: an entry (a new signal)."""
        if self.action in {"CLOSE", "EXIT"}:
            return ActionKind.CLOSE
        if self.action in {"MODIFY", "FLATTEN"}:
            return ActionKind(self.action)
        if (self.market_position or "").strip().lower() == "flat":
            return ActionKind.CLOSE  # a strategy's exit: the order leaves it flat
        return None

    def to_action_fields(self) -> dict[str, Any]:
        """The project's action JSON for this alert (validated afterwards by ``TradeAction``).
        A close ignores the prices a shared template sends along."""
        kind = self.kind
        assert kind is not None
        problems: list[tuple[str, str]] = []
        if kind is not ActionKind.FLATTEN and self.target is None:
            problems.append(
                ("target", f"required for {kind.lower()}: the id of the signal it acts on")
            )
        if self.id is None and not self.time:
            problems.append(("time", "required unless id is given (use {{timenow}})"))
        if problems:
            raise ValidationFailed("alert", problems)
        fields: dict[str, Any] = {
            "action_id": self.id or self._derived_id(),
            "action": kind,
            "signal_id": None if kind is ActionKind.FLATTEN else self.target,
            "accounts": self.account_ids,
            "note": self._note(),
        }
        if kind is ActionKind.MODIFY:
            fields |= {"stop": self.stop, "take_profit": self.take_profit}
        if kind is ActionKind.CLOSE and self.fraction is not None:
            fields["fraction"] = self.fraction
        if kind is ActionKind.FLATTEN:
            fields["symbol"] = self.ticker.rpartition(":")[2]
        return {k: v for k, v in fields.items() if v is not None}

    def _note(self) -> str:
        return " ".join(
            part for part in ("TradingView", self.exchange, self.ticker, self.interval) if part
        )

    def to_signal_fields(self) -> dict[str, Any]:
        """The project's signal JSON for this alert (validated afterwards by ``Signal``)."""
        problems: list[tuple[str, str]] = []
        if self.close is None:
            problems.append(("close", "an entry needs its price (use {{close}})"))
        if (self.stop is None) == (self.stop_offset is None):
            problems.append(("stop", "give exactly one of stop and stop_offset"))
        if self.id is None and not self.time:
            problems.append(("time", "required unless id is given (use {{timenow}})"))
        if problems:
            raise ValidationFailed("alert", problems)
        assert self.close is not None
        stop = self.stop
        if stop is None:
            assert self.stop_offset is not None
            direction = -1 if self.action == "BUY" else 1
            stop = self.close + direction * self.stop_offset
        note = self._note()
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


def alert_field(field: str) -> str:
    """The alert field an action's field came from (``signal_id`` → ``target``)."""
    return _ACTION_ALERT_FIELD_FOR.get(field.split(".", maxsplit=1)[0], field)


def signal_of_alert(payload: dict[str, Any]) -> Signal | TradeAction:
    """The signal an alert's body describes: an entry, or an action on a signal's positions (a
    close, a modify, a flatten). A malformed alert raises pydantic's ``ValidationError``; an
    alert that makes no valid signal raises :class:`ValidationFailed` naming the alert's own
    fields, not the Signal's they were mapped to."""
    alert = TradingViewAlert.model_validate(payload)
    try:
        if alert.kind is not None:
            return parse_action(alert.to_action_fields(), source="alert")
        return parse_signal(alert.to_signal_fields(), source="alert")
    except ValidationFailed as exc:
        names = _ALERT_FIELD_FOR if alert.kind is None else _ACTION_ALERT_FIELD_FOR
        renamed = [
            (names.get(field.split(".")[0], field), message) for field, message in exc.problems
        ]
        raise ValidationFailed("alert", renamed) from exc

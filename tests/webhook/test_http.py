"""POST /signals through a real HTTP client against the app running under uvicorn."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import SignalRow
from orchestrator.config import Settings
from orchestrator.domain.contracts.actions import ActionInput
from orchestrator.interfaces.http.webhook import create_app
from tests.http_support import (
    SHARED_SECRET,
    body_of,
    serve_in_thread,
    signed,
    tradingview_alert,
)
from tests.webhook.conftest import RunningWebhook, webhook_settings

SIGNAL = {
    "signal_id": "wh-1",
    "symbol": "EURUSD",
    "side": "BUY",
    "entry": "1.08500",
    "stop": "1.08200",
}


def signals_stored(db: Database) -> int:
    with db.transaction() as session:
        return session.scalar(select(func.count()).select_from(SignalRow)) or 0


def post(webhook: RunningWebhook, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{webhook.url}/signals", content=body, headers=headers, timeout=30)


def problems(response: httpx.Response) -> dict[str, str]:
    return {p["field"]: p["message"] for p in response.json()["problems"]}


async def test_signed_signal_json_then_202_with_workflow_id_and_ui_link(
    webhook: RunningWebhook, webhook_temporal: WorkflowEnvironment
) -> None:
    body = body_of(SIGNAL)
    response = post(webhook, body, signed(body))

    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["workflow_id"] == "signal-wh-1"
    assert accepted["duplicate"] is False
    assert accepted["ui_url"] == webhook.settings.ui_link("signal-wh-1")
    description = await webhook_temporal.client.get_workflow_handle("signal-wh-1").describe()
    assert description.run_id == accepted["run_id"]
    assert signals_stored(webhook.db) == 1


async def test_same_signal_posted_again_then_200_with_existing_workflow_and_no_second_run(
    webhook: RunningWebhook, webhook_temporal: WorkflowEnvironment
) -> None:
    body = body_of({**SIGNAL, "signal_id": "wh-dup"})
    first = post(webhook, body, signed(body))
    again = post(webhook, body, signed(body))

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["workflow_id"] == first.json()["workflow_id"] == "signal-wh-dup"
    assert again.json()["duplicate"] is True
    assert again.json()["run_id"] == first.json()["run_id"]
    runs = [
        w.run_id
        async for w in webhook_temporal.client.list_workflows("WorkflowId = 'signal-wh-dup'")
    ]
    assert runs in ([], [first.json()["run_id"]])  # visibility may lag; never a second run
    assert signals_stored(webhook.db) == 1


def test_same_signal_with_prices_written_differently_is_the_same_signal(
    webhook: RunningWebhook,
) -> None:
    body = body_of({**SIGNAL, "signal_id": "wh-same-number"})
    same = body_of({**SIGNAL, "signal_id": "wh-same-number", "entry": "1.085", "stop": "1.082"})
    assert post(webhook, body, signed(body)).status_code == 202

    assert post(webhook, same, signed(same)).status_code == 200


def test_same_id_for_a_different_signal_then_409_naming_signal_id(
    webhook: RunningWebhook,
) -> None:
    body = body_of({**SIGNAL, "signal_id": "wh-conflict"})
    other = body_of({**SIGNAL, "signal_id": "wh-conflict", "stop": "1.08100"})
    assert post(webhook, body, signed(body)).status_code == 202

    response = post(webhook, other, signed(other))

    assert response.status_code == 409
    assert response.json()["error"] == "signal_id_conflict"
    assert "signal_id" in problems(response)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-TEO-Signature": "sha256=" + "0" * 64},
        {"X-TEO-Signature": "not-even-hex"},
        {"X-TEO-Token": "wrong"},
        {},
    ],
    ids=["wrong-hmac", "garbage-signature", "wrong-token", "no-credentials"],
)
def test_bad_or_missing_credentials_then_401_and_nothing_stored(
    webhook: RunningWebhook, headers: dict[str, str]
) -> None:
    response = post(webhook, body_of({**SIGNAL, "signal_id": "wh-401"}), headers)

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert signals_stored(webhook.db) == 0


def test_signature_over_another_body_then_401(webhook: RunningWebhook) -> None:
    body = body_of(SIGNAL)
    tampered = body_of({**SIGNAL, "stop": "1.00000"})

    assert post(webhook, tampered, signed(body)).status_code == 401


def test_shared_secret_header_then_202(webhook: RunningWebhook) -> None:
    body = body_of({**SIGNAL, "signal_id": "wh-token"})
    response = post(webhook, body, {"X-TEO-Token": SHARED_SECRET})

    assert response.status_code == 202, response.text


def test_body_over_the_limit_with_content_length_then_413(webhook: RunningWebhook) -> None:
    body = body_of({**SIGNAL, "note": "x" * 5000})

    response = post(webhook, body, signed(body))

    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    assert signals_stored(webhook.db) == 0


def test_chunked_body_over_the_limit_then_413_while_streaming(webhook: RunningWebhook) -> None:
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            sent.append(1)
            yield b" " * 1024

    response = httpx.post(
        f"{webhook.url}/signals", content=chunks(), headers={"X-TEO-Token": SHARED_SECRET}
    )

    assert response.status_code == 413
    assert signals_stored(webhook.db) == 0


@pytest.mark.parametrize(
    "body", [b"{not json", b'{"signal_id": "x",', b"[1, 2]", b"\xff\xfe"], ids=str
)
def test_malformed_json_then_400(webhook: RunningWebhook, body: bytes) -> None:
    response = post(webhook, body, signed(body))

    assert response.status_code == 400
    assert response.json()["error"] == "malformed_json"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"stop": None}, "stop"),
        ({"side": None}, "side"),
        ({"stop": "1.09000"}, "stop"),
        ({"entry": "-1"}, "entry"),
        ({"entry": "abc"}, "entry"),
        ({"signal_id": "bad id!"}, "signal_id"),
        ({"symbol": "XAUUSD"}, "symbol"),
        ({"colour": "red"}, "colour"),
    ],
    ids=[
        "missing-stop",
        "missing-side",
        "stop-wrong-side",
        "negative-entry",
        "entry-not-a-number",
        "bad-id",
        "unknown-symbol",
        "unknown-field",
    ],
)
def test_invalid_signal_then_422_naming_the_field(
    webhook: RunningWebhook, change: dict[str, Any], field: str
) -> None:
    payload = {k: v for k, v in {**SIGNAL, **change}.items() if v is not None}
    body = body_of(payload)

    response = post(webhook, body, signed(body))

    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_signal"
    assert field in problems(response), response.json()
    assert signals_stored(webhook.db) == 0


def test_tradingview_alert_with_secret_in_body_then_202_and_resent_alert_200(
    webhook: RunningWebhook,
) -> None:
    body = body_of(tradingview_alert())

    first = post(webhook, body, {"Content-Type": "text/plain"})
    again = post(webhook, body, {"Content-Type": "text/plain"})

    assert first.status_code == 202, first.text
    assert first.json()["signal_id"].startswith("tv-")
    assert (again.status_code, again.json()["workflow_id"]) == (200, first.json()["workflow_id"])
    with webhook.db.transaction() as session:
        stored = session.scalars(select(SignalRow)).one()
        assert stored.payload["stop"] == "1.08200"  # 1.08500 − 0.00300, exact
        assert stored.payload["note"] == "TradingView FX EURUSD 15"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"action": "hold"}, "action"),
        ({"close": None}, "close"),
        ({"stop": "1.08000"}, "stop"),
        ({"stop_offset": None}, "stop"),
        ({"time": None}, "time"),
        ({"ticker": "FX:XAUUSD"}, "symbol"),
        ({"stop_offset": None, "stop": "1.09000"}, "stop"),
    ],
    ids=[
        "bad-action",
        "missing-close",
        "stop-and-offset",
        "no-stop",
        "no-time",
        "unknown-symbol",
        "stop-wrong-side",
    ],
)
def test_invalid_tradingview_alert_then_422_naming_the_alert_field(
    webhook: RunningWebhook, change: dict[str, Any], field: str
) -> None:
    payload = tradingview_alert()
    payload.update(change)
    body = body_of({k: v for k, v in payload.items() if v is not None})

    response = post(webhook, body, {})

    assert response.status_code == 422, response.text
    assert field in problems(response), response.json()


def test_tradingview_alert_with_wrong_secret_then_401(webhook: RunningWebhook) -> None:
    body = body_of(tradingview_alert(secret="guess"))

    assert post(webhook, body, {}).status_code == 401
    assert signals_stored(webhook.db) == 0


def test_halted_then_409_and_nothing_started(webhook: RunningWebhook) -> None:
    with webhook.db.transaction() as session:
        repository.set_halt(
            session, halted=True, operator="jane", reason="venue outage", now=datetime.now(UTC)
        )
    body = body_of({**SIGNAL, "signal_id": "wh-halted"})

    response = post(webhook, body, signed(body))

    assert response.status_code == 409
    assert response.json()["error"] == "halted"
    assert signals_stored(webhook.db) == 0


def test_openapi_schema_and_docs_are_published(webhook: RunningWebhook) -> None:
    schema = httpx.get(f"{webhook.url}/openapi.json").json()
    docs = httpx.get(f"{webhook.url}/docs")

    assert docs.status_code == 200
    body = schema["paths"]["/signals"]["post"]["requestBody"]["content"]["application/json"]
    refs = {option["$ref"].rsplit("/", 1)[1] for option in body["schema"]["oneOf"]}
    assert refs == {"Signal", "TradingViewAlert"}
    assert {"Signal", "TradingViewAlert", "ErrorBody"} <= set(schema["components"]["schemas"])


def test_more_requests_than_the_burst_then_429_with_retry_after(
    webhook_temporal: WorkflowEnvironment, webhook_db: Database
) -> None:
    now = [0.0]
    settings = webhook_settings(
        webhook_temporal, webhook_db, webhook_rate_per_minute=60, webhook_rate_burst=2
    )
    app = create_app(settings, db=webhook_db, clock=lambda: now[0])
    with serve_in_thread(app) as url:
        codes = [
            httpx.post(f"{url}/signals", content=b"{}", headers={"X-TEO-Token": "x"}).status_code
            for _ in range(3)
        ]
        limited = httpx.post(f"{url}/signals", content=b"{}")
        now[0] += 1.0  # one token back at 60 a minute
        after = httpx.post(f"{url}/signals", content=b"{}")

    assert codes == [401, 401, 429]  # refused before authentication: floods are limited too
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert after.status_code == 401


@pytest.mark.parametrize("secret", [None, ""], ids=["unset", "empty"])
def test_webhook_without_any_secret_refuses_to_start(secret: str | None) -> None:
    with pytest.raises(ValueError, match="TEO_WEBHOOK_HMAC_SECRET"):
        create_app(Settings(webhook_shared_secret=secret, webhook_hmac_secret=secret))


def test_signature_header_when_only_a_shared_secret_is_set_then_401(
    webhook_temporal: WorkflowEnvironment, webhook_db: Database
) -> None:
    settings = webhook_settings(webhook_temporal, webhook_db, webhook_hmac_secret="")
    body = body_of(SIGNAL)
    with serve_in_thread(create_app(settings, db=webhook_db)) as url:
        response = httpx.post(f"{url}/signals", content=body, headers=signed(body))

    assert response.status_code == 401
    assert signals_stored(webhook_db) == 0


def test_webhook_counts_requests_by_outcome_on_its_metrics_endpoint(
    webhook: RunningWebhook,
) -> None:
    post(webhook, b"{}", {"X-TEO-Token": "wrong"})

    text = httpx.get(f"{webhook.url}/metrics").text
    line = next(
        line
        for line in text.splitlines()
        if line.startswith('teo_webhook_requests_total{outcome="unauthorized"}')
    )
    assert float(line.split()[-1]) >= 1


async def test_temporal_unreachable_then_503_and_nothing_stored(
    webhook_temporal: WorkflowEnvironment, webhook_db: Database
) -> None:
    settings = webhook_settings(webhook_temporal, webhook_db)
    unreachable = await Client.connect(
        "127.0.0.1:1", lazy=True, data_converter=pydantic_data_converter
    )
    body = body_of({**SIGNAL, "signal_id": "wh-503"})
    with serve_in_thread(create_app(settings, client=unreachable, db=webhook_db)) as url:
        response = httpx.post(f"{url}/signals", content=body, headers=signed(body))

    assert response.status_code == 503
    assert response.json()["error"] == "temporal_unavailable"
    assert signals_stored(webhook_db) == 0


async def test_tradingview_strategy_exit_alert_then_202_a_close_of_its_target_and_resent_200(
    webhook: RunningWebhook, webhook_temporal: WorkflowEnvironment
) -> None:
    entry = post(webhook, body_of(tradingview_alert(id="tv-entry-1")), {})
    assert entry.status_code == 202, entry.text
    # A strategy's exit: {{strategy.order.action}} is sell, {{strategy.market_position}} flat.
    # The template's prices come along and are ignored by a close.
    exit_alert = tradingview_alert(
        action="sell", market_position="flat", target="tv-entry-1", time="2026-11-24T07:00:00Z"
    )
    first = post(webhook, body_of(exit_alert), {})
    again = post(webhook, body_of(exit_alert), {})

    assert first.status_code == 202, first.text
    accepted = first.json()
    assert accepted["signal_id"].startswith("tv-") and accepted["signal_id"] != "tv-entry-1"
    assert (again.status_code, again.json()["workflow_id"]) == (200, accepted["workflow_id"])
    assert again.json()["duplicate"] is True
    handle = webhook_temporal.client.get_workflow_handle(accepted["workflow_id"])
    description = await handle.describe()
    assert description.workflow_type == "TradeActionWorkflow"
    [started] = [
        e
        async for e in handle.fetch_history_events()
        if e.HasField("workflow_execution_started_event_attributes")
    ]
    payload = started.workflow_execution_started_event_attributes.input.payloads[0].data
    sent = pydantic_data_converter.payload_converter.from_payloads(
        started.workflow_execution_started_event_attributes.input.payloads, [ActionInput]
    )[0]
    assert payload
    assert (sent.action.action, sent.action.signal_id, sent.action.fraction) == (
        "CLOSE",
        "tv-entry-1",
        1,
    )


@pytest.mark.parametrize(
    ("alert", "field"),
    [
        ({"action": "close"}, "target"),
        ({"action": "close", "target": "never-submitted"}, "target"),
        ({"action": "modify", "target": "tv-entry-2"}, "stop"),
        ({"action": "close", "target": "tv-entry-2", "fraction": "1.5"}, "fraction"),
        ({"action": "reverse"}, "action"),
    ],
    ids=["no-target", "unknown-target", "modify-without-levels", "fraction-above-1", "unknown"],
)
def test_invalid_exit_alert_then_422_naming_the_alert_field(
    webhook: RunningWebhook, alert: dict[str, Any], field: str
) -> None:
    entry = post(webhook, body_of(tradingview_alert(id="tv-entry-2")), {})
    assert entry.status_code in (200, 202)  # one webhook for every case: the first starts it
    response = post(webhook, body_of(tradingview_alert(time="2026-11-24T08:00:00Z", **alert)), {})

    assert response.status_code == 422, response.text
    assert any(name.startswith(field) for name in problems(response)), response.json()


async def started_action(
    webhook_temporal: WorkflowEnvironment, response: httpx.Response
) -> ActionInput:
    """The action the accepted request started, as its workflow's history holds it."""
    handle = webhook_temporal.client.get_workflow_handle(response.json()["workflow_id"])
    assert (await handle.describe()).workflow_type == "TradeActionWorkflow"
    [started] = [
        e
        async for e in handle.fetch_history_events()
        if e.HasField("workflow_execution_started_event_attributes")
    ]
    payloads = started.workflow_execution_started_event_attributes.input.payloads
    sent: ActionInput = pydantic_data_converter.payload_converter.from_payloads(
        payloads, [ActionInput]
    )[0]
    return sent


async def test_tradingview_modify_and_flatten_alerts_then_202_each_its_action(
    webhook: RunningWebhook, webhook_temporal: WorkflowEnvironment
) -> None:
    entry = post(webhook, body_of(tradingview_alert(id="tv-entry-3")), {})
    assert entry.status_code == 202, entry.text
    modify = post(
        webhook,
        body_of(
            tradingview_alert(
                action="modify",
                target="tv-entry-3",
                stop="1.08350",
                take_profit="1.09300",
                time="2026-11-24T09:00:00Z",
            )
        ),
        {},
    )
    flatten = post(
        webhook,
        body_of(
            tradingview_alert(
                action="FLATTEN", ticker="FX:EURUSD", account_ids=["a"], time="2026-11-24T09:01:00Z"
            )
        ),
        {},
    )

    assert (modify.status_code, flatten.status_code) == (202, 202), (modify.text, flatten.text)
    moved = (await started_action(webhook_temporal, modify)).action
    assert (moved.action, moved.signal_id, moved.stop, moved.take_profit) == (
        "MODIFY",
        "tv-entry-3",
        Decimal("1.08350"),
        Decimal("1.09300"),
    )
    assert moved.fraction == 1
    flat = (await started_action(webhook_temporal, flatten)).action
    assert (flat.action, flat.signal_id, flat.symbol, flat.accounts) == (
        "FLATTEN",
        None,
        "EURUSD",
        ["a"],
    )


async def test_project_json_close_then_202_and_an_unknown_action_422_naming_action(
    webhook: RunningWebhook, webhook_temporal: WorkflowEnvironment
) -> None:
    entry_body = body_of({**SIGNAL, "signal_id": "wh-close-x"})
    assert post(webhook, entry_body, signed(entry_body)).status_code == 202
    close = {"action_id": "wh-close-1", "action": "CLOSE", "signal_id": "wh-close-x"}
    body = body_of({**close, "fraction": "0.5", "accounts": ["a"]})
    accepted = post(webhook, body, signed(body))
    unknown_body = body_of({**close, "action_id": "wh-close-2", "action": "REVERSE"})
    unknown = post(webhook, unknown_body, signed(unknown_body))

    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["workflow_id"] == "signal-wh-close-1"
    sent = (await started_action(webhook_temporal, accepted)).action
    assert (sent.action, sent.signal_id, sent.fraction, sent.accounts) == (
        "CLOSE",
        "wh-close-x",
        Decimal("0.5"),
        ["a"],
    )
    assert unknown.status_code == 422, unknown.text
    assert "action" in problems(unknown)

"""What a webhook request becomes and how it is answered: a new signal or an action on a
signal's positions, submitted by the CLI's own path; 202 started, 200 already submitted, or an
error body with a machine-readable code."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.db.schema import SignalRow
from orchestrator.adapters.observability.metrics import WEBHOOK_REQUESTS
from orchestrator.config import Settings
from orchestrator.domain import ids
from orchestrator.domain.actions import TradeAction
from orchestrator.domain.errors import DuplicateSignal, SystemHalted, ValidationFailed
from orchestrator.domain.signal import Signal
from orchestrator.interfaces.http.webhook.alerts import alert_field, signal_of_alert
from orchestrator.services.actions import parse_action, submit_action
from orchestrator.services.submit import parse_signal, submit_signal

log = logging.getLogger("orchestrator.interfaces.http.webhook.app")


class SignalAccepted(BaseModel):
    signal_id: str
    workflow_id: str
    run_id: str | None = None
    """The run: started now (202), or the existing one (200; ``null`` once Temporal's retention
    has dropped it)."""
    ui_url: str
    """The run in the Temporal Web UI."""
    duplicate: bool
    """True when this signal id was already submitted: nothing new was started."""


class Problem(BaseModel):
    field: str
    """Dotted path of the offending field (``stop``, ``account_ids.0``); empty for the body."""
    message: str


class ErrorBody(BaseModel):
    error: str
    """Machine-readable code: unauthorized, body_too_large, rate_limited, malformed_json,
    invalid_signal, signal_id_conflict, halted, temporal_unavailable."""
    detail: str
    problems: list[Problem] = []


class WebhookError(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        problems: list[Problem] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.body = ErrorBody(error=error, detail=detail, problems=problems or [])
        self.headers = headers or {}


# --------------------------------------------------------------------------------------------
# Rate limit


def to_signal(payload: dict[str, Any], *, is_alert: bool) -> Signal | TradeAction:
    """A new signal, or an action on a signal's positions (project JSON with ``action``: MODIFY,
    CLOSE or FLATTEN; an alert whose action is a close, a modify or a flatten)."""
    try:
        if not is_alert:
            if "action" in payload:
                return parse_action(payload, source="action")
            return parse_signal(payload, source="signal")
        return signal_of_alert(payload)
    except ValidationError as exc:
        raise _invalid(
            [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
        ) from exc
    except ValidationFailed as exc:
        raise _invalid(exc.problems) from exc


def _invalid(problems: list[tuple[str, str]]) -> WebhookError:
    fields = ", ".join(field or "body" for field, _ in problems)
    return WebhookError(
        422,
        "invalid_signal",
        f"invalid signal: {fields}",
        [Problem(field=field, message=message) for field, message in problems],
    )


async def submit(
    settings: Settings,
    client: Client,
    db: Database,
    signal: Signal | TradeAction,
    *,
    alert: bool = False,
) -> JSONResponse:
    handle: WorkflowHandle[Any, Any]
    try:
        # Concurrent submissions are fine: submit_signal keeps its blocking database steps off
        # the event loop.
        if isinstance(signal, TradeAction):
            handle = await submit_action(client, db, settings, signal)
        else:
            handle = await submit_signal(client, db, settings, signal)
    except DuplicateSignal:
        if isinstance(signal, TradeAction):
            return await _duplicate_action(settings, client, signal)
        return await _duplicate(settings, client, db, signal)
    except SystemHalted as exc:
        raise WebhookError(409, "halted", str(exc)) from exc
    except ValidationFailed as exc:
        problems = exc.problems
        if alert and isinstance(signal, TradeAction):  # named by the alert's own fields
            problems = [(alert_field(field), message) for field, message in problems]
        raise _invalid(problems) from exc
    except RPCError as exc:
        log.warning("Temporal refused or unreachable: %s", exc)
        raise WebhookError(
            503, "temporal_unavailable", f"Temporal unavailable, nothing started: {exc}"
        ) from exc
    except RuntimeError as exc:
        # A client that never reached the server (lazy connect) raises this, not an RPCError.
        if not str(exc).startswith("Failed client connect"):
            raise
        log.warning("Temporal unreachable: %s", exc)
        raise WebhookError(
            503, "temporal_unavailable", f"Temporal unreachable, nothing started: {exc}"
        ) from exc
    log.info("signal %s accepted: 202, workflow %s started", own_id(signal), handle.id)
    WEBHOOK_REQUESTS.labels("accepted").inc()
    accepted = SignalAccepted(
        signal_id=own_id(signal),
        workflow_id=handle.id,
        run_id=handle.result_run_id,
        ui_url=settings.ui_link(handle.id),
        duplicate=False,
    )
    return JSONResponse(accepted.model_dump(), status_code=202)


async def _duplicate_action(
    settings: Settings, client: Client, action: TradeAction
) -> JSONResponse:
    """200 with the workflow this action id already started: the same action twice acts once."""
    workflow_id = ids.signal_workflow_id(action.action_id)
    return await _already_started(settings, client, action.action_id, workflow_id, "action")


def own_id(signal: Signal | TradeAction) -> str:
    """The id its workflow is named by (an action's own, not the signal it acts on)."""
    return signal.action_id if isinstance(signal, TradeAction) else signal.signal_id


def _signal_row(db: Database, signal_id: str) -> SignalRow | None:
    with db.transaction() as session:
        row: SignalRow | None = session.scalar(
            select(SignalRow).where(SignalRow.signal_id == signal_id)
        )
        return row


async def _duplicate(
    settings: Settings, client: Client, db: Database, signal: Signal
) -> JSONResponse:
    """200 with the workflow this signal id already started, or 409 if the id was used for a
    different signal. Prices compare as numbers: ``1.085`` and ``1.08500`` are the same."""
    row = await asyncio.to_thread(_signal_row, db, signal.signal_id)
    if row is not None and Signal.model_validate(row.payload) != signal:
        raise WebhookError(
            409,
            "signal_id_conflict",
            f"signal id {signal.signal_id!r} was already used for a different signal",
            [Problem(field="signal_id", message="already used for a different signal")],
        )
    workflow_id = row.workflow_id if row is not None else ids.signal_workflow_id(signal.signal_id)
    return await _already_started(settings, client, signal.signal_id, workflow_id, "signal")


async def _already_started(
    settings: Settings, client: Client, own: str, workflow_id: str, kind: str
) -> JSONResponse:
    """200 naming the workflow that id started, and its run while the server still has it."""
    run_id: str | None = None
    # Fails once the run closed longer ago than the namespace's retention: the row remains.
    with contextlib.suppress(RPCError):
        run_id = (await client.get_workflow_handle(workflow_id).describe()).run_id
    log.info("duplicate %s %s: 200, nothing started", kind, own)
    WEBHOOK_REQUESTS.labels("duplicate").inc()
    accepted = SignalAccepted(
        signal_id=own,
        workflow_id=workflow_id,
        run_id=run_id,
        ui_url=settings.ui_link(workflow_id),
        duplicate=True,
    )
    return JSONResponse(accepted.model_dump(), status_code=200)

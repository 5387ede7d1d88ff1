"""Submitting a signal: the one path the CLI (and later the webhook) goes through."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.config import Settings
from orchestrator.domain import ids, search_attributes
from orchestrator.domain.contracts.payloads import SignalWorkflowInput
from orchestrator.domain.errors import DuplicateSignal, SystemHalted, ValidationFailed
from orchestrator.domain.report import SignalReport, SignalStatus
from orchestrator.domain.signal import Signal
from workflows.signal import SignalExecutionWorkflow

M = TypeVar("M", bound=BaseModel)


def parse_signal(raw: str | bytes | dict[str, Any], source: str = "signal") -> Signal:
    """Validate a signal from JSON text or a mapping; :class:`ValidationFailed` names fields."""
    return parse_model(raw, Signal, source)


def parse_model(raw: str | bytes | dict[str, Any], model: type[M], source: str) -> M:
    """Validate ``model`` (a signal, an action) from JSON text or a mapping; numbers become
    Decimal straight from their digits, never through a float. :class:`ValidationFailed` names
    the fields, or the file's bytes that are not JSON or not UTF-8."""
    try:
        if not isinstance(raw, dict):
            raw = json.loads(raw, parse_float=Decimal)
            if not isinstance(raw, dict):
                raise ValidationFailed(source, [("", "expected a JSON object")])
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ValidationFailed(source, validation_problems(exc)) from exc
    except json.JSONDecodeError as exc:
        raise ValidationFailed(source, [("", f"malformed JSON: {exc}")]) from exc
    except UnicodeDecodeError as exc:
        raise ValidationFailed(source, [("", f"not UTF-8 text: {exc.reason}")]) from exc


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """pydantic's errors as (field, message): a rule of the whole model that names its field
    first (``field: why``) is reported at that field."""
    problems: list[tuple[str, str]] = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "json_invalid":
            location = ""
        elif not location and ": " in message:
            location, message = message.split(": ", 1)
        problems.append((location, message))
    return problems


async def submit_signal(
    client: Client, db: Database, settings: Settings, signal: Signal
) -> WorkflowHandle[SignalExecutionWorkflow, SignalReport]:
    """Start ``signal-{id}``, or refuse with a clear error having started and written nothing.

    Two guards against a duplicate: the database's unique signal id (lasts forever) and the
    REJECT_DUPLICATE id reuse policy (covers signals started by other means while the server
    keeps the closed run). The row is committed only once the workflow has started.

    The transaction stays open across the start, so its blocking steps (taking a pooled
    connection, the row lock, the commit) run on a thread: on the event loop, one submission
    waiting for a connection would block the very loop the others need to finish and give
    theirs back (found by twenty concurrent submissions in one process).
    """
    workflow_id = ids.signal_workflow_id(signal.signal_id)
    transaction = db.transaction()
    session = await asyncio.to_thread(transaction.__enter__)
    try:
        await asyncio.to_thread(_record, session, signal, workflow_id)
        handle = await _start(client, settings, signal, workflow_id)
    except BaseException as exc:
        await asyncio.to_thread(transaction.__exit__, type(exc), exc, exc.__traceback__)
        raise
    await asyncio.to_thread(transaction.__exit__, None, None, None)
    return handle


def _record(session: Session, signal: Signal, workflow_id: str) -> None:
    if repository.is_halted(session):
        raise SystemHalted(repository.halt_reason(session) or "no reason recorded")
    if not repository.symbol_known(session, signal.symbol):
        raise ValidationFailed(
            "signal", [("symbol", f"unknown symbol {signal.symbol!r}: no account can trade it")]
        )
    now = datetime.now(UTC)
    if signal.valid_until is not None and signal.valid_until <= now:
        raise ValidationFailed(
            "signal",
            [
                (
                    "valid_until",
                    f"{signal.valid_until.isoformat()} has already passed: no entry could leave",
                )
            ],
        )
    repository.record_signal(session, signal, workflow_id, now)


async def _start(
    client: Client, settings: Settings, signal: Signal, workflow_id: str
) -> WorkflowHandle[SignalExecutionWorkflow, SignalReport]:
    try:
        return await client.start_workflow(
            SignalExecutionWorkflow.run,
            # No settings: the worker's plan it (ServiceSettings), whoever submits.
            SignalWorkflowInput(signal=signal),
            id=workflow_id,
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=search_attributes.for_signal(signal, SignalStatus.SUBMITTED),
        )
    except WorkflowAlreadyStartedError as exc:
        raise DuplicateSignal(signal.signal_id) from exc

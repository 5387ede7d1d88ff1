"""Structured logs: one JSON object per line, carrying the signal, account and workflow ids.

The standard library's ``logging`` with a small formatter rather than structlog or
python-json-logger: the Temporal SDK already logs through stdlib loggers and attaches its own
context to each record (``temporal_workflow`` / ``temporal_activity``), uvicorn does too, and
the three ids we need come from that context or from a context variable set around each
activity. A formatter reading both is all it takes, without a second logging pipeline.

Every line has ``signal_id``, ``account_id`` and ``workflow_id`` keys (``null`` where a line
belongs to none, e.g. worker start-up). Workflow code logs through ``workflow.logger`` only:
the SDK drops its lines during replay, so a replayed history does not log twice.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

from temporalio import activity, workflow

from orchestrator.domain.ids import signal_id_of

ID_FIELDS = ("signal_id", "account_id", "workflow_id")

_context: ContextVar[Mapping[str, str]] = ContextVar("teo_log_context", default={})  # noqa: B039


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Add ``fields`` to every line logged in this context (thread pools included when the
    caller copies the context, as the Temporal worker does for activities)."""
    token = _context.set(
        {**_context.get(), **{key: value for key, value in fields.items() if value}}
    )
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message, the three ids, and
    the Temporal context the SDK attached (workflow/activity type, run id, attempt)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ids: dict[str, str | None] = dict.fromkeys(ID_FIELDS)
        temporal = getattr(record, "temporal_workflow", None) or getattr(
            record, "temporal_activity", None
        )
        if isinstance(temporal, Mapping):
            ids["workflow_id"] = temporal.get("workflow_id")
            for key in ("workflow_type", "activity_type", "run_id", "workflow_run_id", "attempt"):
                if temporal.get(key) is not None:
                    line[key] = temporal[key]
        elif activity.in_activity():
            ids["workflow_id"] = activity.info().workflow_id
        ids.update(_context.get())
        for key in ID_FIELDS:
            explicit = getattr(record, key, None)
            if explicit:
                ids[key] = str(explicit)
        if ids["workflow_id"] and not ids["signal_id"]:
            # Every workflow id of a signal starts with its own. A leg's account is bound by
            # the activity that works for it: child ids name the leg, not the account.
            ids["signal_id"] = signal_id_of(ids["workflow_id"])
        line.update(ids)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


LogFormat = Literal["json", "text"]


def configure(*, level: str = "INFO", fmt: LogFormat = "json") -> None:
    """Route every logger (ours, the SDK's, uvicorn's) to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
        # The ids are fields of the line; the SDK need not append its dict to the message.
        workflow.logger.workflow_info_on_message = False
        activity.logger.activity_info_on_message = False
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())

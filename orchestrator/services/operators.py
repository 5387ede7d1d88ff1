"""Operator controls: pause/resume an account, reduce-only (and back) for accounts or the book,
halt/unhalt everything, cancel a signal.

Each action is persisted first (so every later signal and every reservation sees it — the
database is what closes the race with a leg between its timer and its order), then sent to
the running workflows (so legs waiting on their timers stop at once), then written to the
operator-actions table with the workflows it reached.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.adapters.db import repository
from orchestrator.adapters.db.engine import Database
from orchestrator.adapters.temporal import is_workflow_type
from orchestrator.domain import ids
from orchestrator.domain.book import AccountStatus
from orchestrator.domain.contracts.operators import (
    CancelSignalRequest,
    HaltRequest,
    PauseAccount,
    ResumeAccount,
    StopResult,
    UnhaltRequest,
)
from orchestrator.domain.errors import ValidationFailed
from workflows.batch import LegBatchWorkflow
from workflows.signal import SignalExecutionWorkflow

RUNNING_EXECUTIONS = (
    f"ExecutionStatus = 'Running' AND {is_workflow_type(SignalExecutionWorkflow, LegBatchWorkflow)}"
)


@dataclass
class Outcome:
    """What an operator action reached and what it did."""

    reached: list[str] = field(default_factory=list)
    legs_stopped: int = 0
    orders_cancelled: int = 0
    refused: list[str] = field(default_factory=list)
    """Workflows that refused an update, with the reason they gave."""
    unanswered: list[str] = field(default_factory=list)
    """Workflows that did not answer within ``BROADCAST_WAIT`` (no worker polls their task
    queue, or it is stalled): the action is not waited for there. A halt still holds for them:
    it is persisted first, and every order activity checks it before sending."""


BROADCAST_WAIT = timedelta(seconds=20)
"""How long a broadcast waits for each workflow's answer."""


def require_operator_and_reason(operator: str, reason: str, what: str = "operator action") -> None:
    """:class:`ValidationFailed` unless both say something: every operator's act names who and
    why."""
    problems = []
    if not operator.strip():
        problems.append(("operator", "say who you are"))
    if not reason.strip():
        problems.append(("reason", "give a reason"))
    if problems:
        raise ValidationFailed(what, problems)


async def running_executions(client: Client) -> list[str]:
    return [w.id async for w in client.list_workflows(RUNNING_EXECUTIONS)]


async def _broadcast(
    client: Client, send: Callable[[WorkflowHandle[Any, Any]], Awaitable[object]]
) -> tuple[list[str], list[object], list[str]]:
    """Send to every running signal and batch workflow; one that closed meanwhile is skipped,
    and one that does not answer within ``BROADCAST_WAIT`` is not waited for (an update waits
    for a worker to take it: a run whose workers are all gone would hold the command for
    ever). What was reached, the answers, and what did not answer."""
    ids = await running_executions(client)
    reached: list[str] = []
    answers: list[object] = []
    unanswered: list[str] = []

    async def one(workflow_id: str) -> None:
        try:
            answer = await asyncio.wait_for(
                send(client.get_workflow_handle(workflow_id)), BROADCAST_WAIT.total_seconds()
            )
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            # (An update cancelled by the wait says so in its own words.)
            unanswered.append(workflow_id)
            return
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return
        answers.append(answer)
        reached.append(workflow_id)

    await asyncio.gather(*(one(i) for i in ids))
    return sorted(reached), answers, sorted(unanswered)


def _record(
    db: Database, action: str, *, target: str | None, who: str, why: str, out: Outcome
) -> None:
    with db.transaction() as session:
        repository.record_operator_action(
            session,
            action=action,
            target=target,
            operator=who,
            reason=why,
            reached=out.reached,
            outcome={
                "legs_stopped": out.legs_stopped,
                "orders_cancelled": out.orders_cancelled,
                "refused": out.refused,
                "unanswered": out.unanswered,
            },
            now=datetime.now(UTC),
        )


def _set_status(db: Database, account_id: str, status: AccountStatus, reason: str | None) -> None:
    try:
        with db.transaction() as session:
            repository.set_account_status(session, account_id, status, reason, datetime.now(UTC))
    except LookupError as exc:
        raise ValidationFailed(
            "operator action", [("account", f"unknown account {account_id!r}")]
        ) from exc


async def pause_account(
    client: Client,
    db: Database,
    account_id: str,
    *,
    operator: str,
    reason: str,
    reroute: bool = False,
) -> Outcome:
    require_operator_and_reason(operator, reason)
    _set_status(db, account_id, AccountStatus.PAUSED, f"{operator}: {reason}")
    request = PauseAccount(account_id=account_id, operator=operator, reason=reason, reroute=reroute)
    reached, _, unanswered = await _broadcast(
        client, lambda h: h.signal(SignalExecutionWorkflow.pause_account, request)
    )
    out = Outcome(reached=reached, unanswered=unanswered)
    _record(db, "pause", target=account_id, who=operator, why=reason, out=out)
    return out


async def resume_account(
    client: Client, db: Database, account_id: str, *, operator: str, reason: str
) -> Outcome:
    require_operator_and_reason(operator, reason)
    _set_status(db, account_id, AccountStatus.ACTIVE, None)
    request = ResumeAccount(account_id=account_id, operator=operator, reason=reason)
    reached, _, unanswered = await _broadcast(
        client, lambda h: h.signal(SignalExecutionWorkflow.resume_account, request)
    )
    out = Outcome(reached=reached, unanswered=unanswered)
    _record(db, "resume", target=account_id, who=operator, why=reason, out=out)
    return out


def reduce_only(
    db: Database,
    account_ids: list[str] | None,
    *,
    operator: str,
    reason: str,
) -> list[str]:
    """Put accounts (``None``: every account in the book) in reduce-only: no new risk. The
    accounts it reached, each recorded in operator actions.

    Persisted, not broadcast: a running signal's legs meet it at their order's gate (the
    reservation, or the gate of a completion), which denies REDUCE_ONLY; exits and protective
    orders never pass that gate. All or nothing: an unknown account changes nothing."""
    return _set_reduce_only(db, account_ids, True, operator=operator, reason=reason)


def allow_entries(
    db: Database,
    account_ids: list[str] | None,
    *,
    operator: str,
    reason: str,
) -> list[str]:
    """Take accounts (``None``: every account) out of reduce-only: entries may go again."""
    return _set_reduce_only(db, account_ids, False, operator=operator, reason=reason)


def _set_reduce_only(
    db: Database, account_ids: list[str] | None, on: bool, *, operator: str, reason: str
) -> list[str]:
    require_operator_and_reason(operator, reason)
    if account_ids is not None and not account_ids:
        raise ValidationFailed("operator action", [("account", "name accounts, or --all")])
    now = datetime.now(UTC)
    action = REDUCE_ONLY if on else ALLOW_ENTRIES
    try:
        with db.transaction() as session:
            changed = repository.set_reduce_only(
                session, account_ids, reduce_only=on, by=operator, reason=reason, now=now
            )
            for account_id in changed:
                repository.record_operator_action(
                    session,
                    action=action,
                    target=account_id,
                    operator=operator,
                    reason=reason,
                    reached=[],
                    outcome={"all": account_ids is None},
                    now=now,
                )
    except LookupError as exc:
        raise ValidationFailed(
            "operator action",
            [("account", f"unknown account {account_id!r}") for account_id in exc.args],
        ) from exc
    return changed


REDUCE_ONLY = "reduce_only"
ALLOW_ENTRIES = "allow_entries"
"""The operator actions' names for reduce-only and its reverse."""

FLATTEN = "flatten"
"""The operator action's name for a flatten (its reduce-only, if any, is recorded apart)."""


def record_flatten(
    db: Database,
    *,
    symbol: str | None,
    accounts: list[str] | None,
    operator: str,
    reason: str,
    workflow_id: str,
) -> None:
    """A flatten started, with who and why and the action's workflow: a flatten of one symbol
    sets no reduce-only, so this is its only record outside Temporal."""
    require_operator_and_reason(operator, reason, FLATTEN)
    if symbol is not None:
        target = f"symbol {symbol}"
    elif accounts:
        target = "accounts " + ",".join(accounts)
    else:
        target = "book"
    with db.transaction() as session:
        repository.record_operator_action(
            session,
            action=FLATTEN,
            target=target,
            operator=operator,
            reason=reason,
            reached=[workflow_id],
            outcome={"workflow_id": workflow_id},
            now=datetime.now(UTC),
        )


async def halt(
    client: Client, db: Database, *, operator: str, reason: str, cancel_working: bool = False
) -> Outcome:
    """The kill switch. Persisted first: from this commit on, no reservation succeeds, no new
    order passes the order activity's gate, and no new signal starts."""
    require_operator_and_reason(operator, reason)
    with db.transaction() as session:
        repository.set_halt(
            session, halted=True, operator=operator, reason=reason, now=datetime.now(UTC)
        )
    out = await broadcast_kill_switch(
        client,
        HaltRequest(
            operator=operator,
            reason=reason,
            cancel_working=cancel_working,
            from_kill_switch=True,
        ),
    )
    _record(db, "halt", target=None, who=operator, why=reason, out=out)
    return out


async def unhalt(client: Client, db: Database, *, operator: str, reason: str) -> Outcome:
    require_operator_and_reason(operator, reason)
    with db.transaction() as session:
        repository.set_halt(
            session, halted=False, operator=operator, reason=reason, now=datetime.now(UTC)
        )
    out = await broadcast_kill_switch(
        client, UnhaltRequest(operator=operator, reason=reason, from_kill_switch=True)
    )
    _record(db, "unhalt", target=None, who=operator, why=reason, out=out)
    return out


async def broadcast_kill_switch(
    client: Client,
    request: HaltRequest | UnhaltRequest,
    *,
    exclude: str | None = None,
    update_id: str | None = None,
) -> Outcome:
    """Send an already persisted kill switch (or its lifting) to every running signal and batch
    workflow but ``exclude``. A halt is an update: each answers what it stopped; ``update_id``
    (with the workflow's id) makes a repeated broadcast a no-op for a workflow it reached."""
    out = Outcome()

    async def send(handle: WorkflowHandle[Any, Any]) -> object:
        if handle.id == exclude:
            return None
        if isinstance(request, UnhaltRequest):
            await handle.signal(SignalExecutionWorkflow.unhalt, request)
            return None
        try:
            return await handle.execute_update(
                SignalExecutionWorkflow.halt,
                request,
                id=None if update_id is None else f"{update_id}:{handle.id}",
            )
        except WorkflowUpdateFailedError as err:
            out.refused.append(f"{handle.id}: {err.cause}")
            return None

    reached, answers, unanswered = await _broadcast(client, send)
    out.reached = [w for w in reached if w != exclude]
    out.unanswered = unanswered
    for answer in answers:
        if isinstance(answer, StopResult):
            out.legs_stopped += answer.legs_stopped
            out.orders_cancelled += answer.orders_cancelled
    return out


async def cancel_signal(
    client: Client, db: Database, signal_id: str, *, operator: str, reason: str
) -> Outcome:
    """Cancel one signal. Its workflow cancels its batch children, if it has any."""
    require_operator_and_reason(operator, reason)
    request = CancelSignalRequest(operator=operator, reason=reason)
    workflow_id = ids.signal_workflow_id(signal_id)
    # An untyped handle: the update is the operator mixin's, shared with the batch workflow.
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(workflow_id)
    result = await handle.execute_update(SignalExecutionWorkflow.cancel_signal, request)
    out = Outcome(
        reached=[workflow_id],
        legs_stopped=result.legs_stopped,
        orders_cancelled=result.orders_cancelled,
    )
    _record(db, "cancel", target=signal_id, who=operator, why=reason, out=out)
    return out

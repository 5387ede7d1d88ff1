"""Prometheus metrics: business counters (prometheus_client) and the Temporal SDK runtime's own.

Where business metrics are counted, and why there: workflow code is replayed, so a counter
incremented in a workflow would count again every time a history is replayed (worker
restart, cache eviction, a query on a closed run). Nothing is counted in ``workflows/``.
Instead a worker interceptor (:class:`Observability`) counts

* per finished signal, from its :class:`SignalReport`, when ``SignalExecutionWorkflow``
  returns and the SDK says the workflow is *not* replaying: signals by outcome, legs by
  status, fill ratio, slippage, reroutes, denials by reason. Only the top-level signal is
  counted; its report already holds every batch, completion and reroute child's lines;
* operator signals and updates, when a workflow applies them outside replay (one per
  workflow reached: a pause sent to ten running signals counts ten);
* broker orders by terminal status, when the order activity returns (activities are not
  replayed).

The guarantee is at-least-once: if a worker dies after finishing a workflow task but before
the server records it, the task runs again on another worker and counts again. Metrics are
for watching, not for accounting; the ledger and the histories are the record.

The same interceptor binds the signal, account and workflow ids to every log line an activity
writes (see :mod:`orchestrator.adapters.observability.logs`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from prometheus_client import Counter, Histogram, start_http_server
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    HandleSignalInput,
    HandleUpdateInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from orchestrator.adapters.observability import logs
from orchestrator.config import Settings
from orchestrator.domain import ids
from orchestrator.domain.contracts.activities import Execution, activity_name
from orchestrator.domain.contracts.payloads import ErrorType, SignalWorkflowInput, SliceOutcome
from orchestrator.domain.orders import TERMINAL, OrderOutcome, OrderStatus
from orchestrator.domain.report import LegStatus, RerouteOutcome, SignalReport
from orchestrator.domain.values import DenialReason, plain

log = logging.getLogger(__name__)


SIGNALS = Counter(
    "teo_signals",
    "Signal workflows finished, by outcome (COMPLETED, CANCELLED, FAILED)",
    ["outcome"],
)
LEGS = Counter("teo_legs", "Account lines of finished signals, by final status", ["status"])
FILL_RATIO = Histogram(
    "teo_leg_fill_ratio",
    "Filled / requested quantity of each leg that sent an order (after any completion)",
    buckets=(0, 0.25, 0.5, 0.75, 0.9, 0.99, 1),
)
SLIPPAGE_TICKS = Histogram(
    "teo_leg_slippage_ticks",
    "Adverse slippage of each filled leg against the signal's entry, in ticks (negative: better)",
    buckets=(-10, -5, -2, -1, -0.5, 0, 0.5, 1, 2, 5, 10, 20, 50),
)
REROUTES = Counter(
    "teo_reroutes",
    "Legs moved to other accounts after a failed order, by outcome "
    "(PLACED, PARTLY_PLACED, NO_ALTERNATIVE_ACCOUNT, FAILED)",
    ["outcome"],
)
DENIALS = Counter(
    "teo_denials", "Accounts denied by our own pre-trade checks, by reason code", ["reason"]
)
OPERATOR_ACTIONS = Counter(
    "teo_operator_actions",
    "Operator signals and updates applied by workflows, by action (one per workflow reached)",
    ["action"],
)
ORDERS = Counter("teo_orders", "Broker orders that reached a terminal state, by status", ["status"])
ACCOUNT_SYNC = Counter(
    "teo_account_sync_accounts",
    "Accounts synced from their broker, by broker and source (reported, derived, unread)",
    ["broker", "source"],
)
ACCOUNT_SYNC_UNREAD = Counter(
    "teo_account_sync_unread",
    "Accounts a broker gave nothing for (no reading, no price to derive one): their state ages",
    ["broker"],
)
RECONCILIATION_MISMATCHES = Counter(
    "teo_reconciliation_mismatches",
    "Mismatches found between a broker's positions and the ledger's, by broker and kind",
    ["broker", "kind"],
)
WEBHOOK_REQUESTS = Counter(
    "teo_webhook_requests", "Webhook requests to POST /signals, by outcome", ["outcome"]
)

# Every label value known in advance starts at 0, so dashboards show a flat line rather than
# "no data" and rate() sees the first increment.
for _outcome in ("COMPLETED", "CANCELLED", "FAILED"):
    SIGNALS.labels(_outcome)
for _status in LegStatus:
    LEGS.labels(_status.value)
for _reason in DenialReason:
    DENIALS.labels(_reason.value)
for _order_status in TERMINAL:
    ORDERS.labels(_order_status.value)
for _reroute in RerouteOutcome:
    REROUTES.labels(_reroute.value)


def record_report(report: SignalReport, *, outcome: str | None = None) -> None:
    """Count one finished signal from its report."""
    SIGNALS.labels(outcome or report.status).inc()
    if report.accounts_in_batches:
        # A large signal's lines are in its batches: its legs are counted by status only.
        for status, count in report.by_status.items():
            LEGS.labels(status).inc(count)
        return
    for line in report.accounts:
        LEGS.labels(line.status.value).inc()
        if line.denial is not None:
            DENIALS.labels(line.denial.value).inc()
        if line.reroute is not None:
            REROUTES.labels(line.reroute.outcome.value).inc()
        # Prometheus samples are floats: converted here, at the boundary, never before.
        if line.requested > 0 and line.denial is None:
            FILL_RATIO.observe(float(line.filled / line.requested))
        if line.slippage_ticks is not None and line.filled > 0:
            SLIPPAGE_TICKS.observe(float(line.slippage_ticks))


def temporal_runtime(settings: Settings) -> Runtime | None:
    """A runtime whose Prometheus endpoint serves the SDK's own metrics (workflow and activity
    task latencies, slots, polls, failures) on ``TEO_TEMPORAL_METRICS_PORT``; ``None`` if 0."""
    if not settings.temporal_metrics_port:
        return None
    bind = f"{settings.metrics_host}:{settings.temporal_metrics_port}"
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind)))


def serve(settings: Settings) -> bool:
    """Serve the business metrics at ``/metrics`` on ``TEO_METRICS_PORT`` (0: not at all)."""
    if not settings.metrics_port:
        return False
    start_http_server(settings.metrics_port, addr=settings.metrics_host)
    log.info(
        "business metrics at http://%s:%s/metrics", settings.metrics_host, settings.metrics_port
    )
    return True


# --------------------------------------------------------------------------------------------
# Plaintext in an encrypted deployment

PLAINTEXT = Counter(
    "teo_plaintext_payloads",
    "Payloads that reached the worker unencrypted while payload encryption is on (a client "
    "sent them without the codec: the server keeps them in clear)",
)
_plaintext_pending: dict[str, str] = {}
"""Workflow id → the encoding of a plaintext payload its next handler call carries."""
_plaintext_logged: set[tuple[str | None, str]] = set()


def plaintext_seen(workflow_id: str | None, payload: Payload) -> None:
    """The codec's report of an unencrypted payload (see ``EncryptionCodec``): an error log
    naming the workflow, the metric, and a note for the workflow's handler to name the event.
    Each payload once per process (a replay decodes it again)."""
    encoding = payload.metadata.get("encoding", b"").decode(errors="replace") or "none"
    seen = (workflow_id, hashlib.sha256(payload.data).hexdigest())
    if seen in _plaintext_logged:
        return
    if len(_plaintext_logged) > 10_000:
        _plaintext_logged.clear()
    _plaintext_logged.add(seen)
    PLAINTEXT.inc()
    log.error(
        "PLAINTEXT payload reached workflow %s (encoding %s, %d bytes): a client sent it "
        "without the codec, so the server stores it in clear. Set the Web UI's codec endpoint "
        "(Data Encoder) or use the starter.",
        workflow_id or "(none)",
        encoding,
        len(payload.data),
    )
    if workflow_id is not None:
        _plaintext_pending[workflow_id] = encoding


def _plaintext_in(kind: str, name: str) -> None:
    """Inside the workflow: name the signal, update or start that carried the plaintext."""
    encoding = _plaintext_pending.pop(workflow.info().workflow_id, None)
    if encoding is None or workflow.unsafe.is_replaying():
        return
    with workflow.unsafe.sandbox_unrestricted():
        log.error(
            "PLAINTEXT payload in %s %s of workflow %s, at history event %d (encoding %s)",
            kind,
            name,
            workflow.info().workflow_id,
            workflow.info().get_current_history_length(),
            encoding,
        )


# --------------------------------------------------------------------------------------------
# The worker interceptor


class Observability(Interceptor):
    """Counts business metrics outside replay and binds ids to activity log lines.

    ``operator_actions``: the names of the signals and updates operators send (the worker
    passes the workflows' own), so the counter shows each from 0."""

    def __init__(self, operator_actions: Iterable[str] = ()) -> None:
        for action in operator_actions:
            OPERATOR_ACTIONS.labels(action)

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityObserver(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _WorkflowObserver


class _ActivityObserver(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        request = input.args[0] if input.args else None
        with logs.bound(
            workflow_id=info.workflow_id,
            signal_id=getattr(request, "signal_id", None)
            or ids.signal_id_of(info.workflow_id or ""),
            account_id=getattr(request, "account_id", None),
        ):
            is_order = info.activity_type == activity_name(Execution.place_and_follow_order)
            try:
                result = await self.next.execute_activity(input)
            except ApplicationError as err:
                if is_order and err.type == ErrorType.BROKER_REJECTED:
                    ORDERS.labels(OrderStatus.REJECTED.value).inc()
                    log.info("order rejected by the broker: %s", err.message)
                elif is_order and err.type == ErrorType.ORDER_REFUSED:
                    log.info("order refused at the last gate: %s", err.message)
                raise
            outcomes = [result] if isinstance(result, OrderOutcome) else []
            if isinstance(result, SliceOutcome):
                # Each order of a slice once it ends; one still working is counted when its
                # leg's own activity ends it.
                outcomes = [r.outcome for r in result.results if r.outcome and not r.working]
            for outcome in outcomes:
                ORDERS.labels(outcome.status).inc()
                log.info(
                    "order %s %s: filled %s of %s at %s",
                    outcome.client_order_id,
                    outcome.status,
                    _plain(outcome.filled_quantity),
                    _plain(outcome.quantity),
                    _plain(outcome.average_price),
                )
            return result


def _plain(value: Decimal | None) -> str:
    """``1.6500000000`` as ``1.65`` (and ``100`` as ``100``, not ``1E+2``)."""
    return "-" if value is None else plain(value)


class _WorkflowObserver(WorkflowInboundInterceptor):
    """Runs inside the workflow sandbox: it only reads, and records outside replay."""

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        _plaintext_in("the start input of", workflow.info().workflow_type)
        if not (input.args and isinstance(input.args[0], SignalWorkflowInput)):
            return await self.next.execute_workflow(input)
        try:
            result = await self.next.execute_workflow(input)
        except FailureError:
            # Only errors that fail the workflow; any other exception fails the workflow
            # *task*, which Temporal retries, and would count once per retry.
            _record_outside_replay(lambda: SIGNALS.labels("FAILED").inc())
            raise
        if isinstance(result, SignalReport):
            _record_outside_replay(lambda: record_report(result))
        return result

    def handle_signal(self, input: HandleSignalInput) -> Any:
        _plaintext_in("signal", input.signal)
        # Every signal a signal workflow takes is an operator's (pause, resume, unhalt).
        _record_outside_replay(lambda: OPERATOR_ACTIONS.labels(input.signal).inc())
        return self.next.handle_signal(input)

    async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
        _plaintext_in("update", input.update)
        # The handler runs only for updates the validator accepted: refusals are not counted.
        # Every update a signal workflow takes is an operator's (halt, cancel).
        _record_outside_replay(lambda: OPERATOR_ACTIONS.labels(input.update).inc())
        return await self.next.handle_update_handler(input)


def _record_outside_replay(record: Callable[[], object]) -> None:
    if workflow.unsafe.is_replaying():
        return
    # prometheus_client takes a lock and reads the clock for a new label: harmless side
    # effects that change no workflow decision, let through the sandbox on purpose.
    with workflow.unsafe.sandbox_unrestricted():
        record()

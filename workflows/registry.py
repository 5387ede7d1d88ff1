"""Every workflow type the worker runs, in one list: the worker registers them and the replayer
(``orchestrator.services.history``) replays against them."""

from __future__ import annotations

from workflows.archive import ArchiveWorkflow
from workflows.children import OrderRerouteWorkflow, PartialFillCompletionWorkflow
from workflows.signal import LegBatchWorkflow, SignalExecutionWorkflow

WORKFLOWS: list[type] = [
    SignalExecutionWorkflow,
    LegBatchWorkflow,
    PartialFillCompletionWorkflow,
    OrderRerouteWorkflow,
    ArchiveWorkflow,
]

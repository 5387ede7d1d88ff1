"""Every workflow type the worker runs, in one list: the worker registers them and the replayer
(``orchestrator.services.history``) replays against them."""

from __future__ import annotations

from workflows.actions import TradeActionWorkflow
from workflows.archive import ArchiveWorkflow
from workflows.batch import LegBatchWorkflow
from workflows.completion import PartialFillCompletionWorkflow
from workflows.positions import PositionsWorkflow
from workflows.reroute import OrderRerouteWorkflow
from workflows.signal import SignalExecutionWorkflow
from workflows.sync import AccountSyncWorkflow

WORKFLOWS: list[type] = [
    SignalExecutionWorkflow,
    LegBatchWorkflow,
    PartialFillCompletionWorkflow,
    OrderRerouteWorkflow,
    PositionsWorkflow,
    TradeActionWorkflow,
    ArchiveWorkflow,
    AccountSyncWorkflow,
]
"""Workflows: deterministic orchestration only. No I/O, clock or randomness of their own."""

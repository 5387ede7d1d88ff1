"""The archive activity: needs the Temporal client (visibility and histories), so it is an
``async def`` on the worker's event loop, heartbeating after each signal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from temporalio import activity
from temporalio.client import Client

from orchestrator.domain.contracts.activities import Archive
from orchestrator.domain.contracts.payloads import ArchiveRequest, ArchiveResult
from orchestrator.services import archive


class ArchiveActivities(Archive):
    """The archive activity (see :class:`~orchestrator.domain.contracts.activities.Archive`)."""

    def __init__(self, client: Client, archive_dir: Path) -> None:
        self._client = client
        self._archive_dir = archive_dir

    @activity.defn
    async def archive_closed_signals(self, request: ArchiveRequest) -> ArchiveResult:
        return await archive.archive_closed_signals(
            self._client,
            self._archive_dir,
            request,
            progress=activity.heartbeat,
        )

    def all(self) -> list[Callable[..., object]]:
        return [self.archive_closed_signals]

"""Fixtures shared by the component tests: a database per dialect, a fake clock, the CLI."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import starter
from orchestrator.adapters.db.engine import Database
from orchestrator.config import get_settings


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> Database:
    """The same test against a fresh migrated SQLite file and a fresh PostgreSQL database."""
    database: Database = request.getfixturevalue(f"{request.param}_db")
    return database


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, *, ms: int) -> None:
        self.now += timedelta(milliseconds=ms)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))


CliRunner = Callable[..., int]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """Run ``starter.main(argv)`` with ``TEO_DATABASE_URL`` pointing at ``database_url``.

    ``get_settings`` is cached, so the cache is cleared around every run. The command runs on a
    thread of its own: ``asyncio.run`` there cannot disturb the event loop of this thread.
    """

    def run(database_url: str, *argv: str) -> int:
        monkeypatch.setenv("TEO_DATABASE_URL", database_url)
        get_settings.cache_clear()
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                return pool.submit(starter.main, list(argv)).result()
        finally:
            get_settings.cache_clear()

    yield run
    get_settings.cache_clear()


def migrated_sqlite(path: Path) -> str:
    """The URL of a new SQLite file at ``path``, migrated to the latest schema (as `db upgrade`
    does): the other commands refuse a database without the code's schema."""
    url = f"sqlite:///{path}"
    db = Database(url)
    try:
        db.migrate()
    finally:
        db.dispose()
    return url

"""Engine, transactions and migrations for the orchestrator's database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class Database:
    """One engine and session factory; :meth:`transaction` is the unit of work."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        pool_size: int | None = None,
        pre_ping: bool = True,
    ) -> None:
        """``pool_size``: connections kept open (server databases), none opened beyond. A
        worker passes ``TEO_DATABASE_POOL_SIZE``: with SQLAlchemy's default (5, and 10 more
        opened and closed again on demand) a busy worker opened a PostgreSQL connection per
        transaction.

        ``pre_ping``: test a pooled connection before each transaction (a round trip), so one
        the server dropped (a restart) is replaced instead of failing the caller. The worker
        turns it off: its activities retry, and the failed attempt has already made the pool
        replace every connection of the lost server."""
        self.url = url
        kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": pre_ping}
        if pool_size is not None and not url.startswith("sqlite"):
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = 0
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        self.engine: Engine = create_engine(url, **kwargs)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin_immediate)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session inside one transaction: committed whole on success, rolled back whole on
        any exception."""
        with self._sessions() as session, session.begin():
            yield session

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (default: the latest), idempotently."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling would defer BEGIN; we issue BEGIN IMMEDIATE below so
    # a read-then-write unit of work holds the write lock from its first statement.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")

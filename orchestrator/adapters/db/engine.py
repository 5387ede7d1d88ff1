"""Engine, transactions and migrations for the orchestrator's database."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.domain.errors import OrchestratorError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
UPGRADE_COMMAND = "python starter.py db upgrade"
"""The one way to migrate (docker-compose runs it as the ``migrate`` one-shot)."""

log = logging.getLogger(__name__)


class SchemaNotCurrent(OrchestratorError):
    """The database's schema is older than this code's, or absent: refused after reading its
    Alembic version table, before anything else was read or written.

    Attributes:
        url: The database's URL, its password hidden.
        revision: The database's Alembic revision(s), comma-separated; ``None`` when it has no
            schema yet.
        head: The revision this code needs: its newest migration.
    """

    def __init__(self, url: str, revision: str | None, head: str) -> None:
        self.url = url
        self.revision = revision
        self.head = head
        where = (
            f"has no schema yet (this code needs revision {head})"
            if revision is None
            else f"is at revision {revision}, this code needs {head}"
        )
        super().__init__(f"the database at {url} {where}: run `{UPGRADE_COMMAND}`")


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

    @property
    def display_url(self) -> str:
        """The URL to show a person or a log: the password, if the URL carries one, hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (default: the latest), idempotently.

        ``starter.py db upgrade`` is the one way to migrate a deployment's database; only the
        demo and ``worker.py --dev`` (development setups) migrate the database they run on.
        Every other entry point calls :meth:`require_current`."""
        config = self._alembic_config()
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    def require_current(self) -> None:
        """Refuse to work on a database whose schema is older than this code's, or absent:
        raise :class:`SchemaNotCurrent` naming both revisions and the command that migrates.
        Reads the Alembic version table only; never creates or changes anything (a SQLite file
        that does not exist is not created).

        A revision this code does not know passes with a warning: a newer version has migrated
        the database, and the upgrade rule ("migrate first", docs/production.md) is that the
        previous version keeps running against the new schema during a rollout."""
        script = ScriptDirectory.from_config(self._alembic_config())
        heads = sorted(script.get_heads())
        head = ", ".join(heads)
        if not self._file_exists():
            raise SchemaNotCurrent(self.display_url, None, head)
        with self.engine.connect() as connection:
            current = sorted(MigrationContext.configure(connection).get_current_heads())
        if current == heads:
            return
        if not current:
            raise SchemaNotCurrent(self.display_url, None, head)
        revision = ", ".join(current)
        if any(not _known(script, rev) for rev in current):
            log.warning(
                "the database at %s is at revision %s, which this code (revision %s) does not "
                "know: a newer version migrated it; carrying on, as during a rollout",
                self.display_url,
                revision,
                head,
            )
            return
        raise SchemaNotCurrent(self.display_url, revision, head)

    def _file_exists(self) -> bool:
        """False only for a SQLite file that does not exist (connecting would create it)."""
        path = self.engine.url.database
        if self.engine.dialect.name != "sqlite" or not path or path == ":memory:":
            return True
        return Path(path).exists()

    def _alembic_config(self) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return config

    def dispose(self) -> None:
        self.engine.dispose()


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:  # alembic's ResolutionError: no such revision in these scripts
        return False


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

"""What the starter's commands share: the console they print to, the database they open
(checked, never migrated) and the operator's name."""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager

from orchestrator.adapters.db.engine import Database
from orchestrator.config import Settings
from orchestrator.interfaces import display

out = display.console()


@contextmanager
def current_database(settings: Settings) -> Iterator[Database]:
    """The configured database, once :meth:`Database.require_current` has found its schema to
    be this code's (else :class:`SchemaNotCurrent`, exit code 1); disposed afterwards. Only
    ``db upgrade`` migrates ("migrate first", docs/production.md)."""
    db = Database(settings.database_url)
    try:
        db.require_current()
        yield db
    finally:
        db.dispose()


def default_operator() -> str:
    return os.environ.get("TEO_OPERATOR") or getpass.getuser() or "unknown"

"""What the starter's commands share: the console they print to, the database they open
(checked, never migrated), the operator's name, and the ledger commands' filters and JSON
decimals."""

from __future__ import annotations

import argparse
import getpass
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from orchestrator.adapters.db.engine import Database
from orchestrator.config import Settings
from orchestrator.domain.errors import ValidationFailed
from orchestrator.domain.values import ID_PATTERN, plain
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


def decimal_text(value: Decimal | None) -> str | None:
    """A decimal for JSON output: a string as written (``0.4``, not ``0.4000000000``)."""
    return None if value is None else plain(value)


def ledger_filters(args: argparse.Namespace) -> str:
    """The ``--signal``/``--account`` filters of a ledger command, checked (each an id, else
    :class:`ValidationFailed`, exit 2), and in words for a table's title."""
    given = [(n, v) for n, v in (("signal", args.signal), ("account", args.account)) if v]
    problems = [(n, f"not an id: {v!r}") for n, v in given if not re.fullmatch(ID_PATTERN, v)]
    if problems:
        raise ValidationFailed("flags", problems)
    return " ".join(f"of {name} {value}" for name, value in given)

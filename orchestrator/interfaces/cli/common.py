"""What the starter's commands share: the console they print to and the operator's name."""

from __future__ import annotations

import getpass
import os

from orchestrator.interfaces import display

out = display.console()


def default_operator() -> str:
    return os.environ.get("TEO_OPERATOR") or getpass.getuser() or "unknown"

"""A FIX connection's configuration: the file a worker reads and the QuickFIX settings it makes."""

from __future__ import annotations

import json
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.adapters.files import read_text
from orchestrator.domain.errors import ValidationFailed

DICTIONARY_DIR = Path(sys.prefix) / "share" / "quickfix"
"""Where ``quickfix-py`` installs the FIX data dictionaries (FIX42.xml, FIX44.xml, …)."""


class FixSessionConfig(BaseModel):
    """One FIX connection: where, who, which version, and how orders are expressed.

    Credentials come from the environment (``password_env``) or a secret file
    (``password_file``), read when the session logs on; never from workflow inputs.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    """The connection's name in logs and docs (``ordermatch``, ``prime-broker-1``)."""
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    begin_string: Literal["FIX.4.2", "FIX.4.4"] = "FIX.4.4"
    sender_comp_id: str
    target_comp_id: str
    heartbeat_s: int = Field(default=30, ge=1)
    reconnect_interval_s: int = Field(default=5, ge=1)
    store_dir: Path
    """QuickFIX's file store: sequence numbers and sent messages, kept across restarts."""
    log_dir: Path | None = None
    """QuickFIX's message log (every message in and out); none when unset."""
    tls: bool = False
    """Use QuickFIX's SSL initiator. Not exercised by the test suite (the peers speak plain TCP)."""
    username: str | None = None
    """Sent as Username (553) on Logon."""
    password_env: str | None = None
    """Environment variable holding the Logon password (554)."""
    password_file: Path | None = None
    """File holding the Logon password; used when ``password_env`` is unset or empty."""
    units_per_lot: Decimal = Field(default=Decimal(1), gt=0)
    """OrderQty = lots × this (e.g. 100000 for FX in currency units, 100 for a peer that only
    takes whole numbers and 0.01-lot steps). Reports are divided back into lots."""
    ack_timeout_s: float = Field(default=5.0, gt=0)
    """How long ``submit``, ``cancel``, ``replace``, a status request and a question about the
    account (positions, collateral, mass status) wait for the counterparty's answer."""
    status_requests: bool = True
    """Whether the counterparty answers OrderStatusRequest. When it does not (QuickFIX's example
    programs), an order this process has not seen since it started is reported unknown."""
    cancel_replace: bool = True
    """Whether the counterparty takes OrderCancelReplaceRequest (35=G). When false, ``replace``
    raises ``ReplaceNotSupported`` without sending anything, and the caller cancels and submits
    anew. A counterparty that refuses G as an unsupported message type although this says true
    gets the same answer, with a message naming this setting."""
    task_queue: str | None = None
    """Task queue of the worker that owns this session (session affinity); the accounts on this
    connection must have their activities routed there."""

    def password(self) -> str | None:
        if self.password_env and os.environ.get(self.password_env):
            return os.environ[self.password_env]
        if self.password_file is not None:
            return self.password_file.read_text(encoding="utf-8").strip()
        return None

    def session_settings_text(self) -> str:
        """The QuickFIX settings of this one initiator session."""
        version = self.begin_string.replace("FIX.", "").replace(".", "")
        lines = [
            "[DEFAULT]",
            "ConnectionType=initiator",
            f"FileStorePath={self.store_dir}",
            f"ReconnectInterval={self.reconnect_interval_s}",
            "StartTime=00:00:00",
            "EndTime=00:00:00",
            "UseDataDictionary=Y",
            f"DataDictionary={DICTIONARY_DIR / f'FIX{version}.xml'}",
            "ValidateUserDefinedFields=N",
            "AllowUnknownMsgFields=Y",
            "SocketNodelay=Y",
            "[SESSION]",
            f"BeginString={self.begin_string}",
            f"SenderCompID={self.sender_comp_id}",
            f"TargetCompID={self.target_comp_id}",
            f"SocketConnectHost={self.host}",
            f"SocketConnectPort={self.port}",
            f"HeartBtInt={self.heartbeat_s}",
        ]
        if self.log_dir is not None:
            lines.insert(3, f"FileLogPath={self.log_dir}")
        return "\n".join(lines) + "\n"


def load_fix_config(path: Path) -> FixSessionConfig:
    """Read a connection's configuration from a YAML or JSON file.

    A file that cannot be read, is not UTF-8 or is not YAML/JSON raises
    :class:`ValidationFailed` naming it; a field out of place raises pydantic's
    ``ValidationError``."""
    text = read_text(path)
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise ValidationFailed(str(path), [("", f"not valid {kind}: {exc}")]) from exc
    return FixSessionConfig.model_validate(data)

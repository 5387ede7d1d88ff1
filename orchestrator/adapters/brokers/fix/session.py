"""The QuickFIX engine for the process's life: one initiator per session id, and its callbacks.

Lifetime. A stopped initiator that is garbage-collected after another one with the same session
id was created crashed the process (docs/fix.md). So an initiator is created once per session id
per process and never released (:data:`_INITIATORS` keeps every one alive): stopping it leaves it
referenced, starting a second one on the same session id in the same process is refused
(:class:`FixSessionInUse`), and every one still running is stopped at exit.

Callbacks. QuickFIX calls the application on its own thread while holding that session's mutex
(see :mod:`.execution` for what the handlers may do there). They must not raise anything but
QuickFIX's own exceptions: a Python error escaping a director callback would abort the process,
so :class:`_Application` logs it and carries on.
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Protocol

import quickfix as fix

from orchestrator.adapters.brokers.fix.config import FixSessionConfig
from orchestrator.domain.errors import OrchestratorError

log = logging.getLogger(__name__)


class FixSessionInUse(OrchestratorError):
    """An initiator for this session id already exists in this process (one per lifetime)."""


class SessionHandler(Protocol):
    """What QuickFIX's callbacks are forwarded to (the broker)."""

    def on_logon(self) -> None: ...
    def on_logout(self) -> None: ...
    def to_admin(self, message: fix.Message) -> None: ...
    def from_admin(self, message: fix.Message) -> None: ...
    def to_app(self, message: fix.Message) -> None: ...
    def from_app(self, message: fix.Message) -> None: ...
    def stop(self) -> None: ...


_INITIATORS: list[tuple[object, ...]] = []
"""Every initiator this process created, with what it uses, kept alive until exit (see the
module docstring)."""
_SESSIONS_IN_USE: set[str] = set()
_INITIATORS_LOCK = threading.Lock()
_RUNNING: set[SessionHandler] = set()


@atexit.register
def _stop_all() -> None:
    """An initiator still running when the interpreter exits aborts the process: stop them."""
    for handler in list(_RUNNING):
        handler.stop()


def start_initiator(config: FixSessionConfig, handler: SessionHandler) -> object:
    """Create and start the initiator of ``config``'s session, its callbacks forwarded to
    ``handler``; :class:`FixSessionInUse` if this process already created one for it."""
    key = f"{config.begin_string}:{config.sender_comp_id}->{config.target_comp_id}"
    with _INITIATORS_LOCK:
        if key in _SESSIONS_IN_USE:
            raise FixSessionInUse(
                f"FIX session {key} already has an initiator in this process; QuickFIX "
                "initiators live for the process's lifetime"
            )
        _SESSIONS_IN_USE.add(key)
    config.store_dir.mkdir(parents=True, exist_ok=True)
    if config.log_dir is not None:
        config.log_dir.mkdir(parents=True, exist_ok=True)
    settings = fix.SessionSettings()
    settings.setFromString(config.session_settings_text())
    application = _Application(handler)
    store = fix.FileStoreFactory(settings)
    logs = fix.FileLogFactory(settings) if config.log_dir is not None else None
    initiator_type = fix.SSLSocketInitiator if config.tls else fix.SocketInitiator
    initiator = initiator_type(application, store, settings, logs)
    with _INITIATORS_LOCK:
        _INITIATORS.append((initiator, application, store, settings, logs))
    _RUNNING.add(handler)
    initiator.start()
    return initiator


def stop_initiator(handler: SessionHandler, initiator: object | None) -> None:
    """Stop ``initiator`` (logging out); it stays referenced until the process exits."""
    _RUNNING.discard(handler)
    if initiator is not None:
        initiator.stop()  # type: ignore[attr-defined]


class _Application(fix.Application):  # type: ignore[misc]
    """QuickFIX's callback interface, forwarding to the handler. Only QuickFIX's own exceptions
    may leave these methods; anything else is logged (an escaping Python error would abort)."""

    def __init__(self, handler: SessionHandler) -> None:
        super().__init__()
        self._handler = handler

    def onCreate(self, session_id: fix.SessionID) -> None:
        return None

    def onLogon(self, session_id: fix.SessionID) -> None:
        self._handler.on_logon()

    def onLogout(self, session_id: fix.SessionID) -> None:
        self._handler.on_logout()

    def toAdmin(self, message: fix.Message, session_id: fix.SessionID) -> None:
        try:
            self._handler.to_admin(message)
        except (OSError, ValueError, KeyError) as exc:
            log.exception("toAdmin failed: %s", exc)

    def fromAdmin(self, message: fix.Message, session_id: fix.SessionID) -> None:
        try:
            self._handler.from_admin(message)
        except (ValueError, KeyError, ArithmeticError) as exc:
            log.exception("fromAdmin failed: %s", exc)

    def toApp(self, message: fix.Message, session_id: fix.SessionID) -> None:
        try:
            self._handler.to_app(message)
        except fix.DoNotSend:
            raise  # on purpose: QuickFIX sends a gap fill instead
        except (ValueError, KeyError) as exc:
            log.exception("toApp failed: %s", exc)

    def fromApp(self, message: fix.Message, session_id: fix.SessionID) -> None:
        try:
            self._handler.from_app(message)
        except (ValueError, KeyError, ArithmeticError) as exc:
            log.exception("fromApp failed: %s", exc)

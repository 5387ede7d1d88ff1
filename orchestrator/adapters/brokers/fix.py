"""The FIX 4.2 / 4.4 broker adapter, on the QuickFIX engine (``quickfix-py``).

One :class:`FixBroker` owns one FIX session (one initiator) to one counterparty. QuickFIX does
the session layer: logon, heartbeats, sequence numbers, resend and gap fill, persisted in a
file store so a restarted worker continues the same sequence. This module does the application
layer: NewOrderSingle (D), OrderCancelRequest (F), OrderStatusRequest (H) out; ExecutionReport
(8), OrderCancelReject (9), session Reject (3) and BusinessMessageReject (j) in.

Threading. QuickFIX calls the application (``fromApp``, ``toApp``, …) on its own thread while
holding that session's mutex; our activities call :class:`FixBroker` from the worker's thread
pool. What this relies on, and how it stays safe:

- Every piece of order state lives in :class:`_Book`, guarded by one ``threading.Condition``.
  Callbacks update it and ``notify_all``; callers wait on it with a deadline.
- Nothing calls into QuickFIX while holding that lock, and callbacks never send. So the only
  lock order is "QuickFIX session mutex → our lock", and no cycle is possible.
- ``quickfix-py`` releases the GIL inside its C++ calls (it links ``PyEval_SaveThread``) and
  takes it for callbacks, so an activity thread blocked in ``sendToTarget`` on the session
  mutex does not starve the callback that holds it.
- Callbacks must not raise anything but QuickFIX's own exceptions: a Python error escaping a
  director callback would abort the process, so handlers log and carry on.

Lifetime. A stopped initiator that is garbage-collected after another one with the same session
id was created crashed the process (FIELD-NOTES). So an initiator is created once per session id
per process and never released (:data:`_INITIATORS` keeps every one alive): :meth:`FixBroker.stop`
stops it, and starting a second broker on the same session id in the same process is refused.

Safety rules (each has a test):

- Never send while the session is down: QuickFIX's ``sendToTarget`` would accept the message,
  store it and deliver it after the next logon. :class:`FixNotConnected` (a retryable
  :class:`BrokerUnavailable`) is raised instead.
- A NewOrderSingle that QuickFIX would *resend* (PossDupFlag=Y, answering the peer's resend
  request) is dropped in ``toApp`` with ``DoNotSend``, so the peer gets a gap fill: an order the
  peer never saw is forgotten here and placed again by the activity's retry, never replayed
  late. Resent status requests are dropped the same way; a resent cancel is let through.
- A reject for a duplicate ClOrdID (OrdRejReason 6) means "already there": the adapter asks for
  that order's status instead of reporting a rejection.
- After a restart, an order this process has not seen is looked up with an OrderStatusRequest
  by ClOrdID (side and symbol come from the order lookup, i.e. the ledger).

Order states are read from OrdStatus (39), never from ExecType (150): FIX 4.2 reports fills with
ExecType 1/2, FIX 4.4 with F.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

import quickfix as fix
import yaml
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.adapters.brokers.base import BrokerOrder, Execution, OrderTicket
from orchestrator.adapters.files import read_text
from orchestrator.domain.errors import (
    BrokerUnavailable,
    InvalidOrderTransition,
    OrchestratorError,
    ValidationFailed,
)
from orchestrator.domain.orders import TERMINAL, OrderStatus, transition
from orchestrator.domain.values import OrderType, Side

log = logging.getLogger(__name__)

DICTIONARY_DIR = Path(sys.prefix) / "share" / "quickfix"
"""Where ``quickfix-py`` installs the FIX data dictionaries (FIX42.xml, FIX44.xml, …)."""

# FIX tags used here.
ACCOUNT, AVG_PX, CL_ORD_ID, CUM_QTY, EXEC_ID, EXEC_TRANS_TYPE = 1, 6, 11, 14, 17, 20
HANDL_INST, LAST_PX, LAST_QTY, MSG_SEQ_NUM, MSG_TYPE, ORDER_ID = 21, 31, 32, 34, 35, 37
ORDER_QTY, ORD_STATUS, ORD_TYPE, ORIG_CL_ORD_ID, POSS_DUP, PRICE = 38, 39, 40, 41, 43, 44
REF_SEQ_NUM, SIDE, SYMBOL, TEXT, TIME_IN_FORCE, TRANSACT_TIME = 45, 54, 55, 58, 59, 60
ORD_REJ_REASON, EXEC_TYPE, LEAVES_QTY, BUSINESS_REJECT_REF_ID = 103, 150, 151, 379
USERNAME, PASSWORD, TEST_REQ_ID = 553, 554, 112

ORD_REJ_UNKNOWN_ORDER = "5"
ORD_REJ_DUPLICATE_ORDER = "6"
EXEC_TYPE_ORDER_STATUS = "I"

ORD_STATUS_MAP: dict[str, OrderStatus] = {
    "0": OrderStatus.NEW,
    "1": OrderStatus.PARTIALLY_FILLED,
    "2": OrderStatus.FILLED,
    "3": OrderStatus.EXPIRED,  # done for day: no more fills on this order
    "4": OrderStatus.CANCELLED,
    "6": OrderStatus.PENDING_CANCEL,
    "7": OrderStatus.NEW,  # stopped: still working at a guaranteed price
    "8": OrderStatus.REJECTED,
    "9": OrderStatus.NEW,  # suspended: still at the broker, may resume
    "A": OrderStatus.PENDING_SUBMIT,  # pending new
    "C": OrderStatus.EXPIRED,
    "D": OrderStatus.NEW,  # accepted for bidding
}
"""FIX OrdStatus (39) to our lifecycle. 5 (replaced), B (calculated) and E (pending replace)
are absent: this adapter never replaces orders, and for them the status is derived from the
cumulative quantity instead (see :func:`_status_of`)."""


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
    """How long ``submit``, ``cancel`` and a status request wait for the counterparty's answer."""
    status_requests: bool = True
    """Whether the counterparty answers OrderStatusRequest. When it does not (QuickFIX's example
    programs), an order this process has not seen since it started is reported unknown."""
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


class FixNotConnected(BrokerUnavailable):
    """The FIX session is not logged on: nothing was sent. Retry later with the same id."""


class FixSessionInUse(OrchestratorError):
    """An initiator for this session id already exists in this process (one per lifetime)."""


@dataclass(frozen=True, slots=True)
class OrderRef:
    """What an OrderStatusRequest or OrderCancelRequest needs besides the ClOrdID."""

    client_order_id: str
    account_id: str
    symbol: str
    side: Side
    quantity: Decimal
    """In lots."""
    booked_quantity: Decimal = Decimal(0)
    """Lots already booked in our ledger (by an earlier process), at ``booked_price``."""
    booked_price: Decimal | None = None


OrderLookup = Callable[[str], OrderRef | None]
"""Finds an order we placed by its client order id (the worker reads the ledger)."""


@dataclass(slots=True)
class _Order:
    ref: OrderRef
    status: OrderStatus = OrderStatus.PENDING_SUBMIT
    broker_order_id: str | None = None
    executions: list[Execution] = field(default_factory=list)
    execution_ids: set[str] = field(default_factory=set)
    reject_text: str | None = None
    answered: bool = False
    """The counterparty has said something about this order (a report or a reject)."""
    duplicate: bool = False
    """The counterparty refused it as a duplicate ClOrdID: it already has one."""
    unknown: bool = False
    """The counterparty said it does not know this ClOrdID."""

    def view(self) -> BrokerOrder:
        return BrokerOrder(
            client_order_id=self.ref.client_order_id,
            broker_order_id=self.broker_order_id,
            status=self.status,
            quantity=self.ref.quantity,
            executions=tuple(self.executions),
            reject_text=self.reject_text,
        )


@dataclass(slots=True)
class _Request:
    """An outgoing message we may need to match a session or business reject to."""

    msg_type: str
    client_order_id: str
    rejected: str | None = None


class _Book:
    """All order state, under one condition variable. Never held while calling QuickFIX."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.orders: dict[str, _Order] = {}
        self.cancel_ids: dict[str, str] = {}
        """Cancel request ClOrdID → the order's ClOrdID."""
        self.by_seq: dict[int, _Request] = {}
        """Our outgoing MsgSeqNum → what it asked, to place a Reject (3) or (j)."""
        self.logged_on = False
        """Logged on *and* synchronised: the TestRequest we sent after logon was answered, so
        any resend or gap fill the logon triggered is behind us. Orders wait for this."""
        self.session_up = False
        """QuickFIX's own view: logged on, possibly still synchronising."""
        self.logons = 0
        self.probe: str | None = None
        """TestReqID of the post-logon TestRequest still unanswered."""


_MAX_TRACKED_SEQS = 100_000
"""Outgoing sequence numbers remembered to place a late Reject; the oldest are forgotten."""

_INITIATORS: list[tuple[object, ...]] = []
"""Every initiator this process created, with what it uses, kept alive until exit (see the
module docstring)."""
_SESSIONS_IN_USE: set[str] = set()
_INITIATORS_LOCK = threading.Lock()
_RUNNING: set[FixBroker] = set()


@atexit.register
def _stop_all() -> None:
    """An initiator still running when the interpreter exits aborts the process: stop them."""
    for broker in list(_RUNNING):
        broker.stop()


class FixBroker:
    """A :class:`orchestrator.adapters.brokers.base.Broker` over one FIX session.

    Call :meth:`start` once (it connects in the background and keeps reconnecting), and
    :meth:`stop` before the process exits.
    """

    def __init__(
        self,
        config: FixSessionConfig,
        *,
        order_lookup: OrderLookup | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config
        self._lookup = order_lookup or (lambda _id: None)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._book = _Book()
        self._session_id: object | None = None
        self._initiator: object | None = None
        self._cancel_seq = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.config
        key = f"{cfg.begin_string}:{cfg.sender_comp_id}->{cfg.target_comp_id}"
        with _INITIATORS_LOCK:
            if key in _SESSIONS_IN_USE:
                raise FixSessionInUse(
                    f"FIX session {key} already has an initiator in this process; QuickFIX "
                    "initiators live for the process's lifetime"
                )
            _SESSIONS_IN_USE.add(key)
        cfg.store_dir.mkdir(parents=True, exist_ok=True)
        if cfg.log_dir is not None:
            cfg.log_dir.mkdir(parents=True, exist_ok=True)
        settings = fix.SessionSettings()
        settings.setFromString(cfg.session_settings_text())
        application = _Application(self)
        store = fix.FileStoreFactory(settings)
        logs = fix.FileLogFactory(settings) if cfg.log_dir is not None else None
        initiator_type = fix.SSLSocketInitiator if cfg.tls else fix.SocketInitiator
        initiator = initiator_type(application, store, settings, logs)
        self._session_id = fix.SessionID(cfg.begin_string, cfg.sender_comp_id, cfg.target_comp_id)
        with _INITIATORS_LOCK:
            _INITIATORS.append((initiator, application, store, settings, logs))
        self._initiator = initiator
        _RUNNING.add(self)
        initiator.start()

    def stop(self) -> None:
        """Log out and stop the initiator. It stays referenced until the process exits."""
        _RUNNING.discard(self)
        if self._initiator is not None:
            self._initiator.stop()  # type: ignore[attr-defined]
            self._initiator = None
        with self._book.changed:
            self._book.logged_on = False
            self._book.session_up = False
            self._book.changed.notify_all()

    def is_logged_on(self) -> bool:
        with self._book.changed:
            return self._book.logged_on

    def wait_logged_on(self, timeout_s: float) -> bool:
        """Block until the session is logged on; ``False`` after ``timeout_s`` seconds."""
        with self._book.changed:
            return self._book.changed.wait_for(lambda: self._book.logged_on, timeout_s)

    def wait_logged_out(self, timeout_s: float) -> bool:
        """Block until the session is down; ``False`` after ``timeout_s`` seconds."""
        with self._book.changed:
            return self._book.changed.wait_for(lambda: not self._book.logged_on, timeout_s)

    @property
    def logons(self) -> int:
        """How many times the session has logged on since :meth:`start`."""
        with self._book.changed:
            return self._book.logons

    # -- the Broker protocol -------------------------------------------------------------------

    def submit(self, ticket: OrderTicket) -> BrokerOrder:
        """Send a NewOrderSingle and wait for the first answer (ack, fill or reject).

        Idempotent on the client order id within this process. A duplicate-ClOrdID reject from
        the counterparty is answered with a status request: the order that exists is returned.
        Raises :class:`FixNotConnected` when the session is down (nothing sent) and
        :class:`BrokerUnavailable` when no answer came in time (the order may exist: ask with
        :meth:`status` before sending again).
        """
        cid = ticket.client_order_id
        with self._book.changed:
            existing = self._book.orders.get(cid)
            if existing is not None and not existing.unknown:
                return existing.view()
            self._require_logged_on()
            order = _Order(
                OrderRef(cid, ticket.account_id, ticket.symbol, ticket.side, ticket.quantity)
            )
            self._book.orders[cid] = order
        try:
            self._send(self._new_order_single(ticket))
        except FixNotConnected:
            with self._book.changed:
                if self._book.orders.get(cid) is order:
                    del self._book.orders[cid]  # never sent: nothing to follow
            raise
        order = self._await_answer(cid, "NewOrderSingle")
        if order.unknown:
            raise BrokerUnavailable(f"{cid} was not delivered (gap-filled); send it again")
        if order.duplicate:
            # "Already there": the counterparty holds an order under this ClOrdID. Follow it.
            found = self._request_status(order.ref)
            if found is None:
                raise BrokerUnavailable(f"{cid} is a duplicate, yet its status is unknown")
            return found
        return order.view()

    def status(self, client_order_id: str) -> BrokerOrder | None:
        """The order as last reported. An order this process has no answer for yet is looked
        up with an OrderStatusRequest (when the counterparty answers those); ``None`` when the
        counterparty does not know it, or we never recorded it."""
        with self._book.changed:
            order = self._book.orders.get(client_order_id)
            if order is not None and order.answered and not order.unknown:
                return order.view()
        if not self.config.status_requests:
            return None if order is None or order.unknown else order.view()
        ref = order.ref if order is not None else self._lookup(client_order_id)
        if ref is None:
            return None
        return self._request_status(ref)

    def cancel(self, client_order_id: str) -> BrokerOrder | None:
        """Send an OrderCancelRequest for what is left and wait (bounded) for the outcome.

        A terminal order is returned as it is; an order the counterparty does not know is
        ``None``. If no answer comes in time the order is returned as last reported."""
        current = self.status(client_order_id)
        if current is None or current.status in TERMINAL:
            return current
        with self._book.changed:
            self._require_logged_on()
            order = self._book.orders[client_order_id]
            self._cancel_seq += 1
            cancel_id = f"{client_order_id}/C{self._cancel_seq}"
            self._book.cancel_ids[cancel_id] = client_order_id
            ref = order.ref
        self._send(self._cancel_request(ref, cancel_id))
        deadline = time.monotonic() + self.config.ack_timeout_s
        with self._book.changed:
            self._book.changed.wait_for(
                lambda: order.status in TERMINAL or cancel_id not in self._book.cancel_ids,
                max(0.0, deadline - time.monotonic()),
            )
            self._book.cancel_ids.pop(cancel_id, None)
            return order.view()

    def open_orders(self, account_id: str) -> list[BrokerOrder]:
        """Orders of the account seen by this process that are not terminal. (FIX has no
        portable "list my orders" request; a restarted process learns of older orders through
        :meth:`status`.)"""
        with self._book.changed:
            return [
                o.view()
                for o in self._book.orders.values()
                if o.ref.account_id == account_id and o.status not in TERMINAL and not o.unknown
            ]

    # -- sending -------------------------------------------------------------------------------

    def _require_logged_on(self) -> None:
        if not self._book.logged_on:
            raise FixNotConnected(
                f"FIX session {self.config.name} is not logged on; nothing was sent"
            )

    def _send(self, message: fix.Message) -> None:
        # Checked again right before sending (without our lock held: QuickFIX takes its session
        # mutex, and its callbacks take our lock under that mutex). A session that drops after
        # this check gets the message stored and, on resend, dropped in toApp (a gap fill).
        if not self.is_logged_on():
            raise FixNotConnected(
                f"FIX session {self.config.name} is not logged on; nothing was sent"
            )
        try:
            fix.Session.sendToTarget(message, self._session_id)
        except fix.SessionNotFound as exc:
            raise FixNotConnected(f"FIX session {self.config.name} not found") from exc

    def _header(self, msg_type: str) -> fix.Message:
        message = fix.Message()
        header = message.getHeader()
        header.setField(fix.BeginString(self.config.begin_string))
        header.setField(fix.MsgType(msg_type))
        return message

    def _qty(self, lots: Decimal) -> str:
        return _plain(lots * self.config.units_per_lot)

    def _new_order_single(self, ticket: OrderTicket) -> fix.Message:
        message = self._header("D")
        message.setField(CL_ORD_ID, ticket.client_order_id)
        message.setField(ACCOUNT, ticket.account_id)
        message.setField(HANDL_INST, "1")
        message.setField(SYMBOL, ticket.symbol)
        message.setField(SIDE, "1" if ticket.side is Side.BUY else "2")
        message.setField(TRANSACT_TIME, _utc_timestamp(self._clock()))
        message.setField(ORDER_QTY, self._qty(ticket.quantity))
        if ticket.order_type is OrderType.LIMIT:
            if ticket.limit_price is None:
                raise ValueError(f"limit order {ticket.client_order_id} has no limit price")
            message.setField(ORD_TYPE, "2")
            message.setField(PRICE, _plain(ticket.limit_price))
        else:
            message.setField(ORD_TYPE, "1")
        message.setField(TIME_IN_FORCE, "0")
        return message

    def _cancel_request(self, ref: OrderRef, cancel_id: str) -> fix.Message:
        message = self._header("F")
        message.setField(ORIG_CL_ORD_ID, ref.client_order_id)
        message.setField(CL_ORD_ID, cancel_id)
        message.setField(ACCOUNT, ref.account_id)
        message.setField(SYMBOL, ref.symbol)
        message.setField(SIDE, "1" if ref.side is Side.BUY else "2")
        message.setField(TRANSACT_TIME, _utc_timestamp(self._clock()))
        message.setField(ORDER_QTY, self._qty(ref.quantity))
        return message

    def _status_request(self, ref: OrderRef) -> fix.Message:
        message = self._header("H")
        message.setField(CL_ORD_ID, ref.client_order_id)
        message.setField(SYMBOL, ref.symbol)
        message.setField(SIDE, "1" if ref.side is Side.BUY else "2")
        return message

    def _request_status(self, ref: OrderRef) -> BrokerOrder | None:
        """Ask the counterparty about one ClOrdID and wait for its answer."""
        cid = ref.client_order_id
        with self._book.changed:
            self._require_logged_on()
            order = self._book.orders.setdefault(cid, _Order(ref))
            order.answered = order.unknown = order.duplicate = False
        self._send(self._status_request(ref))
        order = self._await_answer(cid, "OrderStatusRequest")
        return None if order.unknown else order.view()

    def _await_answer(self, cid: str, what: str) -> _Order:
        deadline = time.monotonic() + self.config.ack_timeout_s
        with self._book.changed:
            order = self._book.orders[cid]
            answered = self._book.changed.wait_for(
                lambda: order.answered or not self._book.logged_on,
                max(0.0, deadline - time.monotonic()),
            )
            if not order.answered and not self._book.logged_on:
                # Sent, then the session dropped. After the next logon the session layer
                # settles it: the peer's resend brings its answer, or its resend request for
                # our order becomes a gap fill and the order is forgotten (see to_app).
                raise BrokerUnavailable(
                    f"FIX session {self.config.name} dropped before {what} {cid} was answered"
                )
            if not answered:
                raise BrokerUnavailable(
                    f"no answer to {what} {cid} within {self.config.ack_timeout_s} s "
                    f"from {self.config.name}"
                )
            return order

    # -- callbacks (QuickFIX's thread, session mutex held) ---------------------------------------

    def on_logon(self) -> None:
        # Not ready yet: a logon after a gap triggers a resend request, and an order sent
        # before that exchange is over would be resent as a possible duplicate and dropped.
        # The counterparty handles a TestRequest in sequence, after that exchange: its
        # Heartbeat marks the session ready. Sent from a thread of its own (callbacks never
        # send: see the module docstring).
        with self._book.changed:
            self._book.logons += 1
            self._book.session_up = True
            logon = self._book.logons
        log.info("FIX %s logged on; synchronising", self.config.name)
        threading.Thread(target=self._synchronise, args=(logon,), daemon=True).start()

    def _synchronise(self, logon: int) -> None:
        """Send TestRequests until one is answered, the session drops or logs on again. One
        can go unanswered: a TestRequest sent while the peer waits for our resend is covered by
        our gap fill (admin messages are never resent), so a later one is sent."""
        for attempt in range(1, 1000):
            probe = f"teo-ready-{logon}-{attempt}"
            with self._book.changed:
                book = self._book
                if book.logons != logon or book.logged_on or not book.session_up:
                    return
                book.probe = probe
            message = self._header("1")
            message.setField(TEST_REQ_ID, probe)
            try:
                fix.Session.sendToTarget(message, self._session_id)
            except fix.SessionNotFound:
                return
            with self._book.changed:
                self._book.changed.wait_for(
                    lambda: (
                        self._book.logged_on
                        or not self._book.session_up
                        or self._book.logons != logon
                    ),
                    min(self.config.ack_timeout_s, 1.0),
                )

    def on_logout(self) -> None:
        log.info("FIX %s logged out", self.config.name)
        with self._book.changed:
            self._book.logged_on = False
            self._book.session_up = False
            self._book.probe = None
            self._book.changed.notify_all()

    def to_admin(self, message: fix.Message) -> None:
        if _header_field(message, MSG_TYPE) != "A":
            return
        if self.config.username:
            message.setField(USERNAME, self.config.username)
        password = self.config.password()
        if password:
            message.setField(PASSWORD, password)

    def to_app(self, message: fix.Message) -> None:
        """Record what each outgoing MsgSeqNum asked; drop resends of orders (gap fill)."""
        msg_type = _header_field(message, MSG_TYPE) or ""
        cid = _field(message, CL_ORD_ID) or ""
        if _header_field(message, POSS_DUP) == "Y" and msg_type in {"D", "H"}:
            if msg_type == "D":
                with self._book.changed:
                    order = self._book.orders.get(cid)
                    if order is not None and not order.answered:
                        # The peer asked for it again, so it never got it: forget it, so
                        # status() says unknown and the activity's retry places it afresh.
                        order.unknown = True
                        order.answered = True
                        self._book.changed.notify_all()
                log.warning("FIX %s: not resending order %s (gap fill)", self.config.name, cid)
            raise fix.DoNotSend()
        seq = _header_field(message, MSG_SEQ_NUM)
        if seq is not None:
            target = cid
            if msg_type == "F":
                target = _field(message, ORIG_CL_ORD_ID) or cid
            with self._book.changed:
                self._book.by_seq[int(seq)] = _Request(msg_type, target)
                if len(self._book.by_seq) > _MAX_TRACKED_SEQS:
                    del self._book.by_seq[next(iter(self._book.by_seq))]

    def from_admin(self, message: fix.Message) -> None:
        msg_type = _header_field(message, MSG_TYPE)
        if msg_type == "3":
            self._on_reject(message, session_level=True)
        elif msg_type == "0" and _field(message, TEST_REQ_ID) is not None:
            with self._book.changed:
                if _field(message, TEST_REQ_ID) == self._book.probe:
                    self._book.probe = None
                    self._book.logged_on = True
                    self._book.changed.notify_all()
                    log.info("FIX %s ready", self.config.name)

    def from_app(self, message: fix.Message) -> None:
        msg_type = _header_field(message, MSG_TYPE)
        if msg_type == "8":
            self._on_execution_report(message)
        elif msg_type == "9":
            self._on_cancel_reject(message)
        elif msg_type == "j":
            self._on_reject(message, session_level=False)

    def _on_execution_report(self, message: fix.Message) -> None:
        cid = _field(message, CL_ORD_ID) or ""
        exec_id = _field(message, EXEC_ID) or ""
        ord_status = _field(message, ORD_STATUS) or ""
        with self._book.changed:
            known = cid in self._book.orders or cid in self._book.cancel_ids
        if not known:
            # A report for an order this process has not seen: sent to the process before a
            # restart (resent now, or arriving late). The ledger knows it. Looked up outside
            # our lock; QuickFIX's session mutex is held, so this delays only this session.
            ref = self._lookup(_field(message, ORIG_CL_ORD_ID) or cid)
            if ref is not None:
                with self._book.changed:
                    self._book.orders.setdefault(ref.client_order_id, _Order(ref))
        with self._book.changed:
            original = self._book.cancel_ids.pop(cid, None)
            if original is None and cid not in self._book.orders:
                original = _field(message, ORIG_CL_ORD_ID)
            order = self._book.orders.get(original or cid)
            if order is None:
                log.warning("FIX %s: report for unknown order %s", self.config.name, cid)
                return
            reason = _field(message, ORD_REJ_REASON)
            if ord_status == "8" and reason == ORD_REJ_DUPLICATE_ORDER:
                order.duplicate = True
                order.answered = True
                self._book.changed.notify_all()
                return
            if ord_status == "8" and reason == ORD_REJ_UNKNOWN_ORDER:
                order.unknown = True
                order.answered = True
                self._book.changed.notify_all()
                return
            order.broker_order_id = _field(message, ORDER_ID) or order.broker_order_id
            # ExecID is unique per session and day only (QuickFIX's examples count from 1 per
            # run): qualified by the ClOrdID, it is unique across restarts and ledgers.
            exec_id = f"{order.ref.client_order_id}/{exec_id}" if exec_id else ""
            execution = self._execution_of(message, exec_id)
            cum_lots = self._lots(_field(message, CUM_QTY))
            if execution is not None and self._is_new(order, execution, cum_lots):
                order.execution_ids.add(execution.execution_id)
                order.executions.append(execution)
            self._catch_up(order, cum_lots, _decimal(_field(message, AVG_PX)))
            status = _status_of(ord_status, order, cum_lots)
            order.status = _advance(order.status, status)
            if order.status is OrderStatus.REJECTED:
                order.reject_text = _field(message, TEXT) or "rejected without a reason"
            order.answered = True
            order.unknown = False
            self._book.changed.notify_all()

    def _execution_of(self, message: fix.Message, exec_id: str) -> Execution | None:
        if _field(message, EXEC_TYPE) == EXEC_TYPE_ORDER_STATUS:
            return None  # a status answer repeats the state; it is not a new fill
        if _field(message, EXEC_TRANS_TYPE) in {"1", "2"}:
            return None  # FIX 4.2 cancel/correct of an earlier execution: not supported
        quantity = self._lots(_field(message, LAST_QTY))
        price = _decimal(_field(message, LAST_PX))
        if not quantity or quantity <= 0 or price is None or not exec_id:
            return None
        return Execution(
            execution_id=exec_id, quantity=quantity, price=price, executed_at=self._clock()
        )

    @staticmethod
    def _is_new(order: _Order, execution: Execution, cum_lots: Decimal | None) -> bool:
        """A fill not seen before, and not already covered by a catch-up (a late or resent
        report whose CumQty is no more than what is known)."""
        if execution.execution_id in order.execution_ids:
            return False
        known = order.ref.booked_quantity + sum((e.quantity for e in order.executions), Decimal(0))
        return cum_lots is None or cum_lots > known

    def _catch_up(self, order: _Order, cum_lots: Decimal | None, avg_px: Decimal | None) -> None:
        """Fills we never saw one by one (a status answer after a restart, a report lost while
        disconnected) become one execution: CumQty minus what is known, priced so that the
        average comes out at AvgPx. Its id is derived from CumQty, so a repeat is a duplicate.
        Caller holds the book's lock."""
        ref = order.ref
        known = ref.booked_quantity + sum((e.quantity for e in order.executions), Decimal(0))
        if cum_lots is None or avg_px is None or cum_lots <= known:
            return
        known_value = ref.booked_quantity * (ref.booked_price or Decimal(0)) + sum(
            (e.quantity * e.price for e in order.executions), Decimal(0)
        )
        missing = cum_lots - known
        execution = Execution(
            execution_id=f"{ref.client_order_id}/cum-{_plain(cum_lots)}",
            quantity=missing,
            price=(cum_lots * avg_px - known_value) / missing,
            executed_at=self._clock(),
        )
        if execution.execution_id in order.execution_ids:
            return
        order.execution_ids.add(execution.execution_id)
        order.executions.append(execution)

    def _lots(self, value: str | None) -> Decimal | None:
        quantity = _decimal(value)
        return None if quantity is None else quantity / self.config.units_per_lot

    def _on_cancel_reject(self, message: fix.Message) -> None:
        cancel_id = _field(message, CL_ORD_ID) or ""
        with self._book.changed:
            self._book.cancel_ids.pop(cancel_id, None)
            self._book.changed.notify_all()
        log.info(
            "FIX %s: cancel %s refused: %s", self.config.name, cancel_id, _field(message, TEXT)
        )

    def _on_reject(self, message: fix.Message, *, session_level: bool) -> None:
        """A session Reject (3) or BusinessMessageReject (j) of one of our messages."""
        seq = _field(message, REF_SEQ_NUM)
        text = _field(message, TEXT) or "rejected without a reason"
        kind = "session reject" if session_level else "business reject"
        with self._book.changed:
            request = self._book.by_seq.get(int(seq)) if seq and seq.isdigit() else None
            if request is None and not session_level:
                ref_id = _field(message, BUSINESS_REJECT_REF_ID)
                order = self._book.orders.get(ref_id or "")
                request = _Request("D", ref_id) if order is not None and ref_id else None
            if request is None:
                log.warning("FIX %s: %s of an unknown message: %s", self.config.name, kind, text)
                return
            order = self._book.orders.get(request.client_order_id)
            if request.msg_type == "D" and order is not None:
                order.status = _advance(order.status, OrderStatus.REJECTED)
                order.reject_text = text
                order.answered = True
            elif request.msg_type == "H" and order is not None:
                # The counterparty cannot answer status requests: report what we know.
                log.warning("FIX %s: status request refused: %s", self.config.name, text)
                order.answered = True
                order.unknown = not order.executions and order.broker_order_id is None
            else:
                for cancel_id, target in list(self._book.cancel_ids.items()):
                    if target == request.client_order_id:
                        del self._book.cancel_ids[cancel_id]
            self._book.changed.notify_all()


class _Application(fix.Application):  # type: ignore[misc]
    """QuickFIX's callback interface, forwarding to the broker. Only QuickFIX's own exceptions
    may leave these methods; anything else is logged (an escaping Python error would abort)."""

    def __init__(self, broker: FixBroker) -> None:
        super().__init__()
        self._broker = broker

    def onCreate(self, session_id: fix.SessionID) -> None:
        return None

    def onLogon(self, session_id: fix.SessionID) -> None:
        self._broker.on_logon()

    def onLogout(self, session_id: fix.SessionID) -> None:
        self._broker.on_logout()

    def toAdmin(self, message: fix.Message, session_id: fix.SessionID) -> None:
        try:
            self._broker.to_admin(message)
        except (OSError, ValueError, KeyError) as exc:
            log.exception("toAdmin failed: %s", exc)

    def fromAdmin(self, message: fix.Message, session_id: fix.SessionID) -> None:
        try:
            self._broker.from_admin(message)
        except (ValueError, KeyError, ArithmeticError) as exc:
            log.exception("fromAdmin failed: %s", exc)

    def toApp(self, message: fix.Message, session_id: fix.SessionID) -> None:
        try:
            self._broker.to_app(message)
        except fix.DoNotSend:
            raise  # on purpose: QuickFIX sends a gap fill instead
        except (ValueError, KeyError) as exc:
            log.exception("toApp failed: %s", exc)

    def fromApp(self, message: fix.Message, session_id: fix.SessionID) -> None:
        try:
            self._broker.from_app(message)
        except (ValueError, KeyError, ArithmeticError) as exc:
            log.exception("fromApp failed: %s", exc)


def _field(message: fix.Message, tag: int) -> str | None:
    return str(message.getField(tag)) if message.isSetField(tag) else None


def _header_field(message: fix.Message, tag: int) -> str | None:
    header = message.getHeader()
    return str(header.getField(tag)) if header.isSetField(tag) else None


def _decimal(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None


def _plain(value: Decimal) -> str:
    """A decimal in plain notation without trailing zeros: FIX has no exponent form."""
    text = format(value.normalize(), "f")
    return text


def _utc_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d-%H:%M:%S.%f")[:-3]


def _status_of(ord_status: str, order: _Order, cum_lots: Decimal | None) -> OrderStatus:
    mapped = ORD_STATUS_MAP.get(ord_status)
    if mapped is not None:
        return mapped
    # Replaced / calculated / pending replace: derive from what has filled.
    if cum_lots is not None and cum_lots >= order.ref.quantity:
        return OrderStatus.FILLED
    if cum_lots:
        return OrderStatus.PARTIALLY_FILLED
    return order.status if order.status is not OrderStatus.PENDING_SUBMIT else OrderStatus.NEW


def _advance(current: OrderStatus, reported: OrderStatus) -> OrderStatus:
    """Move to the reported status if the lifecycle table allows it. A report that would go
    back (a late or repeated one: delivery is at least once) leaves the status as it is."""
    try:
        return transition(current, reported)
    except InvalidOrderTransition:
        log.debug("ignoring report %s for an order already %s", reported, current)
        return current

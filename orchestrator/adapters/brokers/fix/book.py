"""The state one FIX session shares between its callers and QuickFIX's callbacks, under one lock.

:class:`Book` holds every order, every pending cancel, replace and inquiry, and the session's
readiness, behind one ``threading.Condition`` (see :mod:`.execution` for the threading rules):
callbacks change it and ``notify_all``; callers wait on it with a deadline.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from orchestrator.adapters.brokers.base import AccountReading, BrokerOrder
from orchestrator.adapters.brokers.fix.parsing import OrderState

MAX_TRACKED_SEQS = 100_000
"""Outgoing sequence numbers remembered to place a late Reject; the oldest are forgotten."""


@dataclass(slots=True)
class Request:
    """An outgoing message we may need to match a session or business reject to."""

    msg_type: str
    ref_id: str
    """The ClOrdID it is about (the order's, for a cancel; the new one, for a replace) or the
    request id of an inquiry (PosReqID, CollInquiryID, MassStatusReqID)."""


ReplaceOutcome = Literal["replaced", "rejected", "unsupported", "duplicate", "not_delivered"]


@dataclass(slots=True)
class ReplaceAttempt:
    """An OrderCancelReplaceRequest waiting for its answer."""

    original: str
    """The ClOrdID of the order being replaced."""
    outcome: ReplaceOutcome | None = None
    text: str | None = None
    """The counterparty's words, verbatim, when it refused."""


InquiryKind = Literal["positions", "collateral", "mass_status"]


@dataclass(slots=True)
class Inquiry:
    """A question about an account (AN, BB or AF) and the answer as it comes in, report by
    report. ``done`` once complete or refused; ``failed`` means "no answer": the caller gets
    ``None``, never an empty (flat) answer."""

    kind: InquiryKind
    account_id: str
    done: bool = False
    failed: str | None = None
    """Why there is no usable answer (the counterparty's words, or ours)."""
    expected: int | None = None
    """How many reports the counterparty said it would send (TotalNumPosReports,
    TotNumReports), once it said so."""
    received: int = 0
    nets: dict[str, Decimal] = field(default_factory=dict)
    """Positions: net lots per symbol (long positive, short negative)."""
    reading: AccountReading | None = None
    orders: dict[str, BrokerOrder] = field(default_factory=dict)

    def fail(self, why: str) -> None:
        self.failed = why
        self.done = True

    def count(self) -> None:
        """One more report arrived; complete when it was the last one announced."""
        self.received += 1
        if self.expected is not None and self.received >= self.expected:
            self.done = True


class Book:
    """All order state, under one condition variable. Never held while calling QuickFIX."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.orders: dict[str, OrderState] = {}
        self.cancel_ids: dict[str, str] = {}
        """Cancel request ClOrdID → the order's ClOrdID."""
        self.replaces: dict[str, ReplaceAttempt] = {}
        """New ClOrdID of a replace request still waiting → the attempt."""
        self.inquiries: dict[str, Inquiry] = {}
        """Request id (PosReqID, CollInquiryID, MassStatusReqID) → the inquiry."""
        self.by_seq: dict[int, Request] = {}
        """Our outgoing MsgSeqNum → what it asked, to place a Reject (3) or (j)."""
        self.logged_on = False
        """Logged on *and* synchronised: the TestRequest we sent after logon was answered, so
        any resend or gap fill the logon triggered is behind us. Orders wait for this."""
        self.session_up = False
        """QuickFIX's own view: logged on, possibly still synchronising."""
        self.logons = 0
        self.probe: str | None = None
        """TestReqID of the post-logon TestRequest still unanswered."""

    def remember(self, seq: int, request: Request) -> None:
        self.by_seq[seq] = request
        if len(self.by_seq) > MAX_TRACKED_SEQS:
            del self.by_seq[next(iter(self.by_seq))]

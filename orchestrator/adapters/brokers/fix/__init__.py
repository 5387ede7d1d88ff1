"""The FIX 4.2 / 4.4 broker adapter, on the QuickFIX engine (``quickfix-py``).

One :class:`FixBroker` owns one FIX session (one initiator) to one counterparty. QuickFIX does
the session layer: logon, heartbeats, sequence numbers, resend and gap fill, persisted in a
file store so a restarted worker continues the same sequence. The adapter does the application
layer: NewOrderSingle (D: market, limit, stop), OrderCancelRequest (F),
OrderCancelReplaceRequest (G), OrderStatusRequest (H) and, over FIX 4.4, RequestForPositions
(AN), CollateralInquiry (BB) and OrderMassStatusRequest (AF) out; ExecutionReport (8),
OrderCancelReject (9), session Reject (3), BusinessMessageReject (j), RequestForPositionsAck
(AO), PositionReport (AP), CollateralInquiryAck (BG) and CollateralReport (BA) in.

- :mod:`.config`: a connection's configuration file and the QuickFIX settings it makes;
- :mod:`.tags`: FIX tag numbers and values;
- :mod:`.messages`: our commands and questions written as FIX messages (no I/O);
- :mod:`.parsing`: the OrdStatus mapping and what the counterparty's messages do to our orders
  (no I/O);
- :mod:`.reports`: answers about an account (positions, collateral, mass status) read from the
  counterparty's reports (no I/O);
- :mod:`.book`: the state callers and QuickFIX's callbacks share, under one lock;
- :mod:`.execution`: :class:`FixBroker` and the safety rules of sending;
- :mod:`.callbacks`: what QuickFIX's callbacks do to the book;
- :mod:`.session`: the QuickFIX initiator, one per session id for the process's life, and the
  callbacks it makes.
"""

from orchestrator.adapters.brokers.fix.callbacks import OrderLookup
from orchestrator.adapters.brokers.fix.config import (
    DICTIONARY_DIR,
    FixSessionConfig,
    load_fix_config,
)
from orchestrator.adapters.brokers.fix.execution import FixBroker, FixNotConnected
from orchestrator.adapters.brokers.fix.parsing import OrderRef
from orchestrator.adapters.brokers.fix.session import FixSessionInUse

__all__ = [
    "DICTIONARY_DIR",
    "FixBroker",
    "FixNotConnected",
    "FixSessionConfig",
    "FixSessionInUse",
    "OrderLookup",
    "OrderRef",
    "load_fix_config",
]

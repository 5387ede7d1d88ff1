"""The FIX 4.2 / 4.4 broker adapter, on the QuickFIX engine (``quickfix-py``).

One :class:`FixBroker` owns one FIX session (one initiator) to one counterparty. QuickFIX does
the session layer: logon, heartbeats, sequence numbers, resend and gap fill, persisted in a
file store so a restarted worker continues the same sequence. The adapter does the application
layer: NewOrderSingle (D), OrderCancelRequest (F), OrderStatusRequest (H) out; ExecutionReport
(8), OrderCancelReject (9), session Reject (3) and BusinessMessageReject (j) in.

- :mod:`.config`: a connection's configuration file and the QuickFIX settings it makes;
- :mod:`.parsing`: FIX tags, the OrdStatus mapping, our orders written as FIX messages and
  what the counterparty's messages do to them (no I/O);
- :mod:`.execution`: :class:`FixBroker`, the order book its callers and QuickFIX's callbacks
  share, and the safety rules of sending;
- :mod:`.session`: the QuickFIX initiator, one per session id for the process's life, and the
  callbacks it makes.
"""

from orchestrator.adapters.brokers.fix.config import (
    DICTIONARY_DIR,
    FixSessionConfig,
    load_fix_config,
)
from orchestrator.adapters.brokers.fix.execution import FixBroker, FixNotConnected, OrderLookup
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

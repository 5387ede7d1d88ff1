"""Reads and writes of the orchestrator's own records, a module per concept; this face names
what callers use. Every function takes the session of a unit of work (``Database.transaction()``)
and never commits on its own."""

from .book import REPLACE_STATE as REPLACE_STATE
from .book import BookLoad as BookLoad
from .book import StateReplacement as StateReplacement
from .book import account_rows as account_rows
from .book import export_book as export_book
from .book import save_book as save_book
from .book import symbol_known as symbol_known
from .controls import halt_reason as halt_reason
from .controls import is_halted as is_halted
from .controls import order_gate as order_gate
from .controls import record_action_receipt as record_action_receipt
from .controls import record_operator_action as record_operator_action
from .controls import set_account_status as set_account_status
from .controls import set_halt as set_halt
from .ledger import LedgerFill as LedgerFill
from .ledger import LedgerOrder as LedgerOrder
from .ledger import apply_broker_report as apply_broker_report
from .ledger import list_orders as list_orders
from .ledger import record_order_intent as record_order_intent
from .reservation import ALREADY_RESERVED as ALREADY_RESERVED
from .reservation import RESERVED as RESERVED
from .reservation import SETTLED as SETTLED
from .reservation import reserve_risk as reserve_risk
from .settlement import book_and_settle as book_and_settle
from .settlement import settle_reservation as settle_reservation
from .signals import record_signal as record_signal
from .snapshot import PLANNING_INPUTS_KEPT as PLANNING_INPUTS_KEPT
from .snapshot import load_returns as load_returns
from .snapshot import load_snapshot as load_snapshot
from .snapshot import planning_input_page as planning_input_page
from .snapshot import planning_input_pages as planning_input_pages
from .snapshot import store_planning_input as store_planning_input
from .tables import HALT_ROW as HALT_ROW

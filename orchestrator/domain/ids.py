"""Every id the system builds, and the reading of them back: workflow ids of signals and their
children, client order ids. Built and parsed here only.

Workflow ids are not encrypted (the payload codec covers payloads only), so they name a signal
and a leg (``leg-3``), never an account.
"""

from __future__ import annotations

SIGNAL_PREFIX = "signal-"
SEPARATOR = "/"


def signal_workflow_id(signal_id: str) -> str:
    """``signal-{id}``: the one workflow of a signal."""
    return f"{SIGNAL_PREFIX}{signal_id}"


def signal_id_of(workflow_id: str) -> str | None:
    """The signal a workflow id belongs to (its own or a descendant's); ``None`` for another
    kind of workflow."""
    head = workflow_id.split(SEPARATOR, 1)[0]
    if not head.startswith(SIGNAL_PREFIX):
        return None
    return head.removeprefix(SIGNAL_PREFIX)


def root_workflow_id(workflow_id: str) -> str:
    """The signal workflow a child's id descends from (itself for a signal workflow)."""
    return workflow_id.split(SEPARATOR, 1)[0]


def is_signal_workflow_id(workflow_id: str) -> bool:
    return SEPARATOR not in workflow_id and workflow_id.startswith(SIGNAL_PREFIX)


def batch_workflow_id(signal_workflow: str, number: int) -> str:
    """``signal-{id}/batch-{n}``, n from 1."""
    return f"{signal_workflow}{SEPARATOR}batch-{number}"


def leg_ref(sequence: int) -> str:
    """How a leg is named in its children's ids: ``leg-{n}``, its place in execution order."""
    return f"leg-{sequence}"


def reroute_ref(leg: str, hop: int) -> str:
    """``{leg}/reroute-{k}``: a reroute's k-th target (k from 1) under the leg it reroutes, as
    its completion child's id names it."""
    return f"{leg}{SEPARATOR}reroute-{hop}"


def child_workflow_id(signal_id: str, ref: str, kind: str) -> str:
    """``signal-{id}/{ref}/{kind}``: a leg's completion or reroute child (``ref`` names the leg,
    ``leg-3``, or a reroute's target under it, ``leg-3/reroute-1``)."""
    return f"{signal_workflow_id(signal_id)}{SEPARATOR}{ref}{SEPARATOR}{kind}"


def client_order_id(signal_id: str, account_id: str, business_sequence: int) -> str:
    """``{signal_id}:{account_id}:{n}``: the same leg and sequence always give the same id, and it
    never holds a retry attempt, so a retried activity can only find the order it placed."""
    return f"{signal_id}:{account_id}:{business_sequence}"


def protective_client_order_id(signal_id: str, account_id: str, code: str, generation: int) -> str:
    """``{signal}:{account}:S{n}`` (a stop, ``code`` S) or ``…:T{n}`` (a take-profit): derived
    from the position and the generation of its protection, never from a retry."""
    return f"{signal_id}:{account_id}:{code}{generation}"


def closing_client_order_id(signal_id: str, account_id: str, number: int) -> str:
    """``{signal}:{account}:C{n}``: the position's n-th closing order."""
    return f"{signal_id}:{account_id}:C{number}"


def closed_at_broker_execution_id(signal_id: str, account_id: str, mismatch_id: int) -> str:
    """``{signal}:{account}:B{n}``: the closing fill of a close at the broker that the n-th
    position mismatch showed (no order of ours: the fill is the reconciliation's)."""
    return f"{signal_id}:{account_id}:B{mismatch_id}"


def positions_workflow_id(owner_workflow_id: str) -> str:
    """``signal-{id}/positions`` (or ``signal-{id}/batch-{n}/positions``): the keeper of the
    positions the legs of ``owner_workflow_id`` opened."""
    return f"{owner_workflow_id}{SEPARATOR}positions"


# Receipt keys: how a workflow names an operator action it records (deterministic, so a replay
# or retry records it once), and how the recording activity finds that action's event in the
# history again.

UPDATE_KEY = "update:"
SIGNAL_KEY = "signal:"
CANCELLATION_KEY = "cancellation"
"""Temporal's own cancellation request: one per run."""


def update_receipt_key(update_id: str) -> str:
    """``update:{update id}``: the update's own id."""
    return f"{UPDATE_KEY}{update_id}"


def update_id_of(key: str) -> str:
    """The update id an :func:`update_receipt_key` names."""
    return key.removeprefix(UPDATE_KEY)


def signal_receipt_key(name: str, count: int) -> str:
    """``signal:{name}:{n}``: the run's n-th receipt of signal ``name``."""
    return f"{SIGNAL_KEY}{name}:{count}"


def signal_of(key: str) -> tuple[str, int]:
    """The signal name and count a :func:`signal_receipt_key` names."""
    name, count = key.removeprefix(SIGNAL_KEY).split(":", 1)
    return name, int(count)

"""The architecture as the code must keep it (docs/architecture.md draws it):

- dependencies point one way between the rooms: a module imports only from its own room and the
  rooms beneath it; the domain imports nothing else of ours, workflows only the domain;
- no Temporal call names an activity, workflow, signal, update or query by a string: they are
  called by their definitions, so mypy checks each call's argument and result;
- every activity implementation the worker registers keeps to its contract;
- a module holds one concept: none is over about 500 lines unless its first lines say why.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from activities.actions import ActionActivities
from activities.archive import ArchiveActivities
from activities.control import ControlActivities
from activities.execution import ExecutionActivities
from activities.positions import PositionActivities
from activities.sync import AccountSyncActivities
from orchestrator.config import PROJECT_ROOT
from orchestrator.domain.contracts.activities import (
    CONTRACTS,
    AccountSync,
    Actions,
    Archive,
    Control,
    Execution,
    Positions,
)

OURS = ("orchestrator", "workflows", "activities")
"""Our top-level packages; imports of anything else are third-party or the standard library."""

ROOMS = {
    "domain": {"domain"},
    "config": {"domain", "config"},
    "adapters": {"domain", "config", "adapters"},
    "workflows": {"domain", "workflows"},
    "services": {"domain", "config", "adapters", "workflows", "services"},
    "activities": {"domain", "config", "adapters", "services", "activities"},
    "interfaces": {"domain", "config", "adapters", "workflows", "services", "interfaces"},
}
"""Each room, and the rooms its modules may import from. The entry points (``worker.py``,
``starter.py``, ``webhook.py``) compose everything and may import any room."""

DOMAIN_MAY_NOT_IMPORT = (
    "sqlalchemy",
    "psycopg",
    "httpx",
    "fastapi",
    "uvicorn",
    "quickfix",
    "temporalio.client",
    "temporalio.service",
    "temporalio.worker",
)
"""Libraries (and parts of them) that do I/O: the domain is pure."""


def does_io(imported: str) -> bool:
    return any(imported == lib or imported.startswith(f"{lib}.") for lib in DOMAIN_MAY_NOT_IMPORT)


def room_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "workflows":
        return "workflows"
    if parts[0] == "activities":
        return "activities"
    if parts[0] != "orchestrator" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in ROOMS else None


def module_name(path: Path) -> str:
    relative = path.relative_to(PROJECT_ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str) -> Iterator[tuple[int, str]]:
    """Every module ``source`` imports (relative imports resolved against ``module``)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level]
                base = ".".join([*package, base] if base else package)
            yield node.lineno, base
            for alias in node.names:  # ``from orchestrator import domain``: the submodule
                yield node.lineno, f"{base}.{alias.name}"


def violations(source: str, module: str) -> list[str]:
    """What ``module`` (of ``source``) imports against the rooms' one-way rule."""
    room = room_of(module)
    if room is None:
        return []
    found = []
    for line, imported in imports_of(source, module):
        top = imported.split(".")[0]
        if room == "domain" and does_io(imported):
            found.append(f"{module}:{line} imports {imported}: the domain does no I/O")
        if top not in OURS:
            continue
        target = room_of(imported)
        if target is None:
            if imported in ("orchestrator", "workflows", "activities"):
                continue
            found.append(f"{module}:{line} imports {imported}, which is in no room")
        elif target not in ROOMS[room]:
            found.append(f"{module}:{line} imports {imported}: {room} may not import {target}")
    return found


def production_modules() -> list[Path]:
    roots = [PROJECT_ROOT / name for name in OURS]
    return sorted(p for root in roots for p in root.rglob("*.py") if "migrations" not in p.parts)


def test_dependencies_point_one_way_between_the_rooms() -> None:
    found = [
        problem
        for path in production_modules()
        for problem in violations(path.read_text(encoding="utf-8"), module_name(path))
    ]
    assert found == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (
            "orchestrator.domain.planning.sizing",
            "from orchestrator.adapters.db import repository\n",
            "domain may not import adapters",
        ),
        (
            "workflows.legs",
            "with x:\n    from orchestrator.services import operators\n",
            "workflows may not import services",
        ),
        (
            "orchestrator.adapters.temporal",
            "from orchestrator.interfaces import display\n",
            "adapters may not import interfaces",
        ),
        ("orchestrator.domain.report", "import sqlalchemy\n", "the domain does no I/O"),
        (
            "orchestrator.domain.reports",
            "if TYPE_CHECKING:\n    from temporalio.client import Client\n",
            "the domain does no I/O",
        ),
        ("orchestrator.services.audit", "from .. import planning\n", "which is in no room"),
    ],
)
def test_an_import_from_a_room_above_is_caught(module: str, source: str, expected: str) -> None:
    """The rule above is not vacuous: a planted wrong import is reported, naming it."""
    problems = violations(source, module)
    assert problems and all(expected in problem for problem in problems), problems


STRING_NAMED_CALL = re.compile(
    r"""workflow\.(execute_activity|start_activity|execute_local_activity|start_local_activity)\("""
    r"""|(execute_child_workflow|start_child_workflow)\(\s*["']"""
    r"""|\.(signal|query|execute_update|start_update)\(\s*["']"""
    r"""|(start_workflow|execute_workflow|get_workflow_handle_for)\(\s*["']"""
    r"""|ScheduleActionStartWorkflow\(\s*["']"""
    r"""|WorkflowType\s*=\s*'\w"""
    r"""|\bresult_type="""
)
"""A Temporal call by a string name: ``workflow.execute_activity("name", …)`` (only the
``_method`` variants take a definition), a child, signal, query, update or scheduled workflow by
its name, a workflow type written into a visibility query, or a handle whose result type is
written by hand (``get_workflow_handle_for`` and ``get_update_handle_for`` take it from the
definition)."""


def string_named_calls(text: str) -> Iterator[tuple[int, str]]:
    """Each string-named call in ``text``: its line and the call, matched across line breaks
    (a call's arguments usually start on the next line)."""
    for match in STRING_NAMED_CALL.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        yield line, " ".join(match.group(0).split())


def test_no_temporal_call_names_its_target_by_a_string() -> None:
    found = [
        f"{path.relative_to(PROJECT_ROOT)}:{n}: {call}"
        for path in [*production_modules(), *PROJECT_ROOT.glob("*.py")]
        for n, call in string_named_calls(path.read_text(encoding="utf-8"))
    ]
    assert found == []


def test_the_string_check_sees_a_string_named_call() -> None:
    assert STRING_NAMED_CALL.search('await workflow.execute_activity("place", request)')
    assert STRING_NAMED_CALL.search('await handle.signal("pause_account", request)')
    assert not STRING_NAMED_CALL.search("await handle.signal(Workflow.pause_account, request)")
    assert STRING_NAMED_CALL.search('action=ScheduleActionStartWorkflow(\n    "ArchiveWorkflow",')
    assert STRING_NAMED_CALL.search('workflow.execute_child_workflow(\n    "LegBatchWorkflow",')
    assert STRING_NAMED_CALL.search("query = \"WorkflowType = 'PositionsWorkflow'\"")
    assert STRING_NAMED_CALL.search("client.get_workflow_handle(wid, result_type=SignalReport)")
    assert not STRING_NAMED_CALL.search("client.get_workflow_handle_for(Workflow.run, wid)")


IMPLEMENTATIONS = {
    Execution: ExecutionActivities,
    Control: ControlActivities,
    Positions: PositionActivities,
    Actions: ActionActivities,
    Archive: ArchiveActivities,
    AccountSync: AccountSyncActivities,
}
"""Each activity contract, and the implementation the worker registers for it."""


def test_every_contract_has_its_implementation() -> None:
    assert set(IMPLEMENTATIONS) == set(CONTRACTS)


@pytest.mark.parametrize(("contract", "implementation"), list(IMPLEMENTATIONS.items()))
def test_every_activity_implementation_keeps_to_its_contract(
    contract: type, implementation: type
) -> None:
    """Workflows call the contract's definitions; the worker runs the implementation's. Same
    names, same signatures, each method redefined (a forgotten one would run the contract's)."""
    assert contract in CONTRACTS and issubclass(implementation, contract)
    defined = {
        name
        for name, member in vars(contract).items()
        if inspect.isfunction(member) and not name.startswith("_")
    }
    assert defined
    for name in defined:
        mine = vars(implementation).get(name)
        assert mine is not None, f"{implementation.__name__} does not implement {name}"
        assert inspect.signature(mine) == inspect.signature(getattr(contract, name)), name
        assert inspect.iscoroutinefunction(mine) == inspect.iscoroutinefunction(
            getattr(contract, name)
        ), name


LONG = 500


def test_a_module_holds_one_concept() -> None:
    """No module over about 500 lines, unless its docstring's first lines say why (the word
    "long" in them)."""
    long = []
    for path in [*production_modules(), *PROJECT_ROOT.glob("*.py")]:
        text = path.read_text(encoding="utf-8")
        if text.count("\n") <= LONG:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if "long" not in " ".join(doc.splitlines()[:6]).lower():
            long.append(f"{path.relative_to(PROJECT_ROOT)}: {text.count(chr(10))} lines")
    assert long == []

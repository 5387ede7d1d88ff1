"""Plain-words helpers and tables of the terminal display."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from rich.console import Console
from rich.table import Table
from temporalio.api.workflow.v1 import WorkflowExecutionInfo
from temporalio.client import WorkflowExecution, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.converter import DataConverter

from orchestrator.adapters.db.schema import AccountRow, AccountStateRow
from orchestrator.domain import search_attributes as sa
from orchestrator.domain.actions import AccountOutcome, ActionKind, ActionReport, ActionStatus
from orchestrator.domain.report import AccountReport, LegStatus, SignalReport, SignalStatus
from orchestrator.domain.values import Side
from orchestrator.interfaces.display import (
    accounts_table,
    action_table,
    report_table,
    signal_state,
    signals_table,
)


@pytest.mark.parametrize(
    ("execution", "phase", "shown"),
    [
        ("RUNNING", "EXECUTING", "EXECUTING"),
        ("COMPLETED", "CANCELLED", "CANCELLED"),
        ("COMPLETED", "COMPLETED", "COMPLETED"),
        # Terminate runs no workflow code: the phase still says EXECUTING, Temporal knows.
        ("TERMINATED", "EXECUTING", "TERMINATED (Temporal)"),
        ("CANCELED", "EXECUTING", "CANCELED (Temporal)"),
        ("FAILED", "PLANNING", "FAILED (Temporal)"),
        ("RUNNING", None, "RUNNING"),
    ],
)
def test_a_signal_shows_one_state_and_a_dead_run_never_shows_executing(
    execution: str, phase: str | None, shown: str
) -> None:
    assert signal_state(execution, phase) == shown


def rendered(table: Table) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()


def cells(text: str, key: str) -> list[str]:
    """The cells of the rendered table's row that holds ``key``."""
    row = next(line for line in text.splitlines() if key in line)
    return [cell.strip() for cell in row.split("│")[1:-1]]


NOW = datetime(2026, 11, 24, 8, 0, 0, tzinfo=UTC)


def test_the_accounts_table_shows_each_accounts_state_its_source_and_age_and_positions() -> None:
    account = AccountRow(
        account_id="alpha-01", broker="alpha", status="ACTIVE", max_open_positions=10
    )
    state = AccountStateRow(
        account_id="alpha-01",
        equity=Decimal("100000"),
        peak_equity=Decimal("101000"),
        free_margin=Decimal("95000"),
        open_positions=3,
        source="reported",
        as_of=NOW - timedelta(seconds=42),
    )

    text = rendered(accounts_table([(account, state)], NOW))

    assert "1 accounts" in text
    assert cells(text, "alpha-01") == [
        "alpha-01",
        "alpha",
        "ACTIVE",
        "reported, 42s old",
        "100000",
        "101000",
        "95000",
        "3/10",
        "",
    ]


def test_the_accounts_table_shows_who_put_an_account_in_reduce_only_why_and_since_when() -> None:
    account = AccountRow(
        account_id="alpha-01",
        broker="alpha",
        status="ACTIVE",
        max_open_positions=10,
        reduce_only=True,
        reduce_only_reason="margin call",
        reduce_only_by="jane",
        reduce_only_at=datetime(2026, 11, 24, 7, 30, 5, tzinfo=UTC),
    )
    state = AccountStateRow(
        account_id="alpha-01",
        equity=Decimal("100000"),
        peak_equity=Decimal("101000"),
        free_margin=Decimal("95000"),
        open_positions=3,
        source="reported",
        as_of=NOW - timedelta(seconds=42),
    )

    text = rendered(accounts_table([(account, state)], NOW))

    assert cells(text, "alpha-01")[-1] == "by jane: margin call (since 2026-11-24 07:30:05)"


def test_the_signals_table_names_its_query_and_shows_one_state_per_signal() -> None:
    started = datetime(2026, 11, 24, 7, 30, 5, tzinfo=UTC)
    execution = WorkflowExecution(
        close_time=None,
        execution_time=started,
        history_length=12,
        id="signal-s-42",
        namespace="default",
        parent_id=None,
        parent_run_id=None,
        root_id=None,
        root_run_id=None,
        raw_info=WorkflowExecutionInfo(),
        run_id="run-1",
        search_attributes={},
        start_time=started,
        status=WorkflowExecutionStatus.TERMINATED,
        task_queue="trade-execution",
        typed_search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(sa.SYMBOL, "EURUSD"),
                SearchAttributePair(sa.SIDE, "BUY"),
                SearchAttributePair(sa.SIGNAL_STATUS, "EXECUTING"),
            ]
        ),
        workflow_type="SignalExecutionWorkflow",
        _context_free_data_converter=DataConverter.default,
    )

    text = rendered(signals_table([execution], "WorkflowType = 'SignalExecutionWorkflow'"))

    assert "1 signal(s)  (WorkflowType = 'SignalExecutionWorkflow')" in text
    assert cells(text, "signal-s-42") == [
        "signal-s-42",
        "EURUSD",
        "BUY",
        "TERMINATED (Temporal)",
        "2026-11-24 07:30:05",
    ]


def test_a_flatten_or_close_says_how_many_positions_it_closed_a_modify_does_not() -> None:
    lines = [
        AccountOutcome(
            signal_id="s-1", account_id="a", done="closed 1 of 1 @ 1.085", closed=Decimal(1)
        ),
        AccountOutcome(
            signal_id="s-1",
            account_id="b",
            done="not closed: rejected",
            open_quantity=Decimal(1),
            refused="not closed: rejected",
        ),
    ]
    flatten = ActionReport(
        action_id="f-1",
        action=ActionKind.FLATTEN,
        signal_id=None,
        status=ActionStatus.COMPLETED,
        message="2 position(s)",
        accounts=lines,
    )
    # One of the two positions it acted on closed (the other's close was refused).
    assert "FLATTEN f-1: COMPLETED — 2 position(s); 1 closed" in rendered(action_table(flatten))
    modify = flatten.model_copy(
        update={"action": ActionKind.MODIFY, "action_id": "m-1", "signal_id": "s-1"}
    )
    [title] = [line for line in rendered(action_table(modify)).splitlines() if "MODIFY" in line]
    assert title.strip() == "MODIFY m-1 of s-1: COMPLETED — 2 position(s)"
    # A CLOSE of half: nothing closed in full, both positions partly closed.
    halves = [
        line.model_copy(update={"closed": Decimal("0.5"), "open_quantity": Decimal("0.5")})
        for line in lines
    ]
    half = flatten.model_copy(
        update={"action": ActionKind.CLOSE, "action_id": "c-1", "accounts": halves}
    )
    assert "CLOSE c-1: COMPLETED — 2 position(s); 0 closed, 2 partly closed" in rendered(
        action_table(half)
    )


def test_the_report_writes_a_round_average_price_as_a_price_not_an_exponent() -> None:
    # USDJPY fills around 150.000: normalize() alone writes 1.5E+2.
    line = AccountReport(
        account_id="jpy-1",
        status=LegStatus.FILLED,
        requested=Decimal(1),
        filled=Decimal(1),
        average_price=Decimal("150.000"),
    )
    now = datetime(2026, 12, 6, 12, tzinfo=UTC)
    report = SignalReport(
        signal_id="s-yen",
        plan_version=1,
        status=SignalStatus.COMPLETED,
        side=Side.BUY,
        symbol="USDJPY",
        reference_price=Decimal("150.000"),
        started_at=now,
        finished_at=now,
        filled_total=Decimal(1),
        requested_total=Decimal(1),
        accounts=[line],
    )
    shown = rendered(report_table(report))
    assert "1.5E+2" not in shown
    assert " 150 " in shown

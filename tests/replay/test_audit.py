"""The audit of the checked-in histories: every scenario's trail, its value check and its fills;
an edited quantity caught as drift; a change of planning rules told apart from drift."""

from __future__ import annotations

import base64
import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from orchestrator.adapters.temporal import data_converter
from orchestrator.config import Settings
from orchestrator.domain import planning
from orchestrator.domain.errors import OrchestratorError
from orchestrator.domain.report import LegStatus
from orchestrator.services import audit, history
from starter import main as starter_main
from tests.replay.refresh import TEST_ONLY_KEYS

HISTORIES = Path(__file__).resolve().parent / "histories"
SCENARIOS = sorted(p for p in HISTORIES.iterdir() if p.is_dir())


CONVERTER = data_converter(Settings(codec_key_file=TEST_ONLY_KEYS))


async def audit_of(directory: Path) -> audit.Audit:
    return await audit.audit_histories(history.load_checked([directory]), converter=CONVERTER)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
async def test_every_checked_in_run_audits_clean(scenario: Path) -> None:
    result = await audit_of(scenario)
    assert result.replay_ok, result.replay
    assert result.values.verdict is audit.ValueVerdict.MATCH, result.values.differences
    assert result.values.values_compared > 0
    assert result.fills_agree, [a for a in result.accounts if not a.agrees]
    assert result.ok
    # The trail holds the whole story: received, snapshot, correlation, plan, finished.
    kinds = [entry.kind for entry in result.trail]
    for kind in ("started", "snapshot", "correlation", "plan", "finished"):
        assert kind in kinds, (kind, kinds)
    assert result.trail == sorted(result.trail, key=lambda e: e.at)


async def test_the_trail_of_a_reroute_tells_the_story_in_order() -> None:
    result = await audit_of(HISTORIES / "reroute")
    texts = [e.text for e in result.trail]
    expected_in_order = [
        "rejects planned 1.66 lots",
        "timer fired: delay rejects",
        "order replay-reroute:rejects:1: failed: Not enough money [10019]",
        "started OrderRerouteWorkflow signal-replay-reroute/leg-1/reroute",
        "order replay-reroute:spare:1: BUY 1.57 EURUSD MARKET at alpha → FILLED, filled 1.57",
        "PLACED: risk 471.000000 of 498.000000 found a home",
        "signal COMPLETED: filled 1.57 of 3.23 lots",
    ]
    positions = [
        next(i for i, t in enumerate(texts) if fragment in t) for fragment in expected_in_order
    ]
    assert positions == sorted(positions)
    spare = next(a for a in result.accounts if a.account_id == "spare")
    assert (spare.status, spare.filled, spare.filled_by_orders) == (
        LegStatus.FILLED,
        Decimal("1.57"),
        Decimal("1.57"),
    )


async def test_operator_actions_are_in_the_trail_with_who_and_why() -> None:
    paused = await audit_of(HISTORIES / "paused_during_delay")
    action, recorded = [e for e in paused.trail if e.kind == "operator"]
    assert action.account_id == recorded.account_id == "paused"
    assert "operator refresh: pause_account paused" in action.text
    assert "reason: replay fixture" in action.text
    assert "recorded in operator_actions: pause_account by refresh (signal" in recorded.text
    halted = await audit_of(HISTORIES / "halted")
    halt, kill_switch, recorded = [e for e in halted.trail if e.kind == "operator"]
    assert "operator refresh: halt (update); reason: replay fixture" in halt.text
    assert "kill switch thrown by refresh: persisted" in kill_switch.text
    assert "recorded in operator_actions: halt by refresh (update" in recorded.text


async def test_every_denial_reason_is_in_the_trail() -> None:
    result = await audit_of(HISTORIES / "denied")
    denied = {e.account_id: e.text for e in result.trail if e.kind == "denied"}
    assert len(denied) == 11
    assert "DRAWDOWN_LIMIT" in denied["drawdown"]
    assert "STALE_ACCOUNT_DATA" in denied["stale"]
    assert "SIZE_BELOW_MIN_LOT" in denied["tiny"]


# --------------------------------------------------------------------------------------------
# The value check can fail


def edit_order_quantity(path: Path, account_id: str, quantity: str) -> None:
    """Rewrite the quantity of ``account_id``'s first order in a history file, as a change of
    sizing code would have recorded it, and re-sign the manifest: the file is consistent, only
    its value differs from what the planning code derives."""
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    edited = 0
    for event in document["events"]:
        attributes = event.get("activityTaskScheduledEventAttributes")
        name = attributes["activityType"]["name"] if attributes else None
        if name not in ("place_and_follow_order", "place_and_follow_slice"):
            continue
        payload = attributes["input"]["payloads"][0]
        request = json.loads(base64.b64decode(payload["data"]))
        # A slice carries its legs' orders, each read by the audit as an order of its own.
        for order in request["orders"] if name == "place_and_follow_slice" else [request]:
            if order["account_id"] == account_id and order["business_sequence"] == 1:
                order["quantity"] = quantity
                edited += 1
        payload["data"] = base64.b64encode(json.dumps(request).encode()).decode()
    assert edited == 1
    path.write_text(json.dumps(document), encoding="utf-8")
    entries = history.read_manifest(path.parent) or {}
    entries[path.name] = history.manifest_entry(history.load_history(path), path)
    history.write_manifest(path.parent, entries)


def drifted_copy(tmp_path: Path) -> Path:
    shutil.copytree(HISTORIES / "all_filled", tmp_path, dirs_exist_ok=True)
    path = tmp_path / history.file_name("signal-replay-all-filled")
    edit_order_quantity(path, "one", "1.62")  # the plan says 1.61
    return tmp_path


async def test_an_edited_order_quantity_is_caught_as_drift(tmp_path: Path) -> None:
    result = await audit_of(drifted_copy(tmp_path))
    assert result.replay_ok  # replay does not compare values
    assert result.values.verdict is audit.ValueVerdict.DRIFT
    [difference] = result.values.differences
    assert (difference.account_id, difference.field) == ("one", "quantity")
    assert (difference.recorded, difference.derived) == ("1.62", "1.61")
    assert "place_and_follow_order input" in difference.where
    assert not result.ok


def edit_payloads(path: Path, edit: Any) -> None:
    """Apply ``edit(event_type, key, value)`` to every JSON payload of a history file (its
    return replaces the value) and re-sign the manifest."""
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    for event in document["events"]:
        for name, attributes in event.items():
            if not name.endswith("Attributes") or not isinstance(attributes, dict):
                continue
            for key in ("input", "result"):
                payloads = (attributes.get(key) or {}).get("payloads") or []
                for payload in payloads:
                    value = json.loads(base64.b64decode(payload["data"]))
                    edited = edit(event["eventType"], key, value)
                    payload["data"] = base64.b64encode(json.dumps(edited).encode()).decode()
    path.write_text(json.dumps(document), encoding="utf-8")
    entries = history.read_manifest(path.parent) or {}
    entries[path.name] = history.manifest_entry(history.load_history(path), path)
    history.write_manifest(path.parent, entries)


async def test_a_reroute_that_starts_from_another_risk_than_the_plans_is_caught_as_drift(
    tmp_path: Path,
) -> None:
    """The reroute's recorded input says the failed order risked 498.5 (the plan's leg: 1.66
    lots, 498), and its own figures agree with that input (the same 1.57 lots placed, 95 % of
    498.5 carried), as a bug in what the leg hands its reroute would record them: the audit
    compares the reroute's starting point with the re-derived plan, not only with itself."""
    shutil.copytree(HISTORIES / "reroute", tmp_path, dirs_exist_ok=True)

    def edit(event_type: str, key: str, value: Any) -> Any:
        if event_type == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED" and key == "input":
            assert value["original_risk"] == "498.000000"
            value["original_risk"] = "498.500000"
        elif event_type == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED" and key == "result":
            assert (value["risk_original"], value["risk_carried"]) == ("498.000000", "473.100000")
            value["risk_original"], value["risk_carried"] = "498.500000", "473.575000"
        return value

    edit_payloads(tmp_path / history.file_name("signal-replay-reroute/leg-1/reroute"), edit)
    result = await audit_of(tmp_path)

    assert result.values.verdict is audit.ValueVerdict.DRIFT
    [difference] = result.values.differences
    assert (difference.account_id, difference.field) == ("rejects", "original_risk")
    assert (difference.recorded, difference.derived) == ("498.500000", "498.000000")
    assert "signal-replay-reroute/leg-1/reroute input" in difference.where


async def test_an_edited_reroute_order_quantity_is_caught_as_drift(tmp_path: Path) -> None:
    """The reroute's target order is re-derived by the one sizing rule from its history."""
    shutil.copytree(HISTORIES / "reroute", tmp_path, dirs_exist_ok=True)
    edit_order_quantity(
        tmp_path / history.file_name("signal-replay-reroute/leg-1/reroute"), "spare", "1.58"
    )
    result = await audit_of(tmp_path)

    assert result.values.verdict is audit.ValueVerdict.DRIFT
    [difference] = result.values.differences
    assert (difference.account_id, difference.field) == ("spare", "quantity")
    assert (difference.recorded, difference.derived) == ("1.58", "1.57")
    assert "signal-replay-reroute/leg-1/reroute place_and_follow_order input" in difference.where


def test_the_audit_command_fails_on_drift_and_names_the_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = drifted_copy(tmp_path)
    assert starter_main(["audit", "replay-all-filled", "--from", str(directory)]) == 1
    output = capsys.readouterr().out
    assert "Plan values: DRIFT" in output
    assert (
        "one quantity in signal-replay-all-filled place_and_follow_order input: "
        "recorded 1.62, derived 1.61"
    ) in output
    assert "Verdict: FAILED" in output


async def test_a_history_edited_after_export_is_refused_by_its_manifest(tmp_path: Path) -> None:
    shutil.copytree(HISTORIES / "all_filled", tmp_path, dirs_exist_ok=True)
    path = tmp_path / history.file_name("signal-replay-all-filled")
    path.write_text(path.read_text(encoding="utf-8") + " ", encoding="utf-8")
    with pytest.raises(OrchestratorError, match="checksum mismatch"):
        history.load_checked([tmp_path])


async def test_a_change_of_planning_rules_is_told_apart_from_drift(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(planning, "RULES_VERSION", planning.RULES_VERSION + 1)
    result = await audit_of(HISTORIES / "denied")  # recorded with its rules marker
    assert result.values.verdict is audit.ValueVerdict.RULES_CHANGED
    assert result.values.recorded_rules_version == planning.RULES_VERSION - 1
    assert result.values.differences == []
    # Code that records the new rules' marker still replays the runs made under the old ones.
    assert result.replay_ok
    assert result.ok


def test_audit_json_is_the_audit_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        starter_main(
            [
                "audit",
                "replay-partial-fill-completed",
                "--from",
                str(HISTORIES / "partial_fill_completed"),
                "--json",
            ]
        )
        == 0
    )
    document = audit.Audit.model_validate_json(capsys.readouterr().out)
    assert document.report is not None
    assert {a.account_id: (a.status, a.requested, a.filled) for a in document.accounts} == {
        line.account_id: (line.status, line.requested, line.filled)
        for line in document.report.accounts
    }
    partial = next(a for a in document.accounts if a.account_id == "partial")
    assert len(partial.orders) == 2  # the first order and the completion's
    assert partial.filled_by_orders == partial.filled == partial.requested

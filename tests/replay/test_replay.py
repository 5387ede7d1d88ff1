"""Replay of the checked-in histories (``tests/replay/histories``, made by
``python -m tests.replay.refresh``) against the current workflow code.

A failure here means a change to workflow code would break runs that are in flight when it is
deployed: their histories no longer match the commands the new code issues. Replay checks the
sequence of commands (timers, activities, children), not their values.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from temporalio import workflow

from orchestrator.adapters.temporal import data_converter
from orchestrator.config import Settings
from orchestrator.domain.contracts.activities import Execution, activity_name
from orchestrator.domain.contracts.payloads import LegBatchInput, SignalWorkflowInput
from orchestrator.domain.report import SignalReport
from orchestrator.services import history
from starter import main as starter_main
from tests.replay.refresh import TEST_ONLY_KEYS
from tests.support import keeper_told
from workflows.batch import LegBatchWorkflow
from workflows.completion import PartialFillCompletionWorkflow
from workflows.reroute import OrderRerouteWorkflow
from workflows.signal import SignalExecutionWorkflow

HISTORIES = Path(__file__).resolve().parent / "histories"
CONVERTER = data_converter(Settings(codec_key_file=TEST_ONLY_KEYS))
"""Reads the encrypted scenario too; plain payloads pass through the codec untouched."""
FILES = sorted(p for p in HISTORIES.glob("*/*.json") if p.name != history.MANIFEST)
SCENARIOS = sorted(p for p in HISTORIES.iterdir() if p.is_dir())


def test_the_checked_in_histories_cover_every_scenario() -> None:
    assert {p.name for p in SCENARIOS} == {
        "all_filled",
        "partial_fill_completed",
        "reroute",
        "paused_during_delay",
        "halted",
        "denied",
        "denied_halted",
        "reroute_completed",
        "encrypted",
        "batched",
        "orders_in_flight",
        "orders_in_flight_batched",
        "cancelled_in_temporal",
        "stopped_out",
        "take_profit_hit",
        "closed_by_signal",
        "sliced",
        "orders_shared_by_legs",
        "keeper_told_once",
        "keeper_told_together",
    }
    # Every file a manifest lists is replayed below, and every replayed file is listed.
    listed = {
        scenario / name
        for scenario in SCENARIOS
        for name in history.read_manifest(scenario) or pytest.fail(f"no manifest in {scenario}")
    }
    assert listed == set(FILES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
async def test_history_replays_against_the_current_code(path: Path) -> None:
    [outcome] = await history.replay_files([path], converter=CONVERTER)
    assert outcome.failure is None, outcome.failure


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_each_export_holds_the_signal_and_all_its_children(scenario: Path) -> None:
    """Every child (and grandchild) started in a history is in the export, and nothing else."""
    loaded = {
        h.workflow_id: h
        for h in (history.load_history(p) for p in history.history_files([scenario]))
    }
    [root] = [wid for wid in loaded if "/" not in wid]
    reachable, todo = set(), [root]
    while todo:
        workflow_id = todo.pop()
        reachable.add(workflow_id)
        todo += [child for child, _ in history.child_executions(loaded[workflow_id])]
    assert reachable == set(loaded)


def test_the_checked_in_histories_hold_both_order_paths() -> None:
    """Legs due together place their first orders in one slice ("sliced": zero delays; a leg
    whose order still works after it follows the order itself); a leg alone on its timer
    places its own ("paused_during_delay"). Both replay above."""
    for name, slice_path in (("paused_during_delay", False), ("sliced", True)):
        workflow_id = f"signal-replay-{name.replace('_', '-')}"
        recorded = history.load_history(HISTORIES / name / history.file_name(workflow_id))
        kinds = {
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in recorded.events
            if e.HasField("activity_task_scheduled_event_attributes")
        }
        assert (activity_name(Execution.place_and_follow_slice) in kinds) is slice_path, name
        assert activity_name(Execution.place_and_follow_order) in kinds, name


def test_the_checked_in_histories_hold_both_ways_of_sharing_orders_in_flight() -> None:
    """Recorded before the ``orders-in-flight-shared-by-legs`` patch, the batches took equal
    shares ("orders_in_flight_batched": two slots, two batches of two, one each); after it,
    shares by legs ("orders_shared_by_legs": five slots, batches of 2, 2 and 1). Both replay
    above, each on its own branch."""
    for name, expected in (
        ("orders_in_flight_batched", [(2, 1), (2, 1)]),
        ("orders_shared_by_legs", [(2, 2), (2, 2), (1, 1)]),
    ):
        shares = []
        for path in history.history_files([HISTORIES / name]):
            recorded = history.load_history(path)
            if not recorded.workflow_id.endswith(("batch-1", "batch-2", "batch-3")):
                continue
            started = recorded.events[0].workflow_execution_started_event_attributes
            batch = LegBatchInput.model_validate_json(started.input.payloads[0].data)
            share = batch.execution.max_orders_in_flight
            shares.append((recorded.workflow_id, len(batch.legs), share))
        assert [(legs, share) for _, legs, share in sorted(shares)] == expected, name


def test_the_checked_in_histories_hold_every_way_of_telling_the_keeper() -> None:
    """Recorded before the ``one-keeper-signal-per-filled-order`` patch, a leg filled whole
    told its keeper twice ("all_filled"); after it, once ("keeper_told_once", where the
    partial fill still tells it twice: at once, then with the completion); after
    ``keeper-told-fills-together``, the legs one slice ended tell it in one signal
    ("keeper_told_together"). All replay above."""
    for name, expected, together in (
        ("all_filled", None, False),
        ("keeper_told_once", {"full": [True], "partial": [False, True]}, False),
        (
            "keeper_told_together",
            {"one": [True], "two": [True], "partial": [False, True]},
            True,
        ),
    ):
        workflow_id = f"signal-replay-{name.replace('_', '-')}"
        recorded = history.load_history(HISTORIES / name / history.file_name(workflow_id))
        signals = keeper_told(recorded)
        told: dict[str, list[bool]] = {}
        for fill in (fill for fills in signals for fill in fills):
            told.setdefault(fill.account_id, []).append(fill.final)
        if expected is None:
            assert told and all(finals == [False, True] for finals in told.values()), told
        else:
            assert told == expected
        assert any(len(fills) > 1 for fills in signals) is together, name


# --------------------------------------------------------------------------------------------
# The check can fail


@workflow.defn(name="SignalExecutionWorkflow", sandboxed=False)
class SleepsBeforePlanning(SignalExecutionWorkflow):
    """A deliberately incompatible change: one more timer before the first activity."""

    @workflow.run
    async def run(self, request: SignalWorkflowInput) -> SignalReport:
        await workflow.sleep(1)
        return await super().run(request)


async def test_an_incompatible_change_is_reported_as_nondeterminism() -> None:
    recorded = history.load_history(
        HISTORIES / "all_filled" / history.file_name("signal-replay-all-filled")
    )
    changed = [
        SleepsBeforePlanning,
        LegBatchWorkflow,
        PartialFillCompletionWorkflow,
        OrderRerouteWorkflow,
    ]
    [failure] = await history.replay_histories([recorded], workflows=changed)
    assert isinstance(failure, workflow.NondeterminismError), failure
    [unchanged] = await history.replay_histories([recorded])
    assert unchanged is None


# --------------------------------------------------------------------------------------------
# The starter's replay command, with a manifest


def test_replay_command_verifies_the_manifest_and_reports_a_corrupted_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for source in history.history_files([HISTORIES / "batched"]):
        shutil.copy(source, tmp_path / source.name)
    files = history.history_files([tmp_path])
    history.write_manifest(
        tmp_path, {p.name: history.manifest_entry(history.load_history(p), p) for p in files}
    )

    assert starter_main(["replay", *map(str, files)]) == 0
    output = capsys.readouterr().out
    assert (
        output.count("OK ") == len(files) == 6
    )  # the signal, two batches, their keepers, a completion
    assert "FAILED" not in output

    corrupted = tmp_path / history.file_name("signal-replay-batched/batch-1")
    data = bytearray(corrupted.read_bytes())
    data[len(data) // 2] ^= 1
    corrupted.write_bytes(bytes(data))
    assert starter_main(["replay", str(tmp_path)]) == 1
    output = capsys.readouterr().out
    [failed] = [line for line in output.splitlines() if line.startswith("FAILED")]
    assert str(corrupted) in failed
    assert "checksum mismatch" in failed
    assert output.count("OK ") == 5

    stray = tmp_path / "signal-not-exported.json"
    shutil.copy(files[0], stray)
    assert starter_main(["replay", str(stray)]) == 1
    assert "not listed in" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# Encrypted histories


def readable_bytes(path: Path) -> bytes:
    """Everything a reader of the file sees without a key: every payload's data decoded from
    base64, and the rest of the text (not the base64 itself, where four letters such as
    ``full`` turn up by chance)."""
    blob: list[bytes] = []

    def walk(node: object) -> object:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "data" and isinstance(value, str):
                    blob.append(base64.b64decode(value))
                    node[key] = ""
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        return node

    rest = walk(json.loads(path.read_text(encoding="utf-8")))
    return b"\n".join([json.dumps(rest).encode(), *blob])


PLAIN = (b"partial", b"full", b"1.08500")
"""Account ids and the entry price of the encrypted scenario. (Its symbol and side are search
attributes, which Temporal keeps in plain text to query them.)"""


def test_the_plain_text_check_finds_plain_text_in_an_unencrypted_history() -> None:
    path = HISTORIES / "partial_fill_completed" / "signal-replay-partial-fill-completed.json"
    assert all(plain in readable_bytes(path) for plain in PLAIN)


async def test_the_encrypted_history_holds_no_account_size_or_price_and_needs_its_key() -> None:
    directory = HISTORIES / "encrypted"
    files = history.history_files([directory])
    assert len(files) == 3  # the signal, a completion, the positions' keeper
    for path in files:
        readable = readable_bytes(path)
        leaks = [plain for plain in PLAIN if plain in readable]
        assert not leaks, (path.name, leaks)
    without_key = await history.replay_files([directory])
    assert [o.ok for o in without_key] == [False, False, False]
    assert all("the history is encrypted" in (o.failure or "") for o in without_key)
    with_key = await history.replay_files([directory], converter=CONVERTER)
    assert all(o.ok for o in with_key), with_key

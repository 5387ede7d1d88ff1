"""The payload codec: round trip, key rotation, tampering, bad key rings."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload

from orchestrator.adapters.codec import (
    BULK,
    COMPRESSED,
    ENCODING,
    KEY_ID,
    CodecChain,
    CodecError,
    CompressionCodec,
    EncryptionCodec,
    load_codec,
    new_key_line,
    parse_key_ring,
)
from orchestrator.adapters.temporal import data_converter
from orchestrator.config import Settings
from orchestrator.domain import reports
from orchestrator.domain.planning import plan_signal
from orchestrator.domain.report import LegStatus, SignalStatus
from tests.unit.builders import (
    NOW,
    make_account,
    make_correlation,
    make_signal,
    make_snapshot,
    plan_settings,
)


def ring(*key_ids: str) -> dict[str, bytes]:
    return parse_key_ring("\n".join(new_key_line(k) for k in key_ids), source="test")


def plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=text.encode())


def bulk(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain", BULK: b"1"}, data=text.encode())


async def test_round_trip_hides_the_payload_and_restores_it() -> None:
    codec = EncryptionCodec(ring("k1"))
    original = plain('{"account_id": "alpha-01", "quantity": "1.61"}')
    [sealed] = await codec.encode([original])
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID] == b"k1"
    assert b"alpha-01" not in sealed.SerializeToString()
    [opened] = await codec.decode([sealed])
    assert opened == original
    [again] = await codec.encode([original])
    assert again.data != sealed.data  # a fresh nonce every time


async def test_rotation_reads_old_keys_and_writes_with_the_active_one() -> None:
    keys = ring("old", "new")
    [under_old] = await EncryptionCodec({"old": keys["old"]}).encode([plain("x")])
    rotated = EncryptionCodec(keys)
    assert rotated.active_key_id == "new"
    [opened] = await rotated.decode([under_old])
    assert opened == plain("x")
    [under_new] = await rotated.encode([plain("y")])
    assert under_new.metadata[KEY_ID] == b"new"
    with pytest.raises(CodecError, match="key 'new', which is not in the ring"):
        await EncryptionCodec({"old": keys["old"]}).decode([under_new])


async def test_tampering_and_a_relabelled_key_id_fail_authentication() -> None:
    keys = ring("a", "b")
    codec = EncryptionCodec(keys, active="a")
    [sealed] = await codec.encode([plain("secret")])
    flipped = Payload()
    flipped.CopyFrom(sealed)
    flipped.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(CodecError, match="failed authentication"):
        await codec.decode([flipped])
    relabelled = Payload()
    relabelled.CopyFrom(sealed)
    relabelled.metadata[KEY_ID] = b"b"
    with pytest.raises(CodecError, match="failed authentication"):
        await codec.decode([relabelled])


async def test_unencrypted_payloads_pass_through_decode() -> None:
    [same] = await EncryptionCodec(ring("k")).decode([plain("old history")])
    assert same == plain("old history")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("k1:not base64!", "not base64"),
        ("k1:" + base64.b64encode(b"short").decode(), "has 5 bytes, need 32"),
        ("nokey", "expected 'id:base64key'"),
        (new_key_line("k") + "\n" + new_key_line("k"), "appears twice"),
    ],
)
def test_bad_key_rings_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        parse_key_ring(text, source="keys")


def test_settings_select_the_codec(tmp_path: Path) -> None:
    assert load_codec(keys=None, key_file=None, active=None) is None
    with pytest.raises(CodecError, match="no key is configured"):
        load_codec(keys=None, key_file=None, active="k1")
    key_file = tmp_path / "keys"
    key_file.write_text("# comment\n" + new_key_line("k1") + "\n" + new_key_line("k2") + "\n")
    codec = load_codec(keys=None, key_file=key_file, active="k1")
    assert codec is not None and codec.active_key_id == "k1"
    with pytest.raises(CodecError, match="active key 'k3' is not in the key ring"):
        load_codec(keys=None, key_file=key_file, active="k3")
    with pytest.raises(CodecError, match="cannot read TEO_CODEC_KEY_FILE"):
        load_codec(keys=None, key_file=tmp_path / "missing", active=None)
    converter = data_converter(Settings(codec_key_file=key_file))
    assert isinstance(converter.payload_codec, CodecChain)
    assert isinstance(converter.payload_codec.encryption, EncryptionCodec)
    plain_chain = data_converter(Settings()).payload_codec
    assert isinstance(plain_chain, CodecChain) and plain_chain.encryption is None


async def test_large_payloads_are_compressed_then_encrypted_and_come_back_whole() -> None:
    large = bulk('{"account_id": "acct-00001", "equity": "50000"}' * 2_000)
    small = plain("a leg's order")
    chain = CodecChain(CompressionCodec(), EncryptionCodec(ring("k1")))
    encoded = await chain.encode([large, small])
    assert all(p.metadata["encoding"] == ENCODING for p in encoded)
    # Compressed before encryption: the sealed large payload is a fraction of its size.
    assert encoded[0].ByteSize() < large.ByteSize() / 10
    assert await chain.decode(encoded) == [large, small]

    [alone, untouched] = await CompressionCodec().encode([large, small])
    assert alone.metadata["encoding"] == COMPRESSED and untouched == small
    assert await CompressionCodec().decode([alone, plain("recorded before")]) == [
        large,
        plain("recorded before"),
    ]


async def test_what_people_read_stays_plain_json_and_machine_pages_are_compressed() -> None:
    """A 200-account report reads as JSON in the Web UI without a codec; a snapshot page of a
    large signal, of the same size, is compressed; anything near Temporal's limit is too."""
    converter = data_converter(Settings())
    accounts = [make_account(f"account-{n:03d}") for n in range(200)]
    plan = plan_signal(
        make_signal(),
        make_snapshot(accounts),
        make_correlation({a.account_id: None for a in accounts}),
        plan_settings(),
        NOW,
    )
    report = reports.build(
        make_signal(),
        plan_version=1,
        status=SignalStatus.COMPLETED,
        started_at=NOW,
        finished_at=NOW,
        lines=[reports.stopped_line(leg, LegStatus.CANCELLED, "test") for leg in plan.legs],
    )
    page = make_snapshot(accounts)
    [report_payload, page_payload] = await converter.encode([report, page])
    assert report_payload.ByteSize() > 100 * 1024
    assert report_payload.metadata["encoding"] == b"json/plain"
    assert page_payload.metadata["encoding"] == COMPRESSED
    [huge] = await converter.encode(["x" * (1024 * 1024)])
    assert huge.metadata["encoding"] == COMPRESSED

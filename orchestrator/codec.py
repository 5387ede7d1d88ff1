"""Payload encryption: AES-256-GCM over every payload the SDK sends to Temporal (workflow and
activity inputs and results, signals, updates, queries, summaries, failure messages), so
account ids, sizes and prices are encrypted in history at rest.

Keys have ids, so they can rotate: payloads are encrypted with the *active* key and carry its
id in their metadata; any key in the key ring decrypts what was written with it. Keep retired
keys in the ring for as long as histories (or archives) written with them must be read.

The key ring comes from ``TEO_CODEC_KEYS`` (``id:base64key,id:base64key``) or from the file
``TEO_CODEC_KEY_FILE`` (one ``id base64key`` per line, ``#`` comments); the active key is
``TEO_CODEC_ACTIVE_KEY`` or else the ring's last key. ``starter.py codec new-key`` writes one.
Never in workflow inputs: the worker, starter, audit and replay commands and the codec server
read it from their own environment.
"""

from __future__ import annotations

import base64
import binascii
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from orchestrator.errors import OrchestratorError, ValidationFailed
from orchestrator.files import read_text

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
KEY_BYTES = 32


class CodecError(OrchestratorError):
    pass


class KeyFileUnreadable(ValidationFailed, CodecError):
    """``TEO_CODEC_KEY_FILE`` cannot be read, or is not UTF-8 text: invalid input naming the
    file (the starter exits 2)."""


def parse_key_ring(text: str, *, source: str) -> dict[str, bytes]:
    """``id:base64`` items separated by commas or new lines (``id base64`` also accepted)."""
    ring: dict[str, bytes] = {}
    items = [item.strip() for line in text.splitlines() for item in line.split(",")]
    for item in items:
        if not item or item.startswith("#"):
            continue
        key_id, sep, encoded = item.replace(" ", ":", 1).partition(":")
        if not sep or not key_id:
            raise CodecError(f"{source}: expected 'id:base64key', got {item[:12]!r}…")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error as err:
            raise CodecError(f"{source}: key {key_id!r} is not base64") from err
        if len(key) != KEY_BYTES:
            raise CodecError(f"{source}: key {key_id!r} has {len(key)} bytes, need {KEY_BYTES}")
        if key_id in ring:
            raise CodecError(f"{source}: key id {key_id!r} appears twice")
        ring[key_id] = key
    return ring


def new_key_line(key_id: str) -> str:
    return f"{key_id} {base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM with a random 96-bit nonce per payload; the key id is authenticated as
    associated data, so a payload cannot be passed off as written with another key."""

    def __init__(self, ring: dict[str, bytes], active: str | None = None) -> None:
        if not ring:
            raise CodecError("the key ring is empty")
        self._ring = {key_id: AESGCM(key) for key_id, key in ring.items()}
        self._active = active or list(ring)[-1]
        if self._active not in ring:
            raise CodecError(f"active key {self._active!r} is not in the key ring")

    @property
    def active_key_id(self) -> str:
        return self._active

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decrypt(p) for p in payloads]

    def _encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        key_id = self._active.encode()
        sealed = self._ring[self._active].encrypt(nonce, payload.SerializeToString(), key_id)
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id}, data=nonce + sealed)

    def _decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written before encryption was turned on
        key_id = payload.metadata.get(KEY_ID, b"").decode()
        cipher = self._ring.get(key_id)
        if cipher is None:
            raise CodecError(f"payload encrypted with key {key_id!r}, which is not in the ring")
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, key_id.encode())
        except InvalidTag as err:
            raise CodecError(f"payload under key {key_id!r} failed authentication") from err
        decoded = Payload()
        decoded.ParseFromString(plain)
        return decoded


COMPRESSED = b"binary/zlib"
COMPRESS_FROM = 16 * 1024
"""Payloads this large or larger are compressed: a large signal's snapshot and correlation
pages, batch inputs and reports. Per-leg payloads stay plain, readable in the Web UI as is."""


class CompressionCodec(PayloadCodec):
    """zlib for large payloads, so a 5,000-account signal's histories stay far under Temporal's
    10 MB: their JSON (field names repeated per account) shrinks several times over. Before
    encryption, which leaves nothing to compress."""

    def __init__(self, threshold: int = COMPRESS_FROM) -> None:
        self._threshold = threshold

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._compress(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decompress(p) for p in payloads]

    def _compress(self, payload: Payload) -> Payload:
        if payload.ByteSize() < self._threshold:
            return payload
        return Payload(
            metadata={"encoding": COMPRESSED}, data=zlib.compress(payload.SerializeToString())
        )

    @staticmethod
    def _decompress(payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != COMPRESSED:
            return payload
        try:
            plain = zlib.decompress(payload.data)
        except zlib.error as err:
            raise CodecError(f"a compressed payload does not decompress: {err}") from err
        decoded = Payload()
        decoded.ParseFromString(plain)
        return decoded


class CodecChain(PayloadCodec):
    """Codecs applied in order to encode, in reverse to decode."""

    def __init__(self, *codecs: PayloadCodec) -> None:
        self.codecs = codecs

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = list(payloads)
        for codec in self.codecs:
            out = await codec.encode(out)
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = list(payloads)
        for codec in reversed(self.codecs):
            out = await codec.decode(out)
        return out

    @property
    def encryption(self) -> EncryptionCodec | None:
        return next((c for c in self.codecs if isinstance(c, EncryptionCodec)), None)


def load_codec(
    *, keys: str | None, key_file: Path | None, active: str | None
) -> EncryptionCodec | None:
    """The codec the settings describe, or None when no key is configured."""
    ring: dict[str, bytes] = {}
    if key_file is not None:
        try:
            text = read_text(key_file)
        except ValidationFailed as err:
            problems = [
                ("", f"cannot read TEO_CODEC_KEY_FILE: {m.removeprefix('cannot read file: ')}")
                for _, m in err.problems
            ]
            raise KeyFileUnreadable(err.source, problems) from err
        ring.update(parse_key_ring(text, source=str(key_file)))
    if keys:
        for key_id, key in parse_key_ring(keys, source="TEO_CODEC_KEYS").items():
            if key_id in ring and ring[key_id] != key:
                raise CodecError(f"key id {key_id!r} has two different keys")
            ring[key_id] = key
    if not ring:
        if active:
            raise CodecError("TEO_CODEC_ACTIVE_KEY is set but no key is configured")
        return None
    return EncryptionCodec(ring, active)

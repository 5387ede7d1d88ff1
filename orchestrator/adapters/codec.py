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
import copy
import os
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
)

from orchestrator.adapters.files import read_text
from orchestrator.domain.book import BookSnapshot
from orchestrator.domain.contracts.payloads import LegBatchInput, LegBatchResult
from orchestrator.domain.correlation import CorrelationResult
from orchestrator.domain.errors import OrchestratorError, ValidationFailed

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


PlaintextSeen = Callable[[str | None, Payload], None]
"""Told of a payload that reached an encrypted deployment unencrypted: the workflow it came to
(``None`` outside one) and the payload."""


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """AES-256-GCM with a random 96-bit nonce per payload; the key id is authenticated as
    associated data, so a payload cannot be passed off as written with another key.

    A payload that is not encrypted is decoded as it is (a history written before encryption
    was turned on), and ``on_plaintext`` is told, with the workflow it reached: in a deployment
    that encrypts, that is a payload some client sent without the codec (the Web UI with no
    codec endpoint set), which the server now keeps in clear."""

    def __init__(
        self,
        ring: dict[str, bytes],
        active: str | None = None,
        *,
        on_plaintext: PlaintextSeen | None = None,
    ) -> None:
        if not ring:
            raise CodecError("the key ring is empty")
        self._ring = {key_id: AESGCM(key) for key_id, key in ring.items()}
        self._active = active or list(ring)[-1]
        if self._active not in ring:
            raise CodecError(f"active key {self._active!r} is not in the key ring")
        self._on_plaintext = on_plaintext
        self._workflow_id: str | None = None

    def with_context(self, context: SerializationContext) -> EncryptionCodec:
        """This codec, knowing which workflow its payloads belong to (only worth it when
        someone listens for plaintext)."""
        if self._on_plaintext is None:
            return self
        bound = copy.copy(self)
        bound._workflow_id = getattr(context, "workflow_id", None)
        return bound

    def watching(self, on_plaintext: PlaintextSeen) -> EncryptionCodec:
        watched = copy.copy(self)
        watched._on_plaintext = on_plaintext
        return watched

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
            if self._on_plaintext is not None:
                self._on_plaintext(self._workflow_id, payload)
            return payload  # sent without the codec, or written before encryption was on
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
BULK = "teo-bulk"
"""Payload metadata marking machine data that operators do not read in the Web UI: a large
signal's snapshot and correlation pages, batch inputs and results (see :data:`BULK_TYPES`)."""
BULK_TYPES: tuple[type, ...] = (BookSnapshot, CorrelationResult, LegBatchInput, LegBatchResult)
COMPRESS_BULK_FROM = 16 * 1024
"""Bulk payloads this large or larger are compressed: a 5,000-account signal's JSON repeats its
field names per account, and its histories stay far under Temporal's limits compressed."""
COMPRESS_FROM = 1024 * 1024
"""Any payload this large is compressed, bulk or not, so none nears Temporal's 2 MB limit.
Everything a person reads (a signal's input, its report, its progress, operator requests) stays
plain JSON in the Web UI below this (a signal's report is a summary past a few hundred
accounts: ``orchestrator.domain.limits.REPORT_BYTES``)."""


class BulkMarkingJSONConverter(PydanticJSONPlainPayloadConverter):
    """The pydantic JSON converter; values of :data:`BULK_TYPES` get the :data:`BULK` mark."""

    def to_payload(self, value: Any) -> Payload | None:
        payload = super().to_payload(value)
        if payload is not None and isinstance(value, BULK_TYPES):
            payload.metadata[BULK] = b"1"
        return payload


class ProjectPayloadConverter(CompositePayloadConverter):
    """Temporal's default converters, with pydantic JSON that marks bulk payloads."""

    def __init__(self) -> None:
        json = BulkMarkingJSONConverter()
        super().__init__(
            *(
                json if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


class CompressionCodec(PayloadCodec):
    """zlib for bulk payloads of :data:`COMPRESS_BULK_FROM` or more and for any payload of
    :data:`COMPRESS_FROM` or more. Before encryption, which leaves nothing to compress."""

    def __init__(self, bulk_from: int = COMPRESS_BULK_FROM, threshold: int = COMPRESS_FROM):
        self._bulk_from = bulk_from
        self._threshold = threshold

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._compress(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decompress(p) for p in payloads]

    def _compress(self, payload: Payload) -> Payload:
        size = payload.ByteSize()
        bulk = BULK in payload.metadata
        if size < self._threshold and not (bulk and size >= self._bulk_from):
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


class CodecChain(PayloadCodec, WithSerializationContext):
    """Codecs applied in order to encode, in reverse to decode."""

    def __init__(self, *codecs: PayloadCodec) -> None:
        self.codecs = codecs

    def with_context(self, context: SerializationContext) -> CodecChain:
        bound = tuple(
            c.with_context(context) if isinstance(c, WithSerializationContext) else c
            for c in self.codecs
        )
        if all(new is old for new, old in zip(bound, self.codecs, strict=True)):
            return self
        return CodecChain(*bound)

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

"""The codec server, called over HTTP (ASGI in process): decrypts for a holder of the token,
refuses everyone else, admits CORS from the UI's origin only."""

from __future__ import annotations

import base64

import httpx
import pytest
from google.protobuf.json_format import MessageToJson
from temporalio.api.common.v1 import Payload, Payloads

from orchestrator.codec import EncryptionCodec, parse_key_ring
from orchestrator.codec_server import create_app
from orchestrator.errors import OrchestratorError
from orchestrator.settings import Settings
from tests.support import TEST_CODEC_KEYS

UI = "http://127.0.0.1:8233"
TOKEN = "codec-server-test-token"


@pytest.fixture
def codec() -> EncryptionCodec:
    return EncryptionCodec(parse_key_ring(TEST_CODEC_KEYS, source="test"))


@pytest.fixture
def client(codec: EncryptionCodec) -> httpx.AsyncClient:
    settings = Settings(codec_server_token=TOKEN, codec_cors_origin=UI)
    app = create_app(settings, codec)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://codec")


def body(*payloads: Payload) -> str:
    return MessageToJson(Payloads(payloads=list(payloads)))


async def test_decode_returns_the_plain_payloads_to_the_token_holder(
    codec: EncryptionCodec, client: httpx.AsyncClient
) -> None:
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"account_id":"alpha-01"}')
    [sealed] = await codec.encode([plain])
    response = await client.post(
        "/decode",
        content=body(sealed),
        headers={"Authorization": f"Bearer {TOKEN}", "X-Namespace": "default"},
    )
    assert response.status_code == 200
    [returned] = response.json()["payloads"]
    assert base64.b64decode(returned["data"]) == b'{"account_id":"alpha-01"}'
    assert base64.b64decode(returned["metadata"]["encoding"]) == b"json/plain"

    encoded = await client.post(
        "/encode", content=body(plain), headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert encoded.status_code == 200
    [again] = encoded.json()["payloads"]
    assert base64.b64decode(again["metadata"]["encoding"]) == b"binary/encrypted"
    assert b"alpha-01" not in base64.b64decode(again["data"])


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", TOKEN, f"Bearer {TOKEN}x"])
async def test_without_the_token_nothing_is_decoded(
    codec: EncryptionCodec, client: httpx.AsyncClient, authorization: str | None
) -> None:
    [sealed] = await codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=b"1")])
    headers = {"Authorization": authorization} if authorization else {}
    response = await client.post("/decode", content=body(sealed), headers=headers)
    assert response.status_code == 401
    assert "payloads" not in response.json()


async def test_bad_bodies_and_foreign_keys_are_refused_with_a_reason(
    client: httpx.AsyncClient,
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    malformed = await client.post("/decode", content="{not json", headers=auth)
    assert malformed.status_code == 400
    foreign = await EncryptionCodec(
        parse_key_ring("other:" + base64.b64encode(b"x" * 32).decode(), source="t")
    ).encode([Payload(data=b"1")])
    unknown = await client.post("/decode", content=body(*foreign), headers=auth)
    assert unknown.status_code == 422
    assert "not in the ring" in unknown.json()["detail"]


async def test_cors_admits_the_ui_origin_only(client: httpx.AsyncClient) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
    }
    ui = await client.options("/decode", headers={"Origin": UI, **preflight})
    assert ui.status_code == 200
    assert ui.headers["access-control-allow-origin"] == UI
    other = await client.options("/decode", headers={"Origin": "https://evil.example", **preflight})
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers


def test_the_server_refuses_to_start_without_a_token(codec: EncryptionCodec) -> None:
    with pytest.raises(OrchestratorError, match="TEO_CODEC_SERVER_TOKEN"):
        create_app(Settings(codec_server_token=None), codec)

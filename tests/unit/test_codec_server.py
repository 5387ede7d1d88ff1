"""The codec server, called over HTTP (ASGI in process, and real sockets on 127.0.0.1), in its
three modes: ``local`` (loopback, no token, both spellings of a loopback UI origin), ``token``
(a static bearer token for scripts) and ``oidc`` (the UI's access token, a JWT verified
against a key set this module mints and serves on 127.0.0.1)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from google.protobuf.json_format import MessageToJson
from temporalio.api.common.v1 import Payload, Payloads

from orchestrator.adapters.codec import EncryptionCodec, parse_key_ring
from orchestrator.adapters.temporal import dev_server_command
from orchestrator.config import Settings
from orchestrator.domain.errors import OrchestratorError
from orchestrator.interfaces.http.codec_server import (
    create_app,
    ensure_dev_codec,
    stop_dev_codec,
    uvicorn_config,
)
from tests.support import TEST_CODEC_KEYS

UI = "http://127.0.0.1:8233"
TOKEN = "codec-server-test-token"
PLAIN = Payload(metadata={"encoding": b"json/plain"}, data=b'{"account_id":"alpha-01"}')
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type,x-namespace",
}


@pytest.fixture
def codec() -> EncryptionCodec:
    return EncryptionCodec(parse_key_ring(TEST_CODEC_KEYS, source="test"))


def asgi_client(app: Any, base_url: str = "http://codec") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@pytest.fixture
def client(codec: EncryptionCodec) -> httpx.AsyncClient:
    settings = Settings(codec_server_token=TOKEN, codec_cors_origin=UI)
    return asgi_client(create_app(settings, codec))


def body(*payloads: Payload) -> str:
    return MessageToJson(Payloads(payloads=list(payloads)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def decoded(response: httpx.Response) -> bytes:
    assert response.status_code == 200, response.text
    [returned] = response.json()["payloads"]
    return base64.b64decode(returned["data"])


# --------------------------------------------------------------------------------------------
# token mode (the default): a static bearer token, for scripts


async def test_decode_returns_the_plain_payloads_to_the_token_holder(
    codec: EncryptionCodec, client: httpx.AsyncClient
) -> None:
    [sealed] = await codec.encode([PLAIN])
    response = await client.post(
        "/decode",
        content=body(sealed),
        headers={"Authorization": f"Bearer {TOKEN}", "X-Namespace": "default"},
    )
    assert await decoded(response) == b'{"account_id":"alpha-01"}'
    [returned] = response.json()["payloads"]
    assert base64.b64decode(returned["metadata"]["encoding"]) == b"json/plain"

    encoded = await client.post(
        "/encode", content=body(PLAIN), headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert encoded.status_code == 200
    [again] = encoded.json()["payloads"]
    assert base64.b64decode(again["metadata"]["encoding"]) == b"binary/encrypted"
    assert b"alpha-01" not in base64.b64decode(again["data"])


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "missing token"),
        ("Bearer wrong", "wrong token"),
        (TOKEN, "malformed Authorization header"),
        (f"Bearer {TOKEN}x", "wrong token"),
        ("Basic " + base64.b64encode(b"u:p").decode(), "malformed Authorization header"),
    ],
)
async def test_without_the_token_nothing_is_decoded_and_the_refusal_says_why(
    codec: EncryptionCodec, client: httpx.AsyncClient, authorization: str | None, reason: str
) -> None:
    [sealed] = await codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=b"1")])
    headers = {"Authorization": authorization} if authorization else {}
    for route in ("/decode", "/encode"):
        response = await client.post(route, content=body(sealed), headers=headers)
        assert response.status_code == 401
        assert "payloads" not in response.json()
        assert response.json()["detail"].startswith(reason)
        assert response.headers["www-authenticate"].startswith('Bearer realm="codec"')


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


async def test_cors_admits_the_ui_origin_only(
    codec: EncryptionCodec, client: httpx.AsyncClient
) -> None:
    preflight = {**PREFLIGHT, "Access-Control-Request-Headers": "authorization,content-type"}
    ui = await client.options("/decode", headers={"Origin": UI, **preflight})
    assert ui.status_code == 200
    assert ui.headers["access-control-allow-origin"] == UI
    for origin in ("https://evil.example", "http://localhost:8233"):
        other = await client.options("/decode", headers={"Origin": origin, **preflight})
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers
    # Not preflighted (a "simple" request) is no way around it: the origin is refused outright.
    [sealed] = await codec.encode([PLAIN])
    simple = await client.post(
        "/decode",
        content=body(sealed),
        headers={"Origin": "https://evil.example", "Authorization": f"Bearer {TOKEN}"},
    )
    assert simple.status_code == 403
    assert "payloads" not in simple.json()


def test_the_server_refuses_to_start_without_a_token(codec: EncryptionCodec) -> None:
    with pytest.raises(OrchestratorError, match="TEO_CODEC_SERVER_TOKEN"):
        create_app(Settings(codec_server_token=None), codec)


# --------------------------------------------------------------------------------------------
# local mode: the dev server's UI, which sends no token; loopback only

LOCAL = "http://127.0.0.1:8091"


@pytest.fixture
def local_client(codec: EncryptionCodec) -> httpx.AsyncClient:
    settings = Settings(codec_auth="local", temporal_ui_url="http://127.0.0.1:8233")
    return asgi_client(create_app(settings, codec), base_url=LOCAL)


async def test_local_mode_decodes_and_encodes_without_a_token(
    codec: EncryptionCodec, local_client: httpx.AsyncClient
) -> None:
    [sealed] = await codec.encode([PLAIN])
    # What the UI sends: content-type and x-namespace, and its origin; nothing else.
    ui_headers = {"content-type": "application/json", "x-namespace": "default", "origin": UI}
    response = await local_client.post("/decode", content=body(sealed), headers=ui_headers)
    assert await decoded(response) == PLAIN.data
    assert response.headers["access-control-allow-origin"] == UI
    encoded = await local_client.post("/encode", content=body(PLAIN), headers=ui_headers)
    [again] = encoded.json()["payloads"]
    assert b"alpha-01" not in base64.b64decode(again["data"])
    assert await codec.decode([Payload(**_proto_fields(again))]) == [PLAIN]


def _proto_fields(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {k: base64.b64decode(v) for k, v in item["metadata"].items()},
        "data": base64.b64decode(item["data"]),
    }


@pytest.mark.parametrize("ui_url", ["http://127.0.0.1:8233", "http://localhost:8233"])
async def test_local_mode_admits_both_loopback_spellings_of_the_ui_origin_and_no_other(
    codec: EncryptionCodec, ui_url: str
) -> None:
    """Whichever spelling the setting uses, the dev server prints one and the project the
    other: both are admitted, and nothing else."""
    settings = Settings(codec_auth="local", temporal_ui_url=ui_url)
    client = asgi_client(create_app(settings, codec), base_url=LOCAL)
    for origin in ("http://localhost:8233", "http://127.0.0.1:8233"):
        admitted = await client.options("/decode", headers={"Origin": origin, **PREFLIGHT})
        assert admitted.status_code == 200, origin
        assert admitted.headers["access-control-allow-origin"] == origin
    for origin in ("http://localhost:9999", "https://127.0.0.1:8233", "https://evil.example"):
        refused = await client.options("/decode", headers={"Origin": origin, **PREFLIGHT})
        assert refused.status_code == 400, origin
        assert "access-control-allow-origin" not in refused.headers
        [sealed] = await codec.encode([PLAIN])
        simple = await client.post("/decode", content=body(sealed), headers={"Origin": origin})
        assert simple.status_code == 403, origin


async def test_local_mode_answers_only_to_a_loopback_host(codec: EncryptionCodec) -> None:
    """A page whose DNS name is rebound to 127.0.0.1 would be same-origin with the server:
    it names its own host, and is refused."""
    settings = Settings(codec_auth="local")
    [sealed] = await codec.encode([PLAIN])
    for host, status in [("evil.example:8091", 403), ("localhost:8091", 200), ("[::1]", 200)]:
        client = asgi_client(create_app(settings, codec), base_url=f"http://{host}")
        response = await client.post("/decode", content=body(sealed))
        assert response.status_code == status, host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "codec.example"])
def test_local_mode_refuses_to_start_off_loopback(codec: EncryptionCodec, host: str) -> None:
    settings = Settings(codec_auth="local")
    with pytest.raises(OrchestratorError, match=r"loopback only .*TEO_CODEC_AUTH=oidc"):
        uvicorn_config(settings, codec, host=host, port=free_port())


def test_local_mode_refuses_a_token_it_would_not_check(codec: EncryptionCodec) -> None:
    with pytest.raises(OrchestratorError, match="TEO_CODEC_SERVER_TOKEN is set"):
        create_app(Settings(codec_auth="local", codec_server_token=TOKEN), codec)


async def test_the_dev_setups_local_server_serves_the_ui_over_a_real_socket(
    codec: EncryptionCodec, tmp_path: Path
) -> None:
    """``ensure_dev_codec`` (worker.py --dev, the demo, the browser tier): ``starter.py codec
    serve`` in local mode on 127.0.0.1 and the port asked for, whatever codec server mode the
    environment names; a second call with the same keys uses the running one; a port held by
    a codec server with other keys is an error naming the setting to change."""
    port = free_port()

    def dev_settings(keys: str | None) -> Settings:
        return Settings(  # the environment's codec server settings are not the dev setup's
            codec_keys=keys,
            codec_auth="token",
            codec_server_token=TOKEN,
            codec_server_port=port,
            temporal_ui_url="http://localhost:8233",
        )

    settings = dev_settings(TEST_CODEC_KEYS)
    assert await ensure_dev_codec(dev_settings(None), run_dir=tmp_path) is None
    server = await ensure_dev_codec(settings, run_dir=tmp_path)
    try:
        assert server is not None and server.started_here
        assert server.endpoint == f"http://127.0.0.1:{port}"
        [sealed] = await codec.encode([PLAIN])
        async with httpx.AsyncClient(base_url=server.endpoint) as http:
            for origin in ("http://localhost:8233", "http://127.0.0.1:8233"):
                preflight = await http.options("/decode", headers={"Origin": origin, **PREFLIGHT})
                assert preflight.status_code == 200, origin
            response = await http.post(
                "/decode", content=body(sealed), headers={"Origin": "http://localhost:8233"}
            )
            assert await decoded(response) == PLAIN.data
        again = await ensure_dev_codec(settings, run_dir=tmp_path)
        assert again == replace(server, started_here=False)
        other_keys = "other:" + base64.b64encode(b"y" * 32).decode()
        with pytest.raises(OrchestratorError, match="TEO_CODEC_SERVER_PORT"):
            await ensure_dev_codec(dev_settings(other_keys), run_dir=tmp_path)
    finally:
        assert stop_dev_codec(run_dir=tmp_path)


# --------------------------------------------------------------------------------------------
# oidc mode: the UI's OIDC access token, verified against the issuer's keys

ISSUER = "https://login.example.test/"
AUDIENCE = "temporal-ui"
UI_PROD = "https://temporal.example.test"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def issuer_keys() -> dict[str, Any]:
    """The issuer's signing keys: RS256 under kid ``r1``, ES256 under ``e1``."""
    return {"r1": rsa_key(), "e1": ec.generate_private_key(ec.SECP256R1())}


class JwksServer:
    """The issuer's JWKS endpoint on 127.0.0.1, counting how often it is fetched."""

    def __init__(self, keys: dict[str, Any]) -> None:
        jwks = {"keys": [self._jwk(kid, key.public_key()) for kid, key in keys.items()]}
        document = json.dumps(jwks).encode()
        owner = self
        self.fetches = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(document)))
                self.end_headers()
                self.wfile.write(document)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/.well-known/jwks.json"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @staticmethod
    def _jwk(kid: str, public: Any) -> dict[str, Any]:
        if isinstance(public, rsa.RSAPublicKey):
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
            alg = "RS256"
        else:
            jwk = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
            alg = "ES256"
        return {**jwk, "kid": kid, "use": "sig", "alg": alg}

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(10)


@pytest.fixture
def jwks(issuer_keys: dict[str, Any]) -> Iterator[JwksServer]:
    with JwksServer(issuer_keys) as server:
        yield server


def oidc_settings(jwks_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "codec_auth": "oidc",
        "codec_oidc_issuer": ISSUER,
        "codec_oidc_audience": AUDIENCE,
        "codec_oidc_jwks_url": jwks_url,
        "codec_cors_origin": UI_PROD,
        "codec_server_token": TOKEN,
    }
    values.update(overrides)
    return Settings.model_validate(values)


def access_token(
    key: Any, *, kid: str = "r1", alg: str = "RS256", expires_in_s: int = 300, **claims: Any
) -> str:
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "jane@example.test",
        "iat": now,
        "exp": now + expires_in_s,
    }
    values.update(claims)
    return jwt.encode(values, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture
def oidc_client(codec: EncryptionCodec, jwks: JwksServer) -> httpx.AsyncClient:
    return asgi_client(create_app(oidc_settings(jwks.url), codec))


async def post_decode(
    client: httpx.AsyncClient, codec: EncryptionCodec, authorization: str | None
) -> httpx.Response:
    [sealed] = await codec.encode([PLAIN])
    headers = {"Origin": UI_PROD, "content-type": "application/json", "x-namespace": "default"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return await client.post("/decode", content=body(sealed), headers=headers)


async def test_oidc_mode_decodes_for_a_valid_access_token_rs256_or_es256(
    codec: EncryptionCodec,
    issuer_keys: dict[str, Any],
    jwks: JwksServer,
    oidc_client: httpx.AsyncClient,
) -> None:
    rs = access_token(issuer_keys["r1"])
    es = access_token(issuer_keys["e1"], kid="e1", alg="ES256")
    for token in (rs, es, rs):
        response = await post_decode(oidc_client, codec, f"Bearer {token}")
        assert await decoded(response) == PLAIN.data
        assert response.headers["access-control-allow-origin"] == UI_PROD
    assert jwks.fetches == 1  # the key set is cached, not fetched per request


async def test_oidc_mode_still_accepts_the_static_token_for_scripts(
    codec: EncryptionCodec, oidc_client: httpx.AsyncClient
) -> None:
    assert await decoded(await post_decode(oidc_client, codec, f"Bearer {TOKEN}")) == PLAIN.data
    wrong = await post_decode(oidc_client, codec, f"Bearer {TOKEN}x")
    assert wrong.status_code == 401
    assert wrong.json()["detail"].startswith("wrong token")


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing", "missing token"),
        ("expired", "token expired"),
        ("wrong audience", "wrong audience"),
        ("wrong issuer", "wrong issuer"),
        ("signed by another key", "bad signature: token does not verify"),
        ("unknown key id", "bad signature: token signed by a key the issuer does not publish"),
        ("hmac with the public key", "token algorithm 'HS256' not accepted"),
        ("no expiry", "token lacks the 'exp' claim"),
        ("not a jwt", "malformed token"),
    ],
)
async def test_oidc_mode_refuses_a_bad_access_token_and_says_why(
    codec: EncryptionCodec,
    issuer_keys: dict[str, Any],
    jwks: JwksServer,
    case: str,
    reason: str,
) -> None:
    client = asgi_client(create_app(oidc_settings(jwks.url, codec_server_token=None), codec))
    key = issuer_keys["r1"]
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    tokens = {
        "missing": None,
        "expired": access_token(key, expires_in_s=-3600),
        "wrong audience": access_token(key, aud="some-other-api"),
        "wrong issuer": access_token(key, iss="https://other-login.example.test/"),
        "signed by another key": access_token(rsa_key()),
        "unknown key id": access_token(rsa_key(), kid="r9"),
        "hmac with the public key": _hs256_token(public_pem),
        "no expiry": _without_exp(key),
        "not a jwt": "not-a-jwt",
    }
    token = tokens[case]
    response = await post_decode(client, codec, None if token is None else f"Bearer {token}")
    assert response.status_code == 401, response.text
    assert "payloads" not in response.json()
    assert response.json()["detail"].startswith(reason), response.json()
    assert "error_description=" in response.headers["www-authenticate"] or case == "missing"


def _hs256_token(secret: bytes) -> str:
    """The classic forgery: HMAC "signed" with the issuer's public key as the secret. PyJWT
    itself refuses to make one, so it is assembled by hand."""

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "r1"}).encode())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300}
    payload = b64(json.dumps(claims).encode())
    signature = b64(hmac.new(secret, header + b"." + payload, hashlib.sha256).digest())
    return (header + b"." + payload + b"." + signature).decode()


def _without_exp(key: Any) -> str:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "jane"}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "r1"})


async def test_oidc_mode_says_so_when_the_issuers_keys_cannot_be_fetched(
    codec: EncryptionCodec, issuer_keys: dict[str, Any]
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/jwks.json"  # nothing listens there
    client = asgi_client(create_app(oidc_settings(nowhere), codec))
    response = await post_decode(client, codec, f"Bearer {access_token(issuer_keys['r1'])}")
    assert response.status_code == 503
    assert "signing keys" in response.json()["detail"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"codec_oidc_issuer": None}, "needs TEO_CODEC_OIDC_ISSUER"),
        ({"codec_oidc_audience": None}, "needs TEO_CODEC_OIDC_AUDIENCE"),
        ({"codec_oidc_jwks_url": None}, "needs TEO_CODEC_OIDC_JWKS_URL"),
        ({"codec_oidc_jwks_url": "http://login.example.test/jwks"}, "must be https"),
        ({"codec_auth": "token"}, "set but TEO_CODEC_AUTH=token"),
        ({"codec_auth": "local", "codec_server_token": None}, "set but TEO_CODEC_AUTH=local"),
    ],
)
def test_inconsistent_oidc_settings_are_refused_with_the_setting_to_change(
    codec: EncryptionCodec, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(OrchestratorError, match=message):
        create_app(oidc_settings("https://login.example.test/jwks", **settings), codec)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"codec_oidc_algorithms": "HS256"}, "HS256 not accepted"),
        ({"codec_oidc_algorithms": "RS256,none"}, "none not accepted"),
        ({"codec_tls_cert_file": "cert.pem"}, "both TEO_CODEC_TLS_CERT_FILE"),
        ({"codec_cors_origin": "https://temporal.example.test/"}, "not an origin"),
        ({"codec_cors_origin": "*"}, "not an origin"),
    ],
)
def test_malformed_codec_settings_are_refused_when_read(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.model_validate(values)


def test_oidc_mode_refuses_to_serve_without_https(codec: EncryptionCodec) -> None:
    settings = oidc_settings("https://login.example.test/jwks")
    with pytest.raises(OrchestratorError, match="serves https"):
        uvicorn_config(settings, codec, host="127.0.0.1", port=free_port())


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "codec.crt", directory / "codec.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@contextmanager
def running(config: uvicorn.Config) -> Iterator[None]:
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(300):
            if server.started or not thread.is_alive():
                break
            thread.join(0.05)
        assert server.started, "the codec server did not start"
        yield
    finally:
        server.should_exit = True
        thread.join(10)


async def test_oidc_mode_serves_https_with_the_configured_certificate(
    codec: EncryptionCodec, issuer_keys: dict[str, Any], jwks: JwksServer, tmp_path: Path
) -> None:
    cert_file, key_file = self_signed(tmp_path)
    settings = oidc_settings(jwks.url, codec_tls_cert_file=cert_file, codec_tls_key_file=key_file)
    port = free_port()
    trust = ssl.create_default_context(cafile=str(cert_file))
    with running(uvicorn_config(settings, codec, host="127.0.0.1", port=port)):
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=trust) as http:
            good = await post_decode(http, codec, f"Bearer {access_token(issuer_keys['r1'])}")
            assert await decoded(good) == PLAIN.data
            expired = await post_decode(
                http, codec, f"Bearer {access_token(issuer_keys['r1'], expires_in_s=-3600)}"
            )
            assert expired.status_code == 401
            assert expired.json()["detail"] == "token expired"


def test_the_dev_server_command_presets_the_uis_codec_endpoint_and_fetches_no_news() -> None:
    settings = Settings(temporal_address="127.0.0.1:27233")
    command = dev_server_command(settings, ui_codec_endpoint="http://127.0.0.1:8091")
    assert command[command.index("--ui-codec-endpoint") + 1] == "http://127.0.0.1:8091"
    assert command[command.index("--ui-port") + 1] == "28233"
    assert command[command.index("--ui-ip") + 1] == "127.0.0.1"
    assert "--ui-disable-news-fetch" in command
    assert "--ui-codec-endpoint" not in dev_server_command(settings)

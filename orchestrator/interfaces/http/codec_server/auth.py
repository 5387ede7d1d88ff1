"""Who may call the codec server: the modes of ``TEO_CODEC_AUTH`` and the checks of each.

- ``local``: anyone on this machine, no token. The dev server's UI sends no ``Authorization``
  header (only ``content-type`` and ``x-namespace``), so this is the mode that works with it.
  Bound to a loopback address only (refused otherwise), and only requests whose ``Host`` is a
  loopback name are served (a page on another site that rebinds its DNS name to 127.0.0.1
  gets 403).
- ``token``: ``Authorization: Bearer <TEO_CODEC_SERVER_TOKEN>``, compared in constant time;
  for scripts and the ``temporal`` CLI.
- ``oidc``: the UI's own OIDC access token (the UI's "pass the user access token" option, which
  it honours for https endpoints only), a JWT verified against the issuer's published keys
  (``TEO_CODEC_OIDC_JWKS_URL``, cached), its audience, issuer, expiry and algorithm (RS256 or
  ES256). Served over https. The static token, when set, is accepted too.

Only the UI's exact origin(s) are admitted (in ``local`` mode a loopback origin under both
spellings, ``localhost`` and ``127.0.0.1``): a request that carries any other ``Origin`` is
refused (403), preflighted or not.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from fastapi import Request

from orchestrator.config import Settings
from orchestrator.domain.errors import OrchestratorError

log = logging.getLogger(__name__)

LOOPBACK_SPELLINGS = ("localhost", "127.0.0.1")
"""The two names a browser on this machine reaches a loopback UI by; the dev server prints
``http://localhost:PORT``, the project prints ``http://127.0.0.1:PORT``."""

JWKS_REFRESH_COOLDOWN_S = 30.0
"""A token naming a key not in the cached set refetches the set at most this often."""


class Refused(Exception):
    """A request the server will not serve: HTTP status and the reason given to the caller."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def is_loopback(host: str) -> bool:
    """``localhost`` or an address in 127.0.0.0/8 or ::1 (a name that resolves elsewhere, or
    ``0.0.0.0``, is not)."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def loopback_spellings(origin: str) -> list[str]:
    """``http://localhost:8233`` → itself and ``http://127.0.0.1:8233`` (and the reverse);
    any other origin → itself."""
    parts = urlsplit(origin)
    if parts.hostname not in LOOPBACK_SPELLINGS:
        return [origin]
    port = f":{parts.port}" if parts.port else ""
    return [f"{parts.scheme}://{name}{port}" for name in LOOPBACK_SPELLINGS]


def _url_host_is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname
    return host is not None and is_loopback(host)


class OidcVerifier:
    """Verifies OIDC access tokens (JWTs) against the issuer's JSON Web Key Set.

    The key set is fetched from the JWKS URL on first use and kept ``cache_s`` seconds; a token
    whose ``kid`` is not in the cached set refetches it (at most every 30 s), so a key the
    issuer rotates in is found without a restart. ``jwt.PyJWKClient`` is synchronous: callers
    on an event loop run ``verify`` in a thread.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str,
        algorithms: Sequence[str],
        cache_s: float = 300,
        leeway_s: float = 30,
        cooldown_s: float = JWKS_REFRESH_COOLDOWN_S,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.algorithms = list(algorithms)
        self.leeway_s = leeway_s
        self._keys = jwt.PyJWKClient(
            jwks_url,
            cache_jwk_set=True,
            lifespan=cache_s,
            timeout=10,
            cooldown_duration=cooldown_s,
        )

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or ``Refused`` saying what is wrong with it."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as err:
            raise Refused(401, "malformed token: not a JWT") from err
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise Refused(
                401, f"token algorithm {alg!r} not accepted (only {', '.join(self.algorithms)})"
            )
        kid = header.get("kid")
        if not kid:
            raise Refused(401, "token names no signing key (no 'kid' in its header)")
        try:
            key = self._keys.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError as err:
            log.error("cannot fetch the OIDC key set from %s: %s", self.jwks_url, err)
            raise Refused(503, "cannot fetch the issuer's signing keys") from err
        except jwt.PyJWKClientError as err:
            raise Refused(
                401, f"bad signature: token signed by a key the issuer does not publish ({kid!r})"
            ) from err
        try:
            return jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as err:
            raise Refused(401, "token expired") from err
        except jwt.InvalidAudienceError as err:
            raise Refused(401, f"wrong audience: token is not for {self.audience!r}") from err
        except jwt.InvalidIssuerError as err:
            raise Refused(401, f"wrong issuer: token is not from {self.issuer!r}") from err
        except jwt.InvalidSignatureError as err:
            raise Refused(
                401, f"bad signature: token does not verify against the issuer's key {kid!r}"
            ) from err
        except jwt.ImmatureSignatureError as err:
            raise Refused(401, "token not yet valid") from err
        except jwt.MissingRequiredClaimError as err:
            raise Refused(401, f"token lacks the {err.claim!r} claim") from err
        except jwt.PyJWTError as err:
            raise Refused(401, f"invalid token: {err}") from err


@dataclass(frozen=True)
class ServerAuth:
    """Who the codec server admits, resolved from the settings and checked for consistency."""

    mode: str
    origins: tuple[str, ...]
    token: str | None = None
    oidc: OidcVerifier | None = None

    async def admit(self, request: Request) -> str:
        """Who the caller is (for the log), or ``Refused``."""
        origin = request.headers.get("origin")
        if origin is not None and origin not in self.origins:
            raise Refused(403, f"origin {origin!r} is not admitted")
        if self.mode == "local":
            host = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
            if not is_loopback(host):
                raise Refused(403, "a local codec server answers to a loopback Host only")
            return "local"
        given = request.headers.get("authorization")
        if not given:
            raise Refused(401, "missing token: send Authorization: Bearer <token>")
        scheme, _, credential = given.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Refused(401, "malformed Authorization header: expected 'Bearer <token>'")
        if self.token is not None and hmac.compare_digest(credential.encode(), self.token.encode()):
            return "static token"
        if self.oidc is None:
            raise Refused(401, "wrong token")
        if credential.count(".") != 2 and self.token is not None:
            raise Refused(401, "wrong token: neither the static token nor a JWT")
        claims = await asyncio.to_thread(self.oidc.verify, credential)
        return f"oidc subject {claims.get('sub', '?')!r}"


def server_auth(settings: Settings) -> ServerAuth:
    """The admission rules ``settings`` describe; ``OrchestratorError`` naming the settings to
    change when they contradict each other."""
    mode = settings.codec_auth
    token = settings.codec_server_token.get_secret_value() if settings.codec_server_token else None
    oidc_given = {
        "TEO_CODEC_OIDC_ISSUER": settings.codec_oidc_issuer,
        "TEO_CODEC_OIDC_AUDIENCE": settings.codec_oidc_audience,
        "TEO_CODEC_OIDC_JWKS_URL": settings.codec_oidc_jwks_url,
    }
    origins = settings.codec_origins()
    if mode != "oidc":
        stray = [name for name, value in oidc_given.items() if value]
        if stray:
            raise OrchestratorError(
                f"{', '.join(stray)} set but TEO_CODEC_AUTH={mode}: set TEO_CODEC_AUTH=oidc "
                "to verify the UI's access tokens, or unset them"
            )
    if mode == "local":
        if token:
            raise OrchestratorError(
                "TEO_CODEC_AUTH=local checks no token, yet TEO_CODEC_SERVER_TOKEN is set: use "
                "TEO_CODEC_AUTH=token to require it, or unset it"
            )
        spelled = [o for origin in origins for o in loopback_spellings(origin)]
        return ServerAuth(mode="local", origins=tuple(dict.fromkeys(spelled)))
    if mode == "token":
        if not token:
            raise OrchestratorError(
                "TEO_CODEC_AUTH=token needs TEO_CODEC_SERVER_TOKEN (or, for the dev server's "
                "UI on this machine, TEO_CODEC_AUTH=local)"
            )
        return ServerAuth(mode="token", origins=tuple(origins), token=token)
    issuer, audience, jwks_url = oidc_given.values()
    if not (issuer and audience and jwks_url):
        missing = [name for name, value in oidc_given.items() if not value]
        raise OrchestratorError(f"TEO_CODEC_AUTH=oidc needs {', '.join(missing)}")
    if urlsplit(jwks_url).scheme != "https" and not (
        urlsplit(jwks_url).scheme == "http" and _url_host_is_loopback(jwks_url)
    ):
        raise OrchestratorError(
            "TEO_CODEC_OIDC_JWKS_URL must be https (plain http only on loopback): whoever "
            "could change the keys in transit could sign tokens"
        )
    verifier = OidcVerifier(
        issuer=issuer,
        audience=audience,
        jwks_url=jwks_url,
        algorithms=settings.codec_oidc_algorithm_list(),
        cache_s=settings.codec_oidc_jwks_cache_s,
        leeway_s=settings.codec_oidc_leeway_s,
    )
    return ServerAuth(mode="oidc", origins=tuple(origins), token=token or None, oidc=verifier)

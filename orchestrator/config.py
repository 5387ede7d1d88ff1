"""All configuration, in one place: environment variables prefixed ``TEO_``, each with a default.

The defaults are the embedded setup: a local Temporal dev server and a SQLite file. Production
points the same code at a Temporal cluster and PostgreSQL by setting variables
(docs/configuration.md).
"""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.domain.positions import RefusedStop
from orchestrator.domain.settings import (
    Attempts,
    BatchSize,
    CorrelationThreshold,
    DataAgeSeconds,
    DelayMs,
    DelaySeconds,
    EntryTtlSeconds,
    ExecutionSettings,
    LegCap,
    LookbackDays,
    MinObservations,
    OrdersInFlight,
    OrdersPerSecond,
    PlanSettings,
    PlanVersion,
    RerouteFraction,
    Seconds,
    ServiceSettings,
    SizeVariance,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent

OIDC_ALGORITHMS = ("RS256", "ES256")
"""Signature algorithms the codec server accepts on OIDC access tokens: asymmetric only (an
HMAC algorithm would let anyone holding the public key forge a token)."""


def check_origin(origin: str, setting: str) -> str:
    """A browser origin as CORS compares it: ``http(s)://host[:port]``, nothing after."""
    parts = urlsplit(origin)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise ValueError(
            f"{setting}: {origin!r} is not an origin; write scheme://host[:port] with no path "
            "or trailing slash (CORS compares it exactly)"
        )
    return origin


class Settings(BaseSettings):
    """Runtime settings. Every field is read from ``TEO_<FIELD_NAME>``."""

    model_config = SettingsConfigDict(env_prefix="TEO_", extra="ignore", frozen=True)

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "trade-execution"
    temporal_ui_url: str = "http://127.0.0.1:8233"
    """Base URL used to print links to runs in the Temporal Web UI."""
    dev_server_db: Path = PROJECT_ROOT / ".run" / "temporal-dev.db"
    """File the embedded dev server persists its history to (``worker.py --dev``, demo)."""

    database_url: str = f"sqlite:///{PROJECT_ROOT / '.run' / 'orchestrator.db'}"
    """SQLAlchemy URL; PostgreSQL as ``postgresql+psycopg://user:pass@host:5432/db``."""

    delay_min_s: DelaySeconds = Decimal(1)
    delay_max_s: DelaySeconds = Decimal(30)
    exit_delay_min_s: DelaySeconds = Decimal(0)
    exit_delay_max_s: DelaySeconds = Decimal(0)
    size_variance: SizeVariance = Decimal("0.10")
    correlation_threshold: CorrelationThreshold = Decimal("0.7")
    correlated_min_gap_s: DelaySeconds = Decimal(5)
    correlation_lookback_days: LookbackDays = 60
    correlation_min_observations: MinObservations = 20
    max_account_data_age_s: DataAgeSeconds = 900
    plan_version: PlanVersion = 1
    max_legs: LegCap | None = None
    """Cap on legs per signal; further eligible accounts become the reroute reserve."""
    batch_size: BatchSize = 300

    order_timeout_s: Seconds = 120
    """How long one place-and-follow activity may work an order before Temporal retries it."""
    order_schedule_to_close_s: Seconds = 600
    """Give up on placing an order after this long across retries (the leg ends FAILED and any
    order the broker holds for it is cancelled)."""
    order_poll_interval_s: float = Field(default=0.2, gt=0)
    """Pause between status polls while following a working order."""
    order_heartbeat_s: Seconds = 10
    """A cancellation reaches a working order within about 0.8 × this."""
    completion_max_attempts: Attempts = 3
    completion_deadline_s: Seconds = 120
    reroute_fraction: RerouteFraction = Decimal("0.95")
    reroute_max_accounts: Attempts = 3
    on_refused_stop: RefusedStop = RefusedStop.CLOSE
    """A position whose stop the broker refuses (too close, an unsupported order type): closed
    at market (``close``), or kept open and marked UNPROTECTED (``keep``)."""
    max_orders_in_flight: OrdersInFlight = 5000
    """First orders one signal keeps working at once (its batches share it out); legs due past
    it wait their turn. Legs due together go out in slices of at most 100 orders per activity,
    so 5,000 orders are 50 activity tasks (docs/performance.md); a broker that throttles is
    paced by ``broker_orders_per_s``."""
    slice_window_ms: DelayMs = 0
    """Legs due within this many milliseconds of each other go to the broker together, in one
    slice (one activity, one ledger transaction); 0: those due in the same workflow task
    (every zero-delay leg of a signal)."""
    broker_orders_per_s: OrdersPerSecond = 0
    """New orders per second each worker sends one broker (slices and single orders alike);
    0: unpaced."""
    entry_ttl_s: EntryTtlSeconds = 120
    """An entry order not sent within this many seconds of its signal's start is denied
    EXPIRED (the market has moved on); 0: entries never expire. A signal's ``valid_until``
    overrides it."""
    max_concurrent_activities: int = Field(default=64, ge=1)
    max_concurrent_workflow_tasks: int = Field(default=4, ge=2)
    """Workflow tasks a worker runs at once. They hold the GIL: more at once only stretches
    each one's wall time towards Temporal's 10 s workflow-task timeout (docs/performance.md);
    the rest wait on the server."""
    nonsticky_poll_ratio: float = Field(default=1.0, gt=0, le=1)
    """The share of a worker's workflow-task polls on the task queue itself, where a new
    workflow's first task waits, rather than on its sticky queue (the next tasks of workflows
    it has cached). Temporal's default, 0.2, let a large signal's running batches hold back
    the first tasks of those not started yet (docs/performance.md)."""
    worker_shutdown_grace_s: float = Field(default=45, ge=0)
    """On SIGINT or SIGTERM the worker stops taking tasks and lets the activities in flight
    (an order being sent and followed, a keeper's protect) finish for up to this long, then
    cancels what is left (a cancelled order activity's retry asks the broker first). Keep it
    below the time the process manager waits before it kills (docker-compose.yml: 60 s)."""
    gc_young_threshold: int = Field(default=50_000, ge=0)
    """Allocations between two collections of the worker's youngest generation of objects
    (Python's default: 700); at start the worker also freezes what its imports made, so no
    collection walks it again. A 5,000-account signal allocates millions of short-lived
    objects (payloads, models), and at 700 the collector ran hundreds of times, its full
    collections walking every live object (docs/performance.md). 0: Python's defaults."""
    database_pool_size: int = Field(default=16, ge=1)
    """PostgreSQL connections a worker keeps open; activities beyond wait for one (at most
    30 s). Past the cores' worth, more connections only add contention."""

    temporal_tls: bool = False
    """Connect to Temporal over TLS (on by itself when any of the files below is set)."""
    temporal_tls_ca_file: Path | None = None
    """CA bundle that signed the Temporal frontend's certificate (default: system roots)."""
    temporal_tls_cert_file: Path | None = None
    """Client certificate for mTLS (with ``TEMPORAL_TLS_KEY_FILE``)."""
    temporal_tls_key_file: Path | None = None
    temporal_tls_server_name: str | None = None
    """Name to verify the server certificate against, when it differs from the address."""

    codec_keys: SecretStr | None = None
    """Payload encryption key ring, ``id:base64key,…`` (see ``orchestrator/adapters/codec.py``)."""
    codec_key_file: Path | None = None
    """A file holding the key ring, one ``id base64key`` per line."""
    codec_active_key: str | None = None
    """Key id new payloads are encrypted with; default: the ring's last key."""
    codec_auth: Literal["local", "token", "oidc"] = "token"
    """How the codec server (``starter.py codec serve``) admits callers: ``local`` — anyone on
    this machine, bound to loopback only, no token (the dev server's UI sends none); ``token`` —
    ``Authorization: Bearer <TEO_CODEC_SERVER_TOKEN>`` (scripts); ``oidc`` — the Web UI's OIDC
    access token, verified against the issuer's keys, over https (the static token is also
    accepted when set). See docs/web-ui.md."""
    codec_server_token: SecretStr | None = None
    """Static bearer token of the codec server (``token`` mode; optional in ``oidc`` mode)."""
    codec_server_host: str = "127.0.0.1"
    """Interface the codec server binds to (``local`` mode: a loopback address only)."""
    codec_server_port: int = Field(default=8091, ge=1, le=65535)
    """The codec server's port, also the one ``worker.py --dev`` and the demo serve it on."""
    codec_cors_origin: str | None = None
    """Origin(s) of the Temporal Web UI the codec server admits for CORS, comma-separated and
    exact (``scheme://host[:port]``); default: the origin of ``TEO_TEMPORAL_UI_URL``. In
    ``local`` mode a loopback origin is admitted under both spellings (``localhost`` and
    ``127.0.0.1``)."""
    codec_oidc_issuer: str | None = None
    """``oidc`` mode: the issuer tokens must name (``iss``), e.g. ``https://login.example/``."""
    codec_oidc_audience: str | None = None
    """``oidc`` mode: the audience tokens must be issued for (``aud``)."""
    codec_oidc_jwks_url: str | None = None
    """``oidc`` mode: the issuer's JSON Web Key Set (https; http only on loopback)."""
    codec_oidc_algorithms: str = "RS256,ES256"
    """``oidc`` mode: signature algorithms accepted, comma-separated (RS256, ES256 only)."""
    codec_oidc_jwks_cache_s: int = Field(default=300, ge=1)
    """How long the fetched key set is reused; a token naming an unknown key refetches it (at
    most every 30 s), so a rotated key is picked up without a restart."""
    codec_oidc_leeway_s: int = Field(default=30, ge=0, le=300)
    """Clock skew tolerated on ``exp``/``nbf``/``iat``."""
    codec_tls_cert_file: Path | None = None
    """Certificate (PEM, with its chain) the codec server serves https with; required in
    ``oidc`` mode (the UI passes its access token to https endpoints only)."""
    codec_tls_key_file: Path | None = None
    """The certificate's private key (PEM)."""

    archive_dir: Path = PROJECT_ROOT / ".run" / "archive"
    """Where closed signals' histories are archived (one directory per signal)."""
    archive_every_s: int = Field(default=3600, ge=0)
    """How often the archive schedule runs; 0: the worker does not create the schedule."""
    archive_closed_for_s: int = Field(default=0, ge=0)
    """Archive a signal once it has been closed this long."""

    account_sync_every_s: int = Field(default=15, ge=0)
    """How often each broker's account sync runs (a Temporal Schedule per broker, created at
    worker start); 0: the worker creates none."""
    account_day_boundary: time = time(17, 0)
    """When an account's trading day starts, on the clock of ``TEO_ACCOUNT_DAY_TIMEZONE``:
    the sync resets today's realized loss there (17:00 New York: the FX day)."""
    account_day_timezone: str = "America/New_York"
    """The IANA time zone of ``TEO_ACCOUNT_DAY_BOUNDARY``."""

    log_format: Literal["json", "text"] = "json"
    """Worker and webhook logs: one JSON object per line, or plain text for a terminal."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_host: str = "127.0.0.1"
    """Interface the worker's metrics endpoints bind to (``0.0.0.0`` in a container)."""
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    """Worker's business metrics at ``/metrics`` (prometheus_client); 0 turns them off."""
    temporal_metrics_port: int = Field(default=9465, ge=0, le=65535)
    """Worker's Temporal SDK runtime metrics at ``/metrics``; 0 turns them off."""

    webhook_host: str = "127.0.0.1"
    webhook_port: int = Field(default=8090, ge=1, le=65535)
    webhook_hmac_secret: SecretStr | None = None
    """Key of the ``X-TEO-Signature: sha256=<hex>`` HMAC over the raw request body."""
    webhook_shared_secret: SecretStr | None = None
    """Token accepted in the ``X-TEO-Token`` header, or in a TradingView alert's ``secret``."""
    webhook_max_body_bytes: int = Field(default=16_384, ge=256, le=1_048_576)
    webhook_rate_per_minute: int = Field(default=60, ge=1)
    """Sustained requests per minute per source address (a token bucket)."""
    webhook_rate_burst: int = Field(default=10, ge=1)
    """Requests a source may send at once before the sustained rate applies."""

    fix_config: Path | None = None
    """A FIX connection's configuration file (YAML or JSON, docs/fix.md): the worker then trades
    through that FIX session instead of the paper broker, on the connection's task queue."""
    broker_task_queues: dict[str, str] = {}
    """JSON, broker name → task queue, e.g. ``{"ordermatch": "teo-fix-ordermatch"}``: order
    activities of accounts at that broker run on the worker that holds its FIX session."""

    @field_validator("account_day_timezone")
    @classmethod
    def _known_timezone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {zone!r} (an IANA name)") from exc
        return zone

    @model_validator(mode="after")
    def _delay_bounds_ordered(self) -> Settings:
        if self.delay_min_s > self.delay_max_s:
            raise ValueError("TEO_DELAY_MIN_S must not exceed TEO_DELAY_MAX_S")
        if self.exit_delay_min_s > self.exit_delay_max_s:
            raise ValueError("TEO_EXIT_DELAY_MIN_S must not exceed TEO_EXIT_DELAY_MAX_S")
        return self

    @field_validator("codec_cors_origin")
    @classmethod
    def _origins_exact(cls, value: str | None) -> str | None:
        if value is not None:
            for origin in value.split(","):
                check_origin(origin.strip(), "TEO_CODEC_CORS_ORIGIN")
        return value

    @field_validator("codec_oidc_algorithms")
    @classmethod
    def _algorithms_asymmetric(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        wrong = [name for name in names if name not in OIDC_ALGORITHMS]
        if not names or wrong:
            raise ValueError(
                f"TEO_CODEC_OIDC_ALGORITHMS: {', '.join(wrong) or 'empty'} not accepted; "
                f"choose among {', '.join(OIDC_ALGORITHMS)}"
            )
        return ",".join(names)

    @model_validator(mode="after")
    def _codec_tls_pair(self) -> Settings:
        if (self.codec_tls_cert_file is None) != (self.codec_tls_key_file is None):
            raise ValueError("https needs both TEO_CODEC_TLS_CERT_FILE and TEO_CODEC_TLS_KEY_FILE")
        return self

    def codec_origins(self) -> list[str]:
        """The UI origins the codec server admits, as configured (before ``local`` mode adds
        the other loopback spelling)."""
        if self.codec_cors_origin:
            return [o.strip() for o in self.codec_cors_origin.split(",") if o.strip()]
        parts = urlsplit(self.temporal_ui_url)
        return [f"{parts.scheme}://{parts.netloc}"]

    def codec_oidc_algorithm_list(self) -> list[str]:
        return self.codec_oidc_algorithms.split(",")

    def plan_settings(self) -> PlanSettings:
        return PlanSettings(
            plan_version=self.plan_version,
            delay_min_ms=int(self.delay_min_s * 1000),
            delay_max_ms=int(self.delay_max_s * 1000),
            size_variance=self.size_variance,
            correlation_threshold=self.correlation_threshold,
            correlated_min_gap_ms=int(self.correlated_min_gap_s * 1000),
            correlation_lookback_days=self.correlation_lookback_days,
            correlation_min_observations=self.correlation_min_observations,
            max_account_data_age_s=self.max_account_data_age_s,
            max_legs=self.max_legs,
            batch_size=self.batch_size,
        )

    def execution_settings(self) -> ExecutionSettings:
        return ExecutionSettings(
            order_start_to_close_s=self.order_timeout_s,
            order_schedule_to_close_s=self.order_schedule_to_close_s,
            order_heartbeat_s=self.order_heartbeat_s,
            poll_interval_ms=int(self.order_poll_interval_s * 1000),
            completion_max_attempts=self.completion_max_attempts,
            completion_deadline_s=self.completion_deadline_s,
            reroute_fraction=self.reroute_fraction,
            reroute_max_accounts=self.reroute_max_accounts,
            max_orders_in_flight=self.max_orders_in_flight,
            on_refused_stop=self.on_refused_stop,
            broker_task_queues=self.broker_task_queues,
            entry_ttl_s=self.entry_ttl_s,
            slice_window_ms=self.slice_window_ms,
            broker_orders_per_s=self.broker_orders_per_s,
            exit_delay_min_ms=int(self.exit_delay_min_s * 1000),
            exit_delay_max_ms=int(self.exit_delay_max_s * 1000),
        )

    def service_settings(self) -> ServiceSettings:
        """What the worker plans and executes every signal with (see ``ServiceSettings``)."""
        return ServiceSettings(plan=self.plan_settings(), execution=self.execution_settings())

    def ui_link(self, workflow_id: str) -> str:
        base = f"{self.temporal_ui_url}/namespaces/{self.temporal_namespace}"
        return f"{base}/workflows/{workflow_id}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

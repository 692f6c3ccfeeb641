"""Platform settings, read from the environment (prefix ``SPROUT_``) or a ``.env`` file."""

from __future__ import annotations

import os

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sprout.workspace import Workspace

REAL_MAL_API_URL = "https://api.myanimelist.net/v2"
REAL_MAL_WEB_URL = "https://myanimelist.net"
# List rows per ingest transaction: large enough that each transaction's fixed work (the commit,
# lookups over whole tables) is a small share, small enough to hold a group in memory many times over.
INGEST_GROUP_ENTRIES = 250_000


class Settings(BaseSettings):
    """Everything the platform reads from its environment.

    Secrets are ``SecretStr`` so that printing or logging the settings never shows them.
    """

    model_config = SettingsConfigDict(env_prefix="SPROUT_", env_file=".env", extra="ignore")

    home: Path = Field(Path("var"), description="Folder for the DuckDB file and everything else the platform writes.")
    mal_api_url: str = Field(REAL_MAL_API_URL, description="Base URL of the MAL API v2 (or the simulator's /v2).")
    mal_web_url: str = Field(REAL_MAL_WEB_URL, description="Base URL of the MAL website (recently-online users page).")
    mal_client_id: SecretStr | None = Field(None, description="MAL API client id, sent as X-MAL-CLIENT-ID.")
    mal_requests_per_second: float = Field(1.0, gt=0, description="Global request rate budget.")
    mal_max_in_flight: int = Field(4, ge=1, le=64, description="Most requests in flight at once.")
    mal_timeout_s: float = Field(30.0, gt=0, description="Per-request timeout.")
    mal_max_attempts: int = Field(6, ge=1, le=50, description="Attempts per request on 429, 5xx and timeouts.")
    mal_backoff_base_s: float = Field(1.0, ge=0, description="First backoff delay; doubles each attempt, with jitter.")
    mal_backoff_max_s: float = Field(120.0, ge=0, description="Longest single backoff delay.")
    mal_throttle_403_streak: int = Field(5, ge=2, description="403s in a row across different users that mean throttled.")
    mal_throttle_pause_s: float = Field(300.0, ge=0, description="Pause after a 403 streak before asking again.")
    withdrawn_retention_days: float = Field(
        30.0, ge=0, le=3650,
        description="Days the list entries of a user who went private or deleted their account are kept before purging.",
    )
    train_devices: int = Field(
        1, ge=1, description="Devices each training step's batch is split over (data parallel; 1 = one device)."
    )
    model_store: Path | None = Field(
        None, description="BentoML model store folder for the registry; default BentoML's ($BENTOML_HOME/models)."
    )
    mal_max_list_pages: int = Field(
        100, ge=1, description="Most pages one user's list may run to; past it the fetch is an error (data kept)."
    )
    crawl_mass_deletion_min_entries: int = Field(
        50, ge=1, description="Stored lists at least this long are guarded against mass deletion by one listing "
        "(a listing that would delete a whole list, of any length, always waits for a later one to agree).",
    )
    crawl_mass_deletion_fraction: float = Field(
        0.5, gt=0, le=1,
        description="A full listing deleting more than this share of a guarded list waits for a later listing to agree.",
    )
    crawl_spool: str | None = Field(
        None,
        description="Where crawls publish fetched lists for `sprout ingest` to write into the store: a folder, "
        "or a URL pyarrow.fs opens (s3://bucket/prefix, gs://...). Unset: crawls write the store directly.",
    )
    ingest_group_entries: int = Field(
        INGEST_GROUP_ENTRIES,
        ge=1,
        description="List rows `sprout ingest` applies per transaction, over as many spooled batches as fit "
        "(each transaction also costs lookups over whole tables, whatever its size).",
    )

    monitor_service_url: str | None = Field(
        None, description="The serving service whose /metrics each model health check reads (unset: none)."
    )
    monitor_max_ndcg_drop: float = Field(
        0.1, ge=0, description="The champion is degraded when its fresh-data NDCG@100 as a share of EASE's on the "
        "same users is more than this below that share at promotion (or when it is below EASE's).",
    )
    monitor_ease_tolerance: float = Field(
        0.0, ge=0, description="How far below EASE's fresh-data NDCG@100 the champion may fall before it is degraded.",
    )
    monitor_min_fresh_users: int = Field(
        50, ge=1, description="Users who added shows since the snapshot needed before a health check judges.",
    )
    monitor_max_users: int = Field(
        2000, ge=1, description="Most fresh-data users one health check scores (a seeded sample beyond).",
    )

    @field_validator("crawl_spool", "monitor_service_url")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return (value or "").strip() or None

    @field_validator("mal_api_url", "mal_web_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @property
    def workspace(self) -> Workspace:
        return Workspace(self.home)

    @property
    def db_path(self) -> Path:
        return self.workspace.database

    def client_id(self) -> str | None:
        return self.mal_client_id.get_secret_value() if self.mal_client_id else None


MAX_BODY_BYTES = 1 << 20


class ServeSettings(BaseSettings):
    """What the service reads from its environment (prefix ``SPROUT_SERVE_``)."""

    model_config = SettingsConfigDict(env_prefix="SPROUT_SERVE_", extra="ignore", populate_by_name=True)

    version: str | None = Field(None, description="Serve this version for the life of the process (no hot swap).")
    store_dir: Path | None = Field(
        None,
        validation_alias=AliasChoices("SPROUT_MODEL_STORE", "SPROUT_SERVE_STORE_DIR"),
        description="BentoML model store folder; default $BENTOML_HOME/models.",
    )
    workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1,
        description="Worker processes, each with its own engine and its own Python lock; default one per core.",
    )
    threads: int = Field(
        16, ge=1, description="Request threads per worker for /explain and /predict (plain /recommend is answered "
        "from the event loop, its forward passes shared on the worker's batch thread).",
    )
    max_queue: int = Field(
        32, ge=1, description="Most POST requests a worker holds at once (answering or waiting); past it a request is "
        "answered 503 with Retry-After at once, before its body is read.",
    )
    max_waiting_explanations: int = Field(
        4, ge=0, description="Explanations (/explain, /predict, explained /recommend) that may wait behind the one "
        "being computed, per worker; past it 503 with Retry-After.",
    )
    max_linger_ms: float = Field(
        20.0, ge=0, description="Longest a batch waits for the requests answered together last time to come back "
        "before it starts, and never longer than the last forward pass took (0: start at once). Larger batches "
        "read the weights once for more answers: +20-40% answers/s at 16 clients at the reference size.",
    )
    devices: int | None = Field(None, ge=1, description="CPU devices to shard explanations over.")
    pin_workers: Literal["auto"] | bool = Field(
        "auto", description="Run each worker on a core of its own: 'auto' when there is exactly one core per worker, "
        "true when there is at least one, false never (only with one device). XLA then runs each pass on the calling "
        "thread and the cores stop trading work: a shorter tail under load and faster single requests at the default "
        "size, but an explanation gets one core (about twice as long when the service is idle) and a pinned worker "
        "cannot move away from other work on its core.",
    )
    access_log: bool = Field(
        False, description="Log every request (BentoML's access log); off by default: writing it took a sixth of the "
        "event loop's time under load.",
    )
    tracing: bool = Field(
        False, description="Let BentoML's OpenTelemetry middleware trace requests (configure BentoML's tracing "
        "exporter as well); off by default: spans that no exporter collects cost a third of the framework's time "
        "per request.",
    )
    poll_s: float = Field(5.0, gt=0, description="Seconds between checks of the registry for a new champion.")
    max_body_bytes: int = Field(MAX_BODY_BYTES, ge=1024, description="Largest request body; larger is answered 413.")
    username_deadline_s: float = Field(
        10.0, gt=0, le=120, description="Longest wait for MyAnimeList when a request names a username."
    )
    list_cache_ttl_s: float = Field(600.0, ge=0, description="How long a fetched list answers again for its username.")
    list_cache_size: int = Field(1024, ge=1, description="Most usernames whose lists are cached.")
    item_url: str = Field(
        "https://myanimelist.net/anime/{id}", description="A show's page, {id} standing for its id (links on the web page)."
    )
    explain_normaliser: Literal["exact", "first_order"] = Field(
        "exact",
        description="How /explain computes each held-out row's softmax normaliser: exactly over every show, or "
        "with the 512 most probable shows exact and the rest to first order (fewer FLOPs; contributors measured "
        "against exact by benchmarks/explain_agreement.py).",
    )

    def environment(self) -> dict[str, str]:
        """These settings as the environment variables that recreate them."""
        values = {
            "SPROUT_SERVE_VERSION": self.version,
            "SPROUT_MODEL_STORE": str(self.store_dir) if self.store_dir else None,
            "SPROUT_SERVE_WORKERS": self.workers,
            "SPROUT_SERVE_THREADS": self.threads,
            "SPROUT_SERVE_MAX_QUEUE": self.max_queue,
            "SPROUT_SERVE_MAX_WAITING_EXPLANATIONS": self.max_waiting_explanations,
            "SPROUT_SERVE_MAX_LINGER_MS": self.max_linger_ms,
            "SPROUT_SERVE_DEVICES": self.devices,
            "SPROUT_SERVE_PIN_WORKERS": self.pin_workers,
            "SPROUT_SERVE_ACCESS_LOG": self.access_log,
            "SPROUT_SERVE_TRACING": self.tracing,
            "SPROUT_SERVE_POLL_S": self.poll_s,
            "SPROUT_SERVE_MAX_BODY_BYTES": self.max_body_bytes,
            "SPROUT_SERVE_USERNAME_DEADLINE_S": self.username_deadline_s,
            "SPROUT_SERVE_LIST_CACHE_TTL_S": self.list_cache_ttl_s,
            "SPROUT_SERVE_LIST_CACHE_SIZE": self.list_cache_size,
            "SPROUT_SERVE_ITEM_URL": self.item_url,
            "SPROUT_SERVE_EXPLAIN_NORMALISER": self.explain_normaliser,
        }
        return {name: str(value) for name, value in values.items() if value is not None}

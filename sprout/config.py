"""Platform settings, read from the environment (prefix ``SPROUT_``) or a ``.env`` file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sprout.workspace import Workspace

REAL_MAL_API_URL = "https://api.myanimelist.net/v2"
REAL_MAL_WEB_URL = "https://myanimelist.net"


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
    model_store: Path | None = Field(
        None, description="BentoML model store folder for the registry; default BentoML's ($BENTOML_HOME/models)."
    )
    mal_max_list_pages: int = Field(
        100, ge=1, description="Most pages one user's list may run to; past it the fetch is an error (data kept)."
    )
    crawl_mass_deletion_min_entries: int = Field(
        50, ge=1, description="Stored lists at least this long are guarded against mass deletion by one listing."
    )
    crawl_mass_deletion_fraction: float = Field(
        0.5, gt=0, le=1,
        description="A full listing deleting more than this share of a guarded list waits for a later listing to agree.",
    )

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

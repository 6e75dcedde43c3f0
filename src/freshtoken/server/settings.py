"""Server settings, read from ``FRESHTOKEN_*`` environment variables (or a ``.env`` file)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SigningAlg = Literal["ES256", "RS256", "Ed25519"]


class Settings(BaseSettings):
    """Every knob of the server. The README documents each one."""

    model_config = SettingsConfigDict(env_prefix="FRESHTOKEN_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///freshtoken.db"
    issuer: str = "http://127.0.0.1:8000"
    audience: str = "freshtoken-api"
    access_token_ttl: int = Field(300, ge=1, le=86_400)
    refresh_idle_ttl: int = Field(7 * 86_400, ge=1)
    session_max_ttl: int = Field(30 * 86_400, ge=1)
    refresh_grace_seconds: float = Field(10.0, ge=0, le=300)
    signing_alg: SigningAlg = "ES256"
    # Retired keys stay in the JWKS this long after they stop signing (>= access_token_ttl).
    key_retire_grace: int = Field(3600, ge=0)
    # A rotated-in key is published this long before it signs (verifiers' JWKS caches).
    key_activation_delay: float = Field(20.0, ge=0, le=3600)
    leeway: int = Field(30, ge=0, le=600)
    secret_key: str | None = None
    secret_key_file: str | None = None

    ratelimit_enabled: bool = True
    ratelimit_storage_url: str = "memory://"
    ratelimit_login_per_username: str = "10/minute"
    ratelimit_login_per_ip: str = "60/minute"
    ratelimit_refresh_per_session: str = "120/minute"
    ratelimit_refresh_per_ip: str = "6000/minute"

    cors_origins: Annotated[list[str], NoDecode] = []
    cookie_name: str = "freshtoken_rt"
    cookie_secure: bool = True
    max_body_bytes: int = Field(16 * 1024, ge=1024, le=1024 * 1024)
    db_pool_size: int = Field(8, ge=1, le=256)
    # PostgreSQL: the refresh rotation on asyncpg, on the event loop (pg_rotation.py).
    db_asyncpg: bool = True
    # How often each server re-reads the signing keys (rotations by the CLI or a replica).
    key_reload_seconds: float = Field(10.0, gt=0, le=3600)

    password_time_cost: int = Field(2, ge=1)
    password_memory_kib: int = Field(19 * 1024, ge=8 * 1024)
    password_parallelism: int = Field(1, ge=1)

    demo_mode: bool = False
    log_level: str = "INFO"
    # gc.freeze() once started: see create_app's lifespan.
    gc_freeze: bool = True

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip().rstrip("/") for o in value.replace(",", " ").split() if o.strip()]
        return value

    @field_validator("issuer")
    @classmethod
    def _strip_issuer(cls, value: str) -> str:
        return value.rstrip("/")

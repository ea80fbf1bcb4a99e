"""Every KEYHALL_* setting, typed, with its default, in one class.

Nothing else in the server reads ``os.environ``: build a :class:`Settings` (from the environment, or by
hand in tests) and pass it to :func:`keyhall.server.app.create_app`.
"""

from __future__ import annotations

import ipaddress
import os
from functools import cached_property

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./keyhall.db"


class Settings(BaseSettings):
    """Server configuration. Each field ``x`` is read from ``KEYHALL_X``."""

    model_config = SettingsConfigDict(env_prefix="KEYHALL_", frozen=True, extra="ignore")

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="sqlite:///path (default ./keyhall.db, WAL mode) or postgresql://user@host/db",
    )
    host: str = "127.0.0.1"
    port: int = 3000
    workers: int = 1
    public_url: str | None = Field(
        default=None,
        description="The app host clients use (e.g. https://id.example.com); default http://HOST:PORT",
    )
    max_body_bytes: int = Field(default=64 * 1024, description="Request bodies above this get 413")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Peers (IPs or CIDRs) whose x-real-ip / x-forwarded-for is believed",
    )
    hash_concurrency: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        description="How many CPU-heavy jobs (argon2 hashes, RSA/SM2 decryptions) run at once; more queue",
    )
    db_pool_size: int = 10
    log_level: str = "info"
    log_json: bool = Field(default=True, description="JSON log lines (false: human-readable console)")

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)
        return value

    @cached_property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in self.trusted_proxies)

    @property
    def app_host(self) -> str:
        """The base URL printed by ``keyhall init`` and used as the token issuer prefix."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

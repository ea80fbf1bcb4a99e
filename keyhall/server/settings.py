"""Every KEYHALL_* setting, typed, with its default, in one class.

Nothing else in the server reads ``os.environ``: build a :class:`Settings` (from the environment, or by
hand in tests) and pass it to :func:`keyhall.server.app.create_app`.
"""

from __future__ import annotations

import ipaddress
import os
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from keyhall.server.crypto.kek import KeyEncryptionKey, ensure_key_file, read_key_file

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
    hash_processes: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=0,
        description="`keyhall serve` hashes passwords in this many processes shared by all its workers "
        "(one per core: each worker hashing in threads of its own ran more hashes at once than there are "
        "cores, and each cost more CPU); 0 hashes in each worker's threads instead",
    )
    hash_queue_max: int = Field(
        default=256,
        ge=0,
        description="How many CPU-heavy jobs may wait for a free slot per process; beyond that a request "
        "gets a 503 envelope with Retry-After instead of joining an ever-longer queue",
    )
    user_cache_size: int = Field(
        default=10_000,
        ge=0,
        description="How many signed-in users each process keeps for get-profile and the other "
        "token-authenticated reads (forgotten at once when the database says they changed: SQLite's data "
        "version, PostgreSQL's notifications); 0 turns the cache off",
    )
    user_cache_max_age_s: float = Field(
        default=30.0,
        gt=0,
        description="A cached user is read again after this long even if no change was heard of",
    )
    db_pool_size: int = 20
    db_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="PostgreSQL: connecting, waiting for a pooled connection and each statement of the "
        "server may take this long; then the request gets a 503 envelope (the database is unreachable)",
    )
    request_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A request not answered this long after it arrived gets a 503 envelope "
        "(request_timeout) and its work is cancelled",
    )
    app_cache_ttl_s: float = Field(
        default=5.0,
        ge=0,
        description="How long a process keeps an application and its pool's rules in memory; changes "
        "made by another process (a pool's settings, an app secret) apply within this many seconds "
        "(0: read the database on every request)",
    )
    timeout_keep_alive_s: float = Field(
        default=5.0, gt=0, description="An idle keep-alive connection is closed after this many seconds"
    )
    timeout_header_s: float = Field(
        default=10.0,
        gt=0,
        description="A connection that has not sent a whole request head (line and headers) this long "
        "after it opened, or after its previous answer, is closed (slow-header clients)",
    )
    graceful_shutdown_s: float = Field(
        default=30.0,
        gt=0,
        description="On SIGTERM/SIGINT: stop accepting, then wait this long for in-flight requests to "
        "be answered before cancelling them",
    )
    metrics_enabled: bool = Field(
        default=True, description="Serve Prometheus metrics at GET /metrics (restrict it at the proxy)"
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Encrypts private keys stored in the database (32+ characters); the same on every host",
    )
    secret_key_file: Path | None = Field(
        default=None,
        description="Key file used when no secret key is set; created by init (mode 0600). "
        "Default: keyhall.key beside an SQLite database, else in the working directory",
    )
    signing_key_refresh_s: float = Field(
        default=60.0,
        ge=0,
        le=600,
        description="How often a process reloads the token signing keys from the database (how soon "
        "`keyhall keys rotate-signing` reaches running servers); 0 reloads on every use",
    )
    transport_key_refresh_s: float = Field(
        default=30.0,
        gt=0,
        description="How old a pool's password transport keys may get in a process's memory before it "
        "reloads them from the database (how soon `keyhall keys rotate` reaches running servers)",
    )
    redis_url: str | None = Field(
        default=None, description="redis://host:port/db: rate-limit counters in Redis instead of the database"
    )
    redis_key_prefix: str = Field(
        default="keyhall:ratelimit",
        min_length=1,
        description="Prefix of every counter key in Redis (the rest is the SHA-256 of the counter's name)",
    )
    redis_timeout_s: float = Field(
        default=0.5,
        gt=0,
        description="Connect and per-command timeout for Redis; when it is unreachable, requests that "
        "need a counter get a 503 envelope after about twice this",
    )
    log_level: str = "info"
    log_json: bool = Field(default=True, description="JSON log lines (false: human-readable console)")
    # The courier (keyhall.server.courier): without SMTP / SMS settings, messages go to the dev outbox.
    smtp_url: SecretStr | None = Field(
        default=None,
        description="smtp://user:pass@host:587?starttls=true or smtps://user:pass@host:465 "
        "(unset: the dev outbox)",
    )
    mail_from: str = Field(default="Keyhall <no-reply@localhost>", description="The From of every email")
    smtp_timeout_s: float = Field(default=20.0, description="Connect and per-command SMTP timeout")
    sms_webhook_url: str | None = Field(
        default=None, description="http(s) URL that receives each SMS as HMAC-SHA256-signed JSON"
    )
    sms_webhook_secret: SecretStr | None = Field(
        default=None, description="The HMAC key for the SMS webhook signature (required with the URL)"
    )
    outbox_poll_s: float = Field(default=1.0, description="How often the delivery worker looks for messages")
    outbox_max_attempts: int = Field(default=8, description="Delivery attempts before a message is failed")
    outbox_retry_base_s: float = Field(default=2.0, description="First retry delay; doubles each attempt")
    outbox_retry_cap_s: float = Field(default=300.0, description="The longest delay between two attempts")
    outbox_lease_s: float = Field(
        default=120.0, description="How long a claimed message is reserved for one worker before another may"
    )

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
    def key_file_path(self) -> Path:
        if self.secret_key_file is not None:
            return self.secret_key_file
        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            return Path(url.database).parent / "keyhall.key"
        return Path("keyhall.key")

    def key_encryption_key(self, *, create: bool = False) -> KeyEncryptionKey:
        """The KEK from ``secret_key``, else from the key file (created first when ``create``)."""
        if self.secret_key is not None:
            return KeyEncryptionKey.from_secret(self.secret_key.get_secret_value())
        if create:
            return ensure_key_file(self.key_file_path)[0]
        return read_key_file(self.key_file_path)

    @property
    def app_host(self) -> str:
        """The base URL printed by ``keyhall init`` and used as the token issuer prefix."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

"""The schema: user pools, applications, users and their external identities, transport keys.

Uniqueness lives here, in unique indexes on the normalised identifiers, so that concurrent sign-ups of
one email settle in the database: exactly one insert wins.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, MetaData, String, Text, false
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# JSONB on PostgreSQL (indexable, compact), JSON text elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _ts() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False)


class Pool(Base):
    __tablename__ = "pools"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    allow_self_registration: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    password_strength: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    password_regex: Mapped[str | None] = mapped_column(Text)
    password_regex_message: Mapped[str | None] = mapped_column(Text)
    password_nist: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    argon2_time_cost: Mapped[int] = mapped_column(Integer, nullable=False)
    argon2_memory_kib: Mapped[int] = mapped_column(Integer, nullable=False)
    argon2_parallelism: Mapped[int] = mapped_column(Integer, nullable=False)
    # Verification codes (keyhall.server.flows.codes); defaults also in migration 0005.
    code_ttl_s: Mapped[int] = mapped_column(Integer, nullable=False, default=300, server_default="300")
    code_max_attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=5, server_default="5")
    code_resend_interval_s: Mapped[int] = mapped_column(
        Integer, nullable=False, default=60, server_default="60"
    )
    code_sends_per_ip_hour: Mapped[int] = mapped_column(
        Integer, nullable=False, default=30, server_default="30"
    )
    require_verified_email: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    # Sign-in brute-force protection (keyhall.server.flows.signin); defaults also in migration 0004.
    signin_max_failures: Mapped[int] = mapped_column(Integer, nullable=False, default=10, server_default="10")
    signin_failure_window_s: Mapped[int] = mapped_column(
        Integer, nullable=False, default=900, server_default="900"
    )
    signin_lock_s: Mapped[int] = mapped_column(Integer, nullable=False, default=900, server_default="900")
    signin_max_failures_per_ip: Mapped[int] = mapped_column(
        Integer, nullable=False, default=100, server_default="100"
    )
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts()


class Application(Base):
    __tablename__ = "applications"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    pool_id: Mapped[str] = mapped_column(
        ForeignKey("pools.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    secret_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    # Token lifetimes in seconds (keyhall.server.tokens); defaults also in migration 0004.
    access_token_ttl_s: Mapped[int] = mapped_column(
        Integer, nullable=False, default=7200, server_default="7200"
    )
    id_token_ttl_s: Mapped[int] = mapped_column(Integer, nullable=False, default=7200, server_default="7200")
    refresh_token_ttl_s: Mapped[int] = mapped_column(
        Integer, nullable=False, default=2592000, server_default="2592000"
    )
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts()


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        Index("uq_users_pool_email", "pool_id", "email_norm", unique=True),
        Index("uq_users_pool_username", "pool_id", "username_norm", unique=True),
        Index("uq_users_pool_phone", "pool_id", "phone_e164", unique=True),
        Index("uq_users_pool_external_id", "pool_id", "external_id", unique=True),
    )

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    pool_id: Mapped[str] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    work_status: Mapped[str] = mapped_column(String(16), nullable=False, default="Active")
    external_id: Mapped[str | None] = mapped_column(String(255))

    email: Mapped[str | None] = mapped_column(String(320))
    email_norm: Mapped[str | None] = mapped_column(String(320))
    email_verified: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    phone: Mapped[str | None] = mapped_column(String(32))
    phone_country_code: Mapped[str | None] = mapped_column(String(8))
    phone_e164: Mapped[str | None] = mapped_column(String(32))
    phone_verified: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    username: Mapped[str | None] = mapped_column(String(255))
    username_norm: Mapped[str | None] = mapped_column(String(255))

    password_hash: Mapped[str | None] = mapped_column(Text)
    password_security_level: Mapped[int | None] = mapped_column(Integer)
    password_last_set_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reset_password_on_next_login: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    # SignUpProfileDto / UserDto profile fields.
    name: Mapped[str | None] = mapped_column(String(255))
    nickname: Mapped[str | None] = mapped_column(String(255))
    given_name: Mapped[str | None] = mapped_column(String(255))
    family_name: Mapped[str | None] = mapped_column(String(255))
    middle_name: Mapped[str | None] = mapped_column(String(255))
    preferred_username: Mapped[str | None] = mapped_column(String(255))
    profile: Mapped[str | None] = mapped_column(Text)
    photo: Mapped[str | None] = mapped_column(Text)
    website: Mapped[str | None] = mapped_column(Text)
    gender: Mapped[str] = mapped_column(String(1), nullable=False, default="U")
    birthdate: Mapped[str | None] = mapped_column(String(10))
    zoneinfo: Mapped[str | None] = mapped_column(String(255))
    locale: Mapped[str | None] = mapped_column(String(255))
    company: Mapped[str | None] = mapped_column(String(255))
    browser: Mapped[str | None] = mapped_column(Text)
    device: Mapped[str | None] = mapped_column(String(255))
    country: Mapped[str | None] = mapped_column(String(255))
    province: Mapped[str | None] = mapped_column(String(255))
    city: Mapped[str | None] = mapped_column(String(255))
    region: Mapped[str | None] = mapped_column(String(255))
    locality: Mapped[str | None] = mapped_column(String(255))
    address: Mapped[str | None] = mapped_column(Text)
    formatted: Mapped[str | None] = mapped_column(Text)
    street_address: Mapped[str | None] = mapped_column(Text)
    postal_code: Mapped[str | None] = mapped_column(String(64))
    custom_data: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)

    user_source_type: Mapped[str] = mapped_column(String(32), nullable=False)
    user_source_id: Mapped[str | None] = mapped_column(String(64))
    logins_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_login: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_ip: Mapped[str | None] = mapped_column(String(64))
    last_login_app: Mapped[str | None] = mapped_column(String(24))
    last_mfa_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    main_department_id: Mapped[str | None] = mapped_column(String(24))
    signup_ip: Mapped[str | None] = mapped_column(String(64))
    status_changed_at: Mapped[datetime] = _ts()
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts()


class Identity(Base):
    """A link from a user to an account in an external identity provider (IdentityDto)."""

    __tablename__ = "identities"
    __table_args__ = (
        Index("uq_identities_idp_user", "pool_id", "ext_idp_id", "user_id_in_idp", unique=True),
    )

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    pool_id: Mapped[str] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), nullable=False)
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    ext_idp_id: Mapped[str] = mapped_column(String(64), nullable=False)
    provider: Mapped[str] = mapped_column(String(32), nullable=False)
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    user_id_in_idp: Mapped[str] = mapped_column(String(255), nullable=False)
    origin_conn_ids: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    created_at: Mapped[datetime] = _ts()


class TransportKey(Base):
    """A pool's key for password transport encryption (keyhall.server.crypto.transport); migration 0003.

    Per (pool, kind) the highest ``generation`` is the current key (``accept_until`` NULL); older ones
    are still accepted until ``accept_until``. ``private_key_sealed`` is sealed with the key-encryption
    key (context ``transport:<kind>:<pool_id>:<id>``): the table never holds a private key in clear.
    """

    __tablename__ = "transport_keys"
    __table_args__ = (
        Index("uq_transport_keys_pool_kind_generation", "pool_id", "kind", "generation", unique=True),
    )

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    pool_id: Mapped[str] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    generation: Mapped[int] = mapped_column(Integer, nullable=False)
    private_key_sealed: Mapped[str] = mapped_column(Text, nullable=False)
    public_key: Mapped[str] = mapped_column(Text, nullable=False)
    accept_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _ts()


class RateLimitCounter(Base):
    """A fixed-window counter (see ``keyhall.server.ratelimit``); ``key`` is the SHA-256 of the name."""

    __tablename__ = "rate_limit_counters"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, nullable=False)
    window_ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)


class VerificationCode(Base):
    """The live code of one (pool, channel, address); a new send replaces it (keyhall.server.flows.codes).

    ``lookup`` is an HMAC of pool, channel and address, ``code_mac`` an HMAC of the code bound to it: the
    table holds neither the code nor the address in clear.
    """

    __tablename__ = "verification_codes"

    lookup: Mapped[str] = mapped_column(String(64), primary_key=True)
    pool_id: Mapped[str] = mapped_column(
        ForeignKey("pools.id", ondelete="CASCADE"), nullable=False, index=True
    )
    channel: Mapped[str] = mapped_column(String(40), nullable=False)
    code_mac: Mapped[str] = mapped_column(String(64), nullable=False)
    failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    max_failures: Mapped[int] = mapped_column(Integer, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _ts()


class OutboxMessage(Base):
    """An email or SMS waiting for (or done with) delivery: the transactional outbox (courier/outbox.py).

    ``state``: pending -> sending (claimed, ``lease_until``) -> sent | pending (retry) | failed; ``dev`` is
    the dev outbox (no transport configured; shown by ``keyhall outbox``). ``payload`` is the message
    sealed with the key-encryption key; it is cleared once a real transport has sent it.
    """

    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_messages_state_due", "state", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    pool_id: Mapped[str] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[str] = mapped_column(String(8), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    payload: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claim_token: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _ts()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SigningKey(Base):
    """An RS256 key pair that signs tokens (keyhall.server.tokens.keys); the private key is sealed with
    the KEK. The newest unretired key signs; a retired key stays in the JWKS until ``verify_until``."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    private_key: Mapped[str] = mapped_column(Text, nullable=False)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    created_at: Mapped[datetime] = _ts()
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    verify_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RefreshToken(Base):
    """A refresh token, stored as its SHA-256 only. Every use rotates it: the row is marked used and a
    new row joins the same ``family_id``; presenting a used one again revokes the whole family."""

    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    family_id: Mapped[str] = mapped_column(String(24), nullable=False, index=True)
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    app_id: Mapped[str] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"), nullable=False)
    scope: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _ts()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RevokedAccessToken(Base):
    """The ``jti`` of an access token revoked before its expiry; kept until ``expires_at``."""

    __tablename__ = "revoked_access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)

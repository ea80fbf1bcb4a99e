"""An application as the flows see it: its id, its pool and the pool's rules."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

from keyhall.server.crypto.passwords import Argon2Params
from keyhall.server.identity.password_policy import PasswordPolicy


@dataclass(frozen=True)
class SignInLockout:
    """Brute-force protection of password sign-in (pool settings): ``max_failures`` failures of one
    account within ``window_s`` lock its password sign-in for ``lock_s``; ``max_failures_per_ip`` failures
    from one client address within ``window_s`` throttle that address."""

    max_failures: int = 10
    window_s: int = 900
    lock_s: int = 900
    max_failures_per_ip: int = 100


@dataclass(frozen=True)
class App:
    id: str
    name: str
    pool_id: str
    secret_sha256: str
    allow_self_registration: bool
    password_policy: PasswordPolicy
    argon2: Argon2Params
    # Token lifetimes (seconds) and sign-in lockout settings; defaults as in migration 0004.
    access_token_ttl_s: int = 7200
    id_token_ttl_s: int = 7200
    refresh_token_ttl_s: int = 30 * 24 * 3600
    lockout: SignInLockout = field(default_factory=lambda: SignInLockout())
    # A password sign-up with an email must prove it with a code (pool setting require_verified_email).
    require_verified_email: bool = False

    @classmethod
    def from_rows(cls, app: Any, pool: Any) -> App:
        return cls(
            id=app.id,
            name=app.name,
            pool_id=pool.id,
            secret_sha256=app.secret_sha256,
            allow_self_registration=pool.allow_self_registration,
            password_policy=PasswordPolicy(
                strength=pool.password_strength,
                custom_regex=pool.password_regex,
                custom_message=pool.password_regex_message,
                nist=pool.password_nist,
            ),
            argon2=Argon2Params(
                time_cost=pool.argon2_time_cost,
                memory_kib=pool.argon2_memory_kib,
                parallelism=pool.argon2_parallelism,
            ),
            access_token_ttl_s=app.access_token_ttl_s,
            id_token_ttl_s=app.id_token_ttl_s,
            refresh_token_ttl_s=app.refresh_token_ttl_s,
            lockout=SignInLockout(
                max_failures=pool.signin_max_failures,
                window_s=pool.signin_failure_window_s,
                lock_s=pool.signin_lock_s,
                max_failures_per_ip=pool.signin_max_failures_per_ip,
            ),
            require_verified_email=pool.require_verified_email,
        )

    def secret_matches(self, secret: str) -> bool:
        return hmac.compare_digest(hash_secret(secret), self.secret_sha256)


def hash_secret(secret: str) -> str:
    """App secrets are 256 random bits, so one SHA-256 suffices (no slow hash needed to resist guessing)."""
    return hashlib.sha256(secret.encode()).hexdigest()

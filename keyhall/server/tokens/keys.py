"""The RS256 signing keys: stored in ``signing_keys`` with the private part sealed by the KEK, shared by
every server process on every host, published as a JWKS (RFC 7517).

The newest key that is not retired signs. ``keyhall keys rotate-signing`` retires it and creates a new one;
a retired key stays in the JWKS (so tokens it signed still verify) until ``verify_until``: the longest
access or id token lifetime of any application after its retirement, plus a margin for processes that
have not yet reloaded their keys. Each process reloads the keys every ``KEYHALL_SIGNING_KEY_REFRESH_S``
seconds (default 60), and sooner when a token names a ``kid`` it does not know.

The ``kid`` is the key's JWK thumbprint (RFC 7638), so it names the key and nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import Table, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from keyhall.server.clock import Clock
from keyhall.server.crypto.kek import KeyEncryptionKey
from keyhall.server.store.db import read_transaction, write_transaction
from keyhall.server.store.migrate import lock_for_setup
from keyhall.server.store.tables import Application, SigningKey

__all__ = ["RELOAD_S", "KeyRing", "SigningKeys", "rotate_signing_key"]

signing_keys = cast(Table, SigningKey.__table__)
applications = cast(Table, Application.__table__)

RELOAD_S = 60.0
# How long a retired key outlives the tokens it may have signed: processes that have not reloaded yet
# may sign with it for up to their reload interval more (at most 600 s), plus clock differences.
RETIRE_MARGIN = timedelta(seconds=600 + 300)
# An unknown kid triggers a reload at most this often, so random kids cannot make every request a query.
_UNKNOWN_KID_RELOAD_S = 5.0
_KEY_BITS = 2048


@dataclass(frozen=True)
class KeyRing:
    """The keys one process holds: the one that signs, and every public key that still verifies."""

    signing_kid: str
    signing_key: rsa.RSAPrivateKey
    public_keys: dict[str, rsa.RSAPublicKey]
    jwks: dict[str, Any]


class SigningKeys:
    """This process's view of the signing keys, reloaded from the database now and then."""

    def __init__(
        self, engine: AsyncEngine, kek: KeyEncryptionKey, clock: Clock, reload_s: float = RELOAD_S
    ) -> None:
        self._reload_s = reload_s
        self._engine = engine
        self._kek = kek
        self._clock = clock
        self._ring: KeyRing | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Create the first key if there is none (safe from several processes), then load."""
        await ensure_signing_key(self._engine, self._kek, self._clock)
        await self.reload()

    async def ring(self) -> KeyRing:
        if self._ring is None or time.monotonic() - self._loaded_at >= self._reload_s:
            await self.reload()
        assert self._ring is not None
        return self._ring

    async def jwks(self) -> dict[str, Any]:
        """The JWKS as the database has it now (a rotation shows at once, whatever the reload interval)."""
        now = self._clock()
        async with read_transaction(self._engine) as conn:
            rows = await conn.execute(
                select(signing_keys.c.public_jwk)
                .where(or_(signing_keys.c.verify_until.is_(None), signing_keys.c.verify_until > now))
                .order_by(signing_keys.c.created_at.desc())
            )
            return {"keys": [dict(row.public_jwk) for row in rows]}

    async def public_key(self, kid: str) -> rsa.RSAPublicKey | None:
        """The public key named ``kid`` if it still verifies; reloads once when it is not known."""
        ring = await self.ring()
        key = ring.public_keys.get(kid)
        if key is None and time.monotonic() - self._loaded_at > _UNKNOWN_KID_RELOAD_S:
            await self.reload()
            assert self._ring is not None
            key = self._ring.public_keys.get(kid)
        return key

    async def reload(self) -> None:
        async with self._lock:
            now = self._clock()
            async with read_transaction(self._engine) as conn:
                rows = list(
                    await conn.execute(
                        select(signing_keys)
                        .where(or_(signing_keys.c.verify_until.is_(None), signing_keys.c.verify_until > now))
                        .order_by(signing_keys.c.created_at.desc())
                    )
                )
            active = [row for row in rows if row.retired_at is None]
            if not active:
                raise RuntimeError(
                    "there is no signing key: run `keyhall init` or `keyhall keys rotate-signing`"
                )
            current = active[0]
            private = serialization.load_pem_private_key(
                self._kek.open(current.private_key, _context(current.kid)), password=None
            )
            assert isinstance(private, rsa.RSAPrivateKey)
            public_keys: dict[str, rsa.RSAPublicKey] = {}
            for row in rows:
                key = RSAAlgorithm.from_jwk(json.dumps(row.public_jwk))
                assert isinstance(key, rsa.RSAPublicKey)
                public_keys[row.kid] = key
            self._ring = KeyRing(
                signing_kid=current.kid,
                signing_key=private,
                public_keys=public_keys,
                jwks={"keys": [dict(row.public_jwk) for row in rows]},
            )
            self._loaded_at = time.monotonic()


async def ensure_signing_key(engine: AsyncEngine, kek: KeyEncryptionKey, clock: Clock) -> None:
    async with read_transaction(engine) as conn:
        if await _active_count(conn) > 0:
            return
    async with write_transaction(engine) as conn:
        await lock_for_setup(conn)
        if await _active_count(conn) == 0:
            await _insert_new_key(conn, kek, clock())


async def rotate_signing_key(
    engine: AsyncEngine, kek: KeyEncryptionKey, clock: Clock
) -> tuple[str, list[str]]:
    """Retire the signing key(s) and create a new one; returns the new kid and the retired kids.

    Keys whose ``verify_until`` has passed are deleted on the way.
    """
    async with write_transaction(engine) as conn:
        await lock_for_setup(conn)
        now = clock()
        longest = (
            await conn.execute(
                select(func.max(applications.c.access_token_ttl_s), func.max(applications.c.id_token_ttl_s))
            )
        ).one()
        lifetime = timedelta(seconds=max(int(longest[0] or 0), int(longest[1] or 0)))
        retired = [
            row.kid
            for row in await conn.execute(
                select(signing_keys.c.kid).where(signing_keys.c.retired_at.is_(None))
            )
        ]
        await conn.execute(
            update(signing_keys)
            .where(signing_keys.c.retired_at.is_(None))
            .values(retired_at=now, verify_until=now + lifetime + RETIRE_MARGIN)
        )
        await conn.execute(delete(signing_keys).where(signing_keys.c.verify_until <= now))
        kid = await _insert_new_key(conn, kek, now)
    return kid, retired


async def _active_count(conn: AsyncConnection) -> int:
    query = select(func.count()).select_from(signing_keys).where(signing_keys.c.retired_at.is_(None))
    return int((await conn.execute(query)).scalar_one())


async def _insert_new_key(conn: AsyncConnection, kek: KeyEncryptionKey, now: datetime) -> str:
    private = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    kid = _thumbprint(jwk)
    jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    await conn.execute(
        signing_keys.insert().values(
            kid=kid, private_key=kek.seal(pem, _context(kid)), public_jwk=jwk, created_at=now
        )
    )
    return kid


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace."""
    canonical = json.dumps({"e": jwk["e"], "kty": jwk["kty"], "n": jwk["n"]}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _context(kid: str) -> str:
    return f"signing:{kid}"

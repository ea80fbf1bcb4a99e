"""Issuing and checking tokens (RFC 7519 JWTs, RFC 6749 refresh, RFC 7662 introspection, RFC 7009
revocation).

* Access and id tokens are RS256 JWTs with ``kid``; issuer ``<app_host>/oidc`` (from the settings, not
  from the request's Host: every host of a deployment issues the same ``iss``), audience the app id.
  Access tokens carry ``scope`` and ``sid`` (the sign-in session); id tokens carry ``at_hash`` and the
  user claims their scope releases, never ``scope``. That difference is how one is told from the other.
* Refresh tokens are opaque (32 random bytes), stored as their SHA-256. Each use marks the row used and
  adds a new one to the same family (the session); a used one presented again revokes the family, so a
  stolen refresh token works at most until its owner refreshes.
* A revoked access token's ``jti`` is kept until the token expires; checks of access tokens consult it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import jwt
from sqlalchemy import Table, bindparam, delete, exists, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from keyhall.server.clock import Clock
from keyhall.server.errors import InvalidGrant, InvalidToken
from keyhall.server.identity.app import App
from keyhall.server.identity.ids import new_id
from keyhall.server.store.db import read_one, read_transaction, write_transaction
from keyhall.server.store.tables import RefreshToken, RevokedAccessToken, User
from keyhall.server.store.user_cache import UserCache
from keyhall.server.tokens.claims import user_claims
from keyhall.server.tokens.keys import SigningKeys

__all__ = ["TokenSet", "Tokens", "revoked_flag"]

refresh_tokens = cast(Table, RefreshToken.__table__)
revoked = cast(Table, RevokedAccessToken.__table__)
users = cast(Table, User.__table__)

_PURGE_EVERY = 500
# Verified access tokens remembered per process (see Tokens._decode): a few MB at most.
_VERIFIED_MAX = 4096

# Whether the access token with the bound ``jti`` has been revoked, as a column a caller can add to the
# statement it runs anyway (get-profile reads the user and this flag in one round trip).
revoked_flag = exists().where(revoked.c.jti == bindparam("jti")).label("token_revoked")
_REVOKED = select(revoked.c.jti).where(revoked.c.jti == bindparam("jti"))


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    expires_in: int
    scope: str
    id_token: str | None = None
    refresh_token: str | None = None
    token_type: str = "Bearer"  # noqa: S105 (the OAuth token type, not a secret)

    def as_dict(self) -> dict[str, Any]:
        """The LoginTokenRespDto / token endpoint answer (``expire_in`` and ``expires_in`` both)."""
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expire_in": self.expires_in,
            "expires_in": self.expires_in,
            "scope": self.scope,
        }
        if self.id_token is not None:
            body["id_token"] = self.id_token
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        return body


class Tokens:
    """Token issuance and checks for one server process."""

    def __init__(
        self,
        engine: AsyncEngine,
        keys: SigningKeys,
        issuer: str,
        clock: Clock,
        users: UserCache | None = None,
    ) -> None:
        self._engine = engine
        self._users = users  # the process's user cache: a token revoked here is forgotten here at once
        self._keys = keys
        self.issuer = issuer
        self._clock = clock
        self._writes = 0
        self._verified: OrderedDict[tuple[str, str | None], tuple[str, dict[str, Any]]] = OrderedDict()

    async def issue(self, app: App, user: Any, scope: str, *, session_id: str | None = None) -> TokenSet:
        """Tokens for a fresh sign-in: a new session, and a refresh token when ``offline_access``."""
        session_id = session_id or new_id()
        refresh = None
        if "offline_access" in scope.split():
            async with write_transaction(self._engine) as conn:
                refresh = await self._new_refresh_token(conn, app, user.id, scope, session_id)
        return await self._sign(app, user, scope, session_id, refresh)

    async def refresh(self, app: App, token: str) -> TokenSet:
        """The refresh_token grant: rotate the token; reuse of a rotated one revokes its whole family."""
        now = self._clock()
        reused_family: str | None = None
        async with write_transaction(self._engine) as conn:
            row = await _refresh_row(conn, token)
            if row is None or row.app_id != app.id:
                raise InvalidGrant(reason="is unknown or was issued to another application")
            if row.revoked_at is not None:
                raise InvalidGrant(reason="has been revoked")
            if _aware(row.expires_at) <= now:
                raise InvalidGrant(reason="has expired")
            claimed = await conn.execute(
                update(refresh_tokens)
                .where(
                    refresh_tokens.c.id == row.id,
                    refresh_tokens.c.used_at.is_(None),
                    refresh_tokens.c.revoked_at.is_(None),
                )
                .values(used_at=now)
            )
            if claimed.rowcount == 0:
                await _revoke_family(conn, row.family_id, now)
                reused_family = row.family_id
            else:
                user = (await conn.execute(select(users).where(users.c.id == row.user_id))).first()
                if user is None or user.status != "Activated":
                    raise InvalidGrant(reason="belongs to an account that can no longer sign in")
                new_token = await self._new_refresh_token(conn, app, user.id, row.scope, row.family_id)
        if reused_family is not None:
            # Raised after the commit: the family stays revoked.
            raise InvalidGrant(reason="was already used; every token of its session is now revoked")
        return await self._sign(app, user, row.scope, row.family_id, new_token)

    async def verify_access(self, token: str, audience: str | None = None) -> dict[str, Any]:
        """The claims of a valid, unrevoked access token (for ``audience`` when given); else InvalidToken."""
        claims = await self.signed_access_claims(token, audience)
        if await read_one(self._engine, _REVOKED, {"jti": claims["jti"]}) is not None:
            raise InvalidToken(reason="has been revoked")
        return claims

    async def signed_access_claims(self, token: str, audience: str | None = None) -> dict[str, Any]:
        """The claims of an access token signed by this server, unexpired, for ``audience`` when given.

        Revocation is NOT checked here: the caller must, in the same statement as its own read (see
        ``revoked_flag``), or call ``verify_access`` instead.
        """
        claims = await self._decode(token, audience)
        if "scope" not in claims or "at_hash" in claims:
            raise InvalidToken(reason="is not an access token")
        return claims

    async def introspect(self, app: App, token: str) -> dict[str, Any]:
        """RFC 7662: what the token is, for the app it was issued to; ``{"active": false}`` otherwise."""
        if token.count(".") == 2:
            try:
                claims = await self.verify_access(token, audience=app.id)
            except InvalidToken:
                return {"active": False}
            return {
                "active": True,
                "sub": claims["sub"],
                "client_id": app.id,
                "exp": claims["exp"],
                "iat": claims["iat"],
                "iss": claims["iss"],
                "jti": claims["jti"],
                "scope": claims["scope"],
                "token_type": "Bearer",
            }
        async with read_transaction(self._engine) as conn:
            row = await _refresh_row(conn, token)
        now = self._clock()
        if (
            row is None
            or row.app_id != app.id
            or row.used_at is not None
            or row.revoked_at is not None
            or _aware(row.expires_at) <= now
        ):
            return {"active": False}
        return {
            "active": True,
            "sub": row.user_id,
            "client_id": app.id,
            "exp": int(_aware(row.expires_at).timestamp()),
            "iat": int(_aware(row.created_at).timestamp()),
            "iss": self.issuer,
            "scope": row.scope,
            "token_type": "refresh_token",
        }

    async def revoke(self, app: App, token: str) -> None:
        """RFC 7009: revoke an access token (its jti) or a refresh token (its whole session family).

        Unknown tokens and tokens of other apps are ignored, as the RFC asks.
        """
        now = self._clock()
        if token.count(".") == 2:
            try:
                claims = await self.verify_access(token, audience=app.id)
            except InvalidToken:
                return
            await self.revoke_access(claims)
            return
        async with write_transaction(self._engine) as conn:
            row = await _refresh_row(conn, token)
            if row is not None and row.app_id == app.id:
                await _revoke_family(conn, row.family_id, now)

    async def revoke_access(self, claims: dict[str, Any]) -> None:
        now = self._clock()
        insert: Any = (postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert)(
            revoked
        )
        expires = datetime.fromtimestamp(int(claims["exp"]), tz=now.tzinfo)
        self._writes += 1
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                insert.values(jti=claims["jti"], expires_at=expires).on_conflict_do_nothing(
                    index_elements=[revoked.c.jti]
                )
            )
            if self._writes % _PURGE_EVERY == 0:
                await conn.execute(delete(revoked).where(revoked.c.expires_at <= now))
        if self._users is not None:
            self._users.drop_token(claims["jti"])

    async def revoke_other_sessions(
        self, conn: AsyncConnection, user_id: str, keep_session: str | None
    ) -> int:
        """Revoke the user's refresh tokens except those of ``keep_session``; returns how many."""
        query = update(refresh_tokens).where(
            refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoked_at.is_(None)
        )
        if keep_session is not None:
            query = query.where(refresh_tokens.c.family_id != keep_session)
        result = await conn.execute(query.values(revoked_at=self._clock()))
        return int(result.rowcount)

    async def _decode(self, token: str, audience: str | None) -> dict[str, Any]:
        """The claims of a token this server signed, for ``audience`` when given, not expired.

        A verified token's claims are remembered (the last ``_VERIFIED_MAX`` tokens, per process): the
        signature check and the decoding are a seventh of a get-profile's CPU, and the same access token
        comes back with every request of its session. Only tokens that passed every check are kept, so
        junk cannot fill the cache; what can change for a remembered token is still checked on every
        use: its expiry (against the clock), and whether its signing key is still one this server
        verifies with. Revocation and the user are checked by the callers, as before. (An OrderedDict
        rather than functools.lru_cache: the entry keeps the key id for that per-use check.)
        """
        remembered = self._verified.get((token, audience))
        if remembered is not None:
            self._verified.move_to_end((token, audience))
            kid, claims = remembered
            if await self._keys.public_key(kid) is None:
                raise InvalidToken(reason="is not signed by a current key of this server")
        else:
            kid, claims = await self._verify(token, audience)
            self._verified[(token, audience)] = (kid, claims)
            if len(self._verified) > _VERIFIED_MAX:
                self._verified.popitem(last=False)
        if int(claims["exp"]) <= int(self._clock().timestamp()):
            raise InvalidToken(reason="has expired")
        return dict(claims)  # a copy: the remembered claims stay as verified

    async def _verify(self, token: str, audience: str | None) -> tuple[str, dict[str, Any]]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken(reason="is malformed") from None
        kid = header.get("kid")
        if header.get("alg") != "RS256" or not isinstance(kid, str):
            raise InvalidToken(reason="is not signed by this server") from None
        key = await self._keys.public_key(kid)
        if key is None:
            raise InvalidToken(reason="is not signed by a current key of this server")
        try:
            # Expiry is checked below against the injected clock, not the wall clock.
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=["RS256"],
                audience=audience,
                issuer=self.issuer,
                options={
                    "verify_aud": audience is not None,
                    "verify_exp": False,
                    "verify_iat": False,
                    "require": ["exp", "iat", "sub", "jti", "aud", "iss"],
                },
            )
        except jwt.InvalidAudienceError:
            raise InvalidToken(reason="was issued to another application") from None
        except jwt.PyJWTError:
            raise InvalidToken(reason="is invalid") from None
        return kid, claims

    async def _new_refresh_token(
        self, conn: AsyncConnection, app: App, user_id: str, scope: str, family_id: str
    ) -> str:
        token = secrets.token_urlsafe(32)
        now = self._clock()
        await conn.execute(
            refresh_tokens.insert().values(
                id=new_id(),
                token_sha256=_sha256(token),
                family_id=family_id,
                user_id=user_id,
                app_id=app.id,
                scope=scope,
                created_at=now,
                expires_at=now + timedelta(seconds=app.refresh_token_ttl_s),
            )
        )
        return token

    async def _sign(self, app: App, user: Any, scope: str, session_id: str, refresh: str | None) -> TokenSet:
        ring = await self._keys.ring()
        now = int(self._clock().timestamp())
        headers = {"kid": ring.signing_kid, "typ": "JWT"}
        access_claims = {
            "jti": new_id(),
            "sub": user.id,
            "iat": now,
            "exp": now + app.access_token_ttl_s,
            "scope": scope,
            "iss": self.issuer,
            "aud": app.id,
            "sid": session_id,
        }
        access = jwt.encode(access_claims, ring.signing_key, algorithm="RS256", headers=headers)
        id_token = None
        if "openid" in scope.split():
            id_claims = {
                **{k: v for k, v in user_claims(user, scope).items() if v is not None},
                "jti": new_id(),
                "sub": user.id,
                "iat": now,
                "exp": now + app.id_token_ttl_s,
                "auth_time": now,
                "iss": self.issuer,
                "aud": app.id,
                "sid": session_id,
                "at_hash": _at_hash(access),
            }
            id_token = jwt.encode(id_claims, ring.signing_key, algorithm="RS256", headers=headers)
        return TokenSet(
            access_token=access,
            expires_in=app.access_token_ttl_s,
            scope=scope,
            id_token=id_token,
            refresh_token=refresh,
        )


async def _refresh_row(conn: AsyncConnection, token: str) -> Any:
    query = select(refresh_tokens).where(refresh_tokens.c.token_sha256 == _sha256(token))
    return (await conn.execute(query)).first()


async def _revoke_family(conn: AsyncConnection, family_id: str, now: datetime) -> None:
    await conn.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _at_hash(access_token: str) -> str:
    """OpenID Connect Core 3.1.3.6: the left half of SHA-256 of the access token, base64url."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

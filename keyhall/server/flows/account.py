"""The signed-in user's own account: read the profile, change it, change the password, security summary.

Every use case takes the user id from a verified access token (``keyhall.server.tokens``); none trusts an
id from the request body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from keyhall.server.clock import Clock
from keyhall.server.crypto.passwords import PasswordHasher
from keyhall.server.crypto.transport import PasswordTransport
from keyhall.server.errors import InvalidArgument, InvalidToken, OldPasswordWrong, UsernameTaken
from keyhall.server.flows.signin import SignIn
from keyhall.server.identity.app import App
from keyhall.server.identity.normalise import normalise_username
from keyhall.server.identity.password_policy import normalise_password, password_security_level
from keyhall.server.store import repository
from keyhall.server.store.db import read_one, read_transaction, write_transaction
from keyhall.server.store.tables import Identity, User
from keyhall.server.store.user_cache import CachedUser, UserCache
from keyhall.server.tokens.issuer import Tokens, revoked_flag

users = cast(Table, User.__table__)
identities = cast(Table, Identity.__table__)

_USER_BY_TOKEN = select(users, revoked_flag).where(users.c.id == bindparam("user_id"))


@dataclass(frozen=True)
class ProfileUpdate:
    """A validated ``/api/v3/update-profile``: columns to set, and the fields with rules of their own."""

    columns: dict[str, Any] = field(default_factory=dict)
    username: str | None = None
    external_id: str | None = None
    custom_data: dict[str, Any] | None = None


@dataclass(frozen=True)
class PasswordChange:
    new_password: str
    old_password: str | None = None
    password_encrypt_type: str | None = None


class Account:
    """The self-service account use cases of one server process."""

    def __init__(
        self,
        engine: AsyncEngine,
        hasher: PasswordHasher,
        transport: PasswordTransport,
        tokens: Tokens,
        signin: SignIn,
        clock: Clock,
        users: UserCache | None = None,
    ) -> None:
        self._engine = engine
        self._users = users  # None: every signed-in read goes to the database
        self._hasher = hasher
        self._transport = transport
        self._tokens = tokens
        self._signin = signin
        self._clock = clock

    async def profile(self, app: App, user_id: str) -> Any:
        """The user's row; InvalidToken when the user is gone or is in another pool."""
        async with read_transaction(self._engine) as conn:
            user = (await conn.execute(select(users).where(users.c.id == user_id))).first()
        return _token_holder(app, user)

    async def signed_in_user(self, app: App, token: str) -> CachedUser:
        """The user of ``token`` (an access token issued to ``app``): its row (``.row``) as read in one
        statement with the token's revocation, or as cached since (``keyhall.server.store.user_cache``),
        and a ``.memo`` of what requests derived from that row. InvalidToken (401) when the token is
        invalid or revoked, or its user is gone, in another pool or no longer Activated."""
        claims = await self._tokens.signed_access_claims(token, audience=app.id)
        return await self.token_user(app, claims)

    async def token_user(self, app: App, claims: dict[str, Any]) -> CachedUser:
        """The user of signed, unexpired access-token ``claims`` (``Tokens.signed_access_claims``), with
        the token's revocation checked in the same statement; InvalidToken (401) otherwise."""
        user_id, jti = claims["sub"], claims["jti"]
        cache = self._users
        if cache is not None:
            entry = cache.get(user_id, jti)
            if entry is not None:
                _token_holder(app, entry.row)  # the app's pool is the caller's, not the cache's
                return entry
        stamp = cache.stamp() if cache is not None else None  # before the read: see UserCache.put
        user = await read_one(self._engine, _USER_BY_TOKEN, {"user_id": user_id, "jti": jti})
        if user is not None and user.token_revoked:
            raise InvalidToken(reason="has been revoked")
        _token_holder(app, user)
        if cache is None:
            return CachedUser(row=user, stamp=0, expires=0.0)
        return cache.put(user_id, jti, user, stamp)

    def forget(self, user_id: str) -> None:
        """Drop this process's cached copy of the user after a write made here: other processes hear of
        it from the database, this one must not answer its own client from before its own write."""
        if self._users is not None:
            self._users.drop_user(user_id)

    async def identities(self, user_id: str) -> list[dict[str, Any]]:
        """The user's external identities as IdentityDto dicts."""
        async with read_transaction(self._engine) as conn:
            rows = list(await conn.execute(select(identities).where(identities.c.user_id == user_id)))
        return [
            {
                "identityId": row.id,
                "extIdpId": row.ext_idp_id,
                "provider": row.provider,
                "type": row.type,
                "userIdInIdp": row.user_id_in_idp,
                "originConnIds": list(row.origin_conn_ids or []),
            }
            for row in rows
        ]

    async def update_profile(self, app: App, user_id: str, change: ProfileUpdate) -> Any:
        user = await self.profile(app, user_id)
        values: dict[str, Any] = dict(change.columns)
        if change.username is not None:
            display, key = normalise_username(change.username, "username")
            values.update(username=display, username_norm=key)
        if change.external_id is not None:
            values["external_id"] = change.external_id or None
        if change.custom_data is not None:
            values["custom_data"] = {**(user.custom_data or {}), **change.custom_data}
        if not values:
            return user
        values["updated_at"] = self._clock()
        try:
            async with write_transaction(self._engine) as conn:
                await conn.execute(update(users).where(users.c.id == user_id).values(**values))
                updated = (await conn.execute(select(users).where(users.c.id == user_id))).one()
            self.forget(user_id)
            return updated
        except IntegrityError as exc:
            conflict = repository.conflicting_field(exc)
            if conflict == "username":
                raise UsernameTaken() from None
            if conflict == "external_id":
                raise InvalidArgument(field="externalId", reason="another user of the pool has it") from None
            raise

    async def update_password(
        self, app: App, user_id: str, session_id: str | None, change: PasswordChange
    ) -> int:
        """Check the old password, apply the policy to the new one, store it, and revoke the refresh
        tokens of the user's other sessions (returns how many)."""
        user = await self.profile(app, user_id)
        if not change.new_password:
            raise InvalidArgument(field="newPassword", reason="it is required")
        new_password = await self._transport.plain_password(
            app.pool_id, change.password_encrypt_type, change.new_password
        )
        if user.password_hash:
            if not change.old_password:
                raise InvalidArgument(field="oldPassword", reason="it is required to change a password")
            old = normalise_password(
                await self._transport.plain_password(
                    app.pool_id, change.password_encrypt_type, change.old_password
                )
            )
            hashed = user.password_hash
            checked = await self._signin.check_password(
                app,
                self._signin.user_key(app, user.id),
                None,
                lambda: self._hasher.verify(hashed, old, app.argon2),
            )
            if not checked.matches:
                raise OldPasswordWrong()
        identifiers = tuple(x for x in (user.email, user.username) if x)
        new_password = app.password_policy.check(new_password, identifiers=identifiers)
        new_hash = await self._hasher.hash(new_password, app.argon2)
        now = self._clock()
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                update(users)
                .where(users.c.id == user.id)
                .values(
                    password_hash=new_hash,
                    password_security_level=password_security_level(new_password),
                    password_last_set_at=now,
                    reset_password_on_next_login=False,
                    updated_at=now,
                )
            )
            revoked = await self._tokens.revoke_other_sessions(conn, user.id, session_id)
        self.forget(user.id)
        return revoked


def _token_holder(app: App, user: Any) -> Any:
    """``user`` if an access token of ``app`` may still act for it; InvalidToken (401) otherwise.

    A user suspended or deactivated after signing in loses the use of their unexpired access tokens at
    once, as they lose sign-in: the token outlives the decision by up to its lifetime otherwise.
    """
    if user is None or user.pool_id != app.pool_id:
        raise InvalidToken(reason="belongs to a user that no longer exists")
    if user.status != "Activated":
        raise InvalidToken(reason=f"belongs to an account that can no longer sign in ({user.status})")
    return user


def security_info(user: Any) -> dict[str, Any]:
    """GetSecurityInfo: what protects the account, and a 0-100 score (see docs/configuration.md)."""
    password_set = bool(user.password_hash)
    score = 0
    if password_set:
        score += {3: 40, 2: 30}.get(user.password_security_level or 1, 20)
    if user.email:
        score += 20 if user.email_verified else 10
    if user.phone:
        score += 20 if user.phone_verified else 10
    return {
        "passwordSecurityLevel": user.password_security_level if password_set else None,
        "mfaEnrolled": False,
        "passwordSet": password_set,
        "emailBinded": bool(user.email),
        "phoneBinded": bool(user.phone),
        "securityScore": score,
    }

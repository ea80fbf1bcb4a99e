"""Sign-in with a password (by email, username, phone or ``account``) or a one-time code, read top to
bottom:

1. the identifier is normalised and the user looked up (email, then phone, then username for ``account``);
2. a locked account, or a client address over its failure budget, is refused before any hashing;
3. the password is decrypted from transport encryption and verified with argon2id; an unknown account
   (or one without a password) is verified against a dummy hash at the pool's parameters, so both take
   the same time and get the same 403/2333;
4. a failure is counted per account and per client address (counters shared by every process); the
   ``max_failures``-th failure within the window locks the account's password sign-in for ``lock_s``;
5. a user who is not Activated is refused (after the password check, so it reveals nothing to a guesser);
6. success: failures forgotten, ``loginsCount``/``lastLogin``/``lastIp``/``lastLoginApp`` updated, the
   hash redone when the pool's argon2 parameters changed, tokens issued.

A code sign-in (PASSCODE) uses up a CHANNEL_LOGIN code sent by ``/api/v3/send-email`` or ``send-sms``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from keyhall.server.clock import Clock
from keyhall.server.crypto.passwords import PasswordHasher, Verification
from keyhall.server.crypto.transport import PasswordTransport
from keyhall.server.errors import (
    AccountLocked,
    AccountSuspended,
    DomainError,
    InvalidArgument,
    PasswordMissing,
    SignInRefused,
    Throttled,
)
from keyhall.server.flows.codes import Codes
from keyhall.server.identity.app import App
from keyhall.server.identity.normalise import normalise_email, normalise_phone, normalise_username
from keyhall.server.identity.password_policy import normalise_password
from keyhall.server.ratelimit import RateLimiter
from keyhall.server.store.db import read_transaction, write_transaction
from keyhall.server.store.tables import User
from keyhall.server.tokens.issuer import Tokens, TokenSet

users = cast(Table, User.__table__)

LOGIN_CHANNEL = "CHANNEL_LOGIN"
PASSCODE_FIELD = "passCodePayload.passCode"


@dataclass(frozen=True)
class PasswordSignIn:
    """A validated ``/api/v3/signin`` request with connection PASSWORD; one identifier is used."""

    password: str
    account: str | None = None
    email: str | None = None
    username: str | None = None
    phone: str | None = None
    phone_country_code: str | None = None
    password_encrypt_type: str | None = None
    scope: str = "openid profile"
    client_ip: str | None = None


@dataclass(frozen=True)
class PassCodeSignIn:
    """A validated ``/api/v3/signin`` request with connection PASSCODE (email or phone + a login code)."""

    pass_code: str
    email: str | None = None
    phone: str | None = None
    phone_country_code: str | None = None
    scope: str = "openid profile"
    client_ip: str | None = None


@dataclass(frozen=True)
class SignedIn:
    user: Any
    tokens: TokenSet


@dataclass(frozen=True)
class _Lookup:
    """Where to look for the account, and the name its failures are counted under while unknown."""

    email_norm: str | None = None
    username_norm: str | None = None
    phone_e164: str | None = None
    unknown_key: str = ""


class SignIn:
    """The sign-in use cases of one server process."""

    def __init__(
        self,
        engine: AsyncEngine,
        hasher: PasswordHasher,
        transport: PasswordTransport,
        limiter: RateLimiter,
        tokens: Tokens,
        clock: Clock,
        codes: Codes | None = None,
    ) -> None:
        self._engine = engine
        self._hasher = hasher
        self._transport = transport
        self._limiter = limiter
        self._tokens = tokens
        self._clock = clock
        self._codes = codes

    async def sign_in_by_password(self, app: App, request: PasswordSignIn) -> SignedIn:
        lookup = _password_lookup(request)
        if not request.password:
            raise PasswordMissing()
        user = await self._find(app, lookup)
        account_key = (
            self.user_key(app, user.id) if user is not None else f"signin:{app.pool_id}:{lookup.unknown_key}"
        )
        ip_key = f"signin-ip:{app.pool_id}:{request.client_ip or '-'}"
        password = normalise_password(
            await self._transport.plain_password(app.pool_id, request.password_encrypt_type, request.password)
        )
        if user is not None and user.password_hash:
            hashed = user.password_hash
            verification = await self.check_password(
                app, account_key, ip_key, lambda: self._hasher.verify(hashed, password, app.argon2)
            )
        else:
            verification = await self.check_password(
                app, account_key, ip_key, lambda: self._hasher.verify_unknown(password, app.argon2)
            )
        if not verification.matches:
            raise SignInRefused()
        assert user is not None
        _require_active(user)
        new_hash = await self._hasher.hash(password, app.argon2) if verification.needs_rehash else None
        user = await self._record_login(app, user, request.client_ip, new_hash)
        return SignedIn(user=user, tokens=await self._tokens.issue(app, user, request.scope))

    async def sign_in_by_passcode(self, app: App, request: PassCodeSignIn) -> SignedIn:
        if request.email and request.phone:
            raise InvalidArgument(
                field="passCodePayload",
                reason="give passCodePayload.email or passCodePayload.phone, not both",
            )
        if request.email:
            target = normalise_email(request.email, "passCodePayload.email").normalised
            lookup = _Lookup(email_norm=target)
        elif request.phone:
            target = normalise_phone(request.phone, request.phone_country_code, "passCodePayload.phone").e164
            lookup = _Lookup(phone_e164=target)
        else:
            raise InvalidArgument(
                field="passCodePayload", reason="give passCodePayload.email or passCodePayload.phone"
            )
        if not request.pass_code:
            raise InvalidArgument(field=PASSCODE_FIELD, reason="it is required")
        if self._codes is None:
            # The one place code sign-in plugs into the verification codes.
            raise InvalidArgument(
                field="connection", reason="PASSCODE sign-in is not available on this server"
            )
        await self._codes.consume(app.pool_id, LOGIN_CHANNEL, target, request.pass_code, field=PASSCODE_FIELD)
        user = await self._find(app, lookup)
        if user is None:
            raise SignInRefused()
        _require_active(user)
        user = await self._record_login(app, user, request.client_ip, None)
        return SignedIn(user=user, tokens=await self._tokens.issue(app, user, request.scope))

    async def check_password(
        self,
        app: App,
        account_key: str,
        ip_key: str | None,
        verify: Callable[[], Awaitable[Verification]],
    ) -> Verification:
        """Run one password check (``verify``) under the account's lockout and the client's cap.

        The attempt is counted BEFORE the check: counting only failures, after their checks, let every
        guess already in flight through, so an attacker sending guesses in parallel got as many as they
        could send at once before the lock landed. Now at most ``max_failures`` checks run per window,
        however many arrive together; the limit-th failure locks the account, and a match clears the
        count. The lock and the per-address cap are shared by every process (the rate limiter's store).
        """
        policy = app.lockout
        await self._refuse_if_locked(app, account_key, ip_key)
        attempt = await self._limiter.hit(account_key, policy.max_failures, policy.window_s)
        if not attempt.allowed:  # more checks at once than failures left: the lock is on its way
            raise AccountLocked(retry_after=max(attempt.retry_after_s, 1))
        verification = await verify()
        if verification.matches:
            await self._limiter.clear(account_key)
            return verification
        if attempt.count >= policy.max_failures:
            await self._limiter.hit(_lock_key(account_key), 0, policy.lock_s)
            await self._limiter.clear(account_key)
        if ip_key is not None:
            await self._limiter.hit(ip_key, policy.max_failures_per_ip, policy.window_s)
        return verification

    def user_key(self, app: App, user_id: str) -> str:
        """The lockout counter of a known user's password checks (sign-in and update-password share it)."""
        return f"signin:{app.pool_id}:user:{user_id}"

    async def _refuse_if_locked(self, app: App, account_key: str, ip_key: str | None) -> None:
        policy = app.lockout
        lock = await self._limiter.peek(_lock_key(account_key), 1, policy.lock_s)
        if not lock.allowed:
            raise AccountLocked(retry_after=lock.retry_after_s)
        if ip_key is not None:
            by_ip = await self._limiter.peek(ip_key, policy.max_failures_per_ip, policy.window_s)
            if not by_ip.allowed:
                raise Throttled(retry_after=by_ip.retry_after_s)

    async def _find(self, app: App, lookup: _Lookup) -> Any:
        """The user the identifier names: by email, else phone, else username (one query)."""
        conditions = []
        if lookup.email_norm:
            conditions.append(users.c.email_norm == lookup.email_norm)
        if lookup.phone_e164:
            conditions.append(users.c.phone_e164 == lookup.phone_e164)
        if lookup.username_norm:
            conditions.append(users.c.username_norm == lookup.username_norm)
        if not conditions:
            return None
        async with read_transaction(self._engine) as conn:
            rows = list(
                await conn.execute(select(users).where(users.c.pool_id == app.pool_id, or_(*conditions)))
            )
        for column, value in (
            ("email_norm", lookup.email_norm),
            ("phone_e164", lookup.phone_e164),
            ("username_norm", lookup.username_norm),
        ):
            for row in rows:
                if value and getattr(row, column) == value:
                    return row
        return None

    async def _record_login(self, app: App, user: Any, client_ip: str | None, new_hash: str | None) -> Any:
        now = self._clock()
        values: dict[str, Any] = {
            "logins_count": users.c.logins_count + 1,
            "last_login": now,
            "last_ip": client_ip,
            "last_login_app": app.id,
            "updated_at": now,
        }
        if new_hash is not None:
            values["password_hash"] = new_hash
        async with write_transaction(self._engine) as conn:
            await conn.execute(update(users).where(users.c.id == user.id).values(**values))
            return (await conn.execute(select(users).where(users.c.id == user.id))).one()


def _password_lookup(request: PasswordSignIn) -> _Lookup:
    """Normalise the one identifier given; ``account`` may be an email, a phone number or a username."""
    if request.account:
        raw = request.account.strip()
        if not raw:
            raise InvalidArgument(field="passwordPayload.account", reason="it is empty")
        email = _quietly(lambda: normalise_email(raw, "passwordPayload.account").normalised)
        phone = _quietly(
            lambda: normalise_phone(raw, request.phone_country_code, "passwordPayload.account").e164
        )
        username = _quietly(lambda: normalise_username(raw, "passwordPayload.account")[1])
        return _Lookup(
            email_norm=email,
            phone_e164=phone,
            username_norm=username,
            unknown_key="account:" + (email or phone or username or raw.casefold()),
        )
    if request.email:
        email = normalise_email(request.email, "passwordPayload.email").normalised
        return _Lookup(email_norm=email, unknown_key=f"account:{email}")
    if request.username:
        username = normalise_username(request.username, "passwordPayload.username")[1]
        return _Lookup(username_norm=username, unknown_key=f"account:{username}")
    if request.phone:
        phone = normalise_phone(request.phone, request.phone_country_code, "passwordPayload.phone").e164
        return _Lookup(phone_e164=phone, unknown_key=f"account:{phone}")
    raise InvalidArgument(
        field="passwordPayload",
        reason="it must include account, email, username or phone when connection is PASSWORD",
    )


def _quietly(normalise: Any) -> str | None:
    try:
        return cast(str, normalise())
    except DomainError:
        return None


def _require_active(user: Any) -> None:
    if user.status != "Activated":
        raise AccountSuspended(status=user.status)


def _lock_key(account_key: str) -> str:
    return "lock:" + account_key

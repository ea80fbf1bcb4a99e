"""Registration with a password (email or username) or with a code (email or phone), read top to bottom:

1. the pool must allow self-registration;
2. the identifiers are validated and normalised (email, username, phone);
3. the password is decrypted from transport encryption and checked against the pool's policy;
4. identifiers already taken are refused early (a cheap read that spares an argon2 hash);
5. verification codes are checked (a wrong one is counted, a right one is not used yet);
6. the password is hashed off the event loop;
7. the user is inserted in one transaction that also uses up the codes: the unique indexes settle any
   race, the loser gets 409 and its codes stay usable (the transaction rolls back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from keyhall.server.clock import Clock
from keyhall.server.crypto.passwords import PasswordHasher
from keyhall.server.crypto.transport import PasswordTransport
from keyhall.server.errors import (
    DomainError,
    EmailTaken,
    EmailVerificationRequired,
    InvalidArgument,
    PasswordMissing,
    PhoneTaken,
    RegistrationDisabled,
    UsernameTaken,
)
from keyhall.server.flows.codes import Codes
from keyhall.server.identity.app import App
from keyhall.server.identity.ids import new_id
from keyhall.server.identity.normalise import (
    Email,
    Phone,
    normalise_email,
    normalise_phone,
    normalise_username,
)
from keyhall.server.identity.password_policy import password_security_level
from keyhall.server.store import repository
from keyhall.server.store.db import write_transaction

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

_TAKEN: dict[str, type[DomainError]] = {"email": EmailTaken, "username": UsernameTaken, "phone": PhoneTaken}


@dataclass(frozen=True)
class PasswordSignUp:
    """A validated ``/api/v3/signup`` request with connection PASSWORD."""

    password: str
    email: str | None = None
    username: str | None = None
    password_encrypt_type: str | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    profile_email: str | None = None
    phone: str | None = None
    phone_country_code: str | None = None
    custom_data: dict[str, Any] = field(default_factory=dict)
    client_ip: str | None = None
    email_pass_code: str | None = None
    phone_pass_code: str | None = None


@dataclass(frozen=True)
class PassCodeSignUp:
    """A validated ``/api/v3/signup`` request with connection PASSCODE (email or phone + a REGISTER code)."""

    pass_code: str
    email: str | None = None
    phone: str | None = None
    phone_country_code: str | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    custom_data: dict[str, Any] = field(default_factory=dict)
    client_ip: str | None = None


@dataclass(frozen=True)
class _CodeUse:
    """A checked code, to be used up in the transaction that creates the user."""

    channel: str
    target: str
    code: str
    field: str


EMAIL_FIELD = "options.emailPassCodeForInformationCompletion"
PHONE_FIELD = "options.phonePassCodeForInformationCompletion"
PASSCODE_FIELD = "passCodePayload.passCode"


class Registration:
    """The registration use cases of one server process."""

    def __init__(
        self,
        engine: AsyncEngine,
        hasher: PasswordHasher,
        transport: PasswordTransport,
        clock: Clock,
        codes: Codes | None = None,
    ) -> None:
        self._engine = engine
        self._hasher = hasher
        self._transport = transport
        self._clock = clock
        self._codes = codes

    async def register_by_password(self, app: App, request: PasswordSignUp) -> Any:
        """Create the user and return its stored row."""
        if not app.allow_self_registration:
            raise RegistrationDisabled()
        email = _email_of(request)
        username = (
            normalise_username(request.username, "passwordPayload.username") if request.username else None
        )
        if email is None and username is None:
            raise InvalidArgument(
                field="passwordPayload", reason="give passwordPayload.email or passwordPayload.username"
            )
        phone = (
            normalise_phone(request.phone, request.phone_country_code, "profile.phone")
            if request.phone
            else None
        )
        if request.email_pass_code and email is None:
            raise InvalidArgument(field=EMAIL_FIELD, reason="there is no email for the code to prove")
        if request.phone_pass_code and phone is None:
            raise InvalidArgument(field=PHONE_FIELD, reason="there is no profile.phone for the code to prove")
        if not request.password:
            raise PasswordMissing()
        password = await self._transport.plain_password(
            app.pool_id, request.password_encrypt_type, request.password
        )
        identifiers = tuple(x for x in (email and email.display, username and username[0]) if x)
        password = app.password_policy.check(password, identifiers=identifiers)

        keys = {
            "email_norm": email.normalised if email else None,
            "username_norm": username[1] if username else None,
            "phone_e164": phone.e164 if phone else None,
        }
        taken = await repository.find_taken(self._engine, app.pool_id, **keys)
        _raise_taken(taken)
        uses = await self._check_codes(app, request, email, phone)

        password_hash = await self._hasher.hash(password, app.argon2)
        values = self._user_values(
            app,
            profile=request.profile,
            custom_data=request.custom_data,
            client_ip=request.client_ip,
            email=email,
            username=username,
            phone=phone,
            password=password,
            password_hash=password_hash,
            email_verified=any(use.field == EMAIL_FIELD for use in uses),
            phone_verified=any(use.field == PHONE_FIELD for use in uses),
        )
        return await self._insert(app, values, uses)

    async def register_by_passcode(self, app: App, request: PassCodeSignUp) -> Any:
        """Create a user without a password whose email or phone a CHANNEL_REGISTER code proved."""
        if not app.allow_self_registration:
            raise RegistrationDisabled()
        if request.email and request.phone:
            raise InvalidArgument(
                field="passCodePayload",
                reason="give passCodePayload.email or passCodePayload.phone, not both",
            )
        email = normalise_email(request.email, "passCodePayload.email") if request.email else None
        phone = (
            normalise_phone(request.phone, request.phone_country_code, "passCodePayload.phone")
            if request.phone
            else None
        )
        if email is None and phone is None:
            raise InvalidArgument(
                field="passCodePayload", reason="give passCodePayload.email or passCodePayload.phone"
            )
        if not request.pass_code:
            raise InvalidArgument(field=PASSCODE_FIELD, reason="it is required")
        taken = await repository.find_taken(
            self._engine,
            app.pool_id,
            email_norm=email.normalised if email else None,
            username_norm=None,
            phone_e164=phone.e164 if phone else None,
        )
        _raise_taken(taken)
        target = email.normalised if email else phone.e164 if phone else ""
        channel = await self._require_codes().check(
            app.pool_id, ("CHANNEL_REGISTER",), target, request.pass_code, field=PASSCODE_FIELD
        )
        use = _CodeUse(channel, target, request.pass_code, PASSCODE_FIELD)
        values = self._user_values(
            app,
            profile=request.profile,
            custom_data=request.custom_data,
            client_ip=request.client_ip,
            email=email,
            username=None,
            phone=phone,
            password=None,
            password_hash=None,
            email_verified=email is not None,
            phone_verified=phone is not None,
        )
        return await self._insert(app, values, [use])

    async def _check_codes(
        self, app: App, request: PasswordSignUp, email: Email | None, phone: Phone | None
    ) -> list[_CodeUse]:
        """Check the information-completion codes (not used yet); enforce "require a verified email"."""
        uses: list[_CodeUse] = []
        if email is not None and request.email_pass_code:
            channel = await self._require_codes().check(
                app.pool_id,
                ("CHANNEL_COMPLETE_EMAIL", "CHANNEL_REGISTER"),
                email.normalised,
                request.email_pass_code,
                field=EMAIL_FIELD,
            )
            uses.append(_CodeUse(channel, email.normalised, request.email_pass_code, EMAIL_FIELD))
        elif email is not None and self._codes is not None and app.require_verified_email:
            # The pool's setting comes with the app (read with it, kept with it): no query of its own.
            raise EmailVerificationRequired(field=EMAIL_FIELD)
        if phone is not None and request.phone_pass_code:
            channel = await self._require_codes().check(
                app.pool_id,
                ("CHANNEL_COMPLETE_PHONE",),
                phone.e164,
                request.phone_pass_code,
                field=PHONE_FIELD,
            )
            uses.append(_CodeUse(channel, phone.e164, request.phone_pass_code, PHONE_FIELD))
        return uses

    async def _insert(self, app: App, values: dict[str, Any], uses: list[_CodeUse]) -> Any:
        """Insert the user and use up its codes in one transaction: both happen, or neither."""
        try:
            if not uses:  # one statement: it commits on its own
                return await repository.insert_user_alone(self._engine, values)
            async with write_transaction(self._engine) as conn:
                await self._use_codes(conn, app, uses)
                return await repository.insert_user(conn, values)
        except IntegrityError as exc:
            conflict = repository.conflicting_field(exc)
            if conflict in _TAKEN:
                raise _TAKEN[conflict]() from None
            raise

    async def _use_codes(self, conn: AsyncConnection, app: App, uses: list[_CodeUse]) -> None:
        for use in uses:
            await self._require_codes().use(
                conn, app.pool_id, use.channel, use.target, use.code, field=use.field
            )

    def _require_codes(self) -> Codes:
        if self._codes is None:
            raise RuntimeError("Registration was built without verification codes")
        return self._codes

    def _user_values(
        self,
        app: App,
        *,
        profile: dict[str, Any],
        custom_data: dict[str, Any],
        client_ip: str | None,
        email: Email | None,
        username: tuple[str, str] | None,
        phone: Phone | None,
        password: str | None,
        password_hash: str | None,
        email_verified: bool,
        phone_verified: bool,
    ) -> dict[str, Any]:
        now = self._clock()
        return {
            **profile,
            "id": new_id(),
            "pool_id": app.pool_id,
            "status": "Activated",
            "work_status": "Active",
            "email": email.display if email else None,
            "email_norm": email.normalised if email else None,
            "email_verified": email_verified,
            "username": username[0] if username else None,
            "username_norm": username[1] if username else None,
            "phone": phone.national if phone else None,
            "phone_country_code": phone.country_code if phone else None,
            "phone_e164": phone.e164 if phone else None,
            "phone_verified": phone_verified,
            "password_hash": password_hash,
            "password_security_level": password_security_level(password) if password is not None else None,
            "password_last_set_at": now if password is not None else None,
            "custom_data": custom_data,
            "user_source_type": "register",
            "user_source_id": app.id,
            "logins_count": 0,
            "last_ip": client_ip,
            "signup_ip": client_ip,
            "status_changed_at": now,
            "created_at": now,
            "updated_at": now,
        }


def _email_of(request: PasswordSignUp) -> Email | None:
    email = normalise_email(request.email, "passwordPayload.email") if request.email else None
    if request.profile_email:
        from_profile = normalise_email(request.profile_email, "profile.email")
        if email is None:
            return from_profile
        if from_profile.normalised != email.normalised:
            raise InvalidArgument(field="profile.email", reason="it differs from passwordPayload.email")
    return email


def _raise_taken(taken: set[str]) -> None:
    for name in ("email", "username", "phone"):
        if name in taken:
            raise _TAKEN[name]()

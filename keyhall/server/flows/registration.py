"""Registration with a password (email or username), read top to bottom:

1. the pool must allow self-registration;
2. the identifiers are validated and normalised (email, username, phone);
3. the password is decrypted from transport encryption and checked against the pool's policy;
4. identifiers already taken are refused early (a cheap read that spares an argon2 hash);
5. the password is hashed off the event loop;
6. the user is inserted in one transaction: the unique indexes settle any race, the loser gets 409.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from keyhall.server.clock import Clock
from keyhall.server.crypto.passwords import PasswordHasher
from keyhall.server.crypto.transport import PasswordTransport
from keyhall.server.errors import (
    DomainError,
    EmailTaken,
    InvalidArgument,
    PasswordMissing,
    PhoneTaken,
    RegistrationDisabled,
    UsernameTaken,
    VerificationCodeWrong,
)
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
from keyhall.server.store.db import read_transaction, write_transaction

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


class Registration:
    """The registration use cases of one server process."""

    def __init__(
        self, engine: AsyncEngine, hasher: PasswordHasher, transport: PasswordTransport, clock: Clock
    ) -> None:
        self._engine = engine
        self._hasher = hasher
        self._transport = transport
        self._clock = clock

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
        _check_codes(request)
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
        async with read_transaction(self._engine) as conn:
            taken = await repository.find_taken(conn, app.pool_id, **keys)
        _raise_taken(taken)

        password_hash = await self._hasher.hash(password, app.argon2)
        values = self._user_values(app, request, email, username, phone, password, password_hash)
        try:
            async with write_transaction(self._engine) as conn:
                return await repository.insert_user(conn, values)
        except IntegrityError as exc:
            conflict = repository.conflicting_field(exc)
            if conflict in _TAKEN:
                raise _TAKEN[conflict]() from None
            raise

    def _user_values(
        self,
        app: App,
        request: PasswordSignUp,
        email: Email | None,
        username: tuple[str, str] | None,
        phone: Phone | None,
        password: str,
        password_hash: str,
    ) -> dict[str, Any]:
        now = self._clock()
        return {
            **request.profile,
            "id": new_id(),
            "pool_id": app.pool_id,
            "status": "Activated",
            "work_status": "Active",
            "email": email.display if email else None,
            "email_norm": email.normalised if email else None,
            "email_verified": False,
            "username": username[0] if username else None,
            "username_norm": username[1] if username else None,
            "phone": phone.national if phone else None,
            "phone_country_code": phone.country_code if phone else None,
            "phone_e164": phone.e164 if phone else None,
            "phone_verified": False,
            "password_hash": password_hash,
            "password_security_level": password_security_level(password),
            "password_last_set_at": now,
            "custom_data": request.custom_data,
            "user_source_type": "register",
            "user_source_id": app.id,
            "logins_count": 0,
            "last_ip": request.client_ip,
            "signup_ip": request.client_ip,
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


def _check_codes(request: PasswordSignUp) -> None:
    # Codes for information completion are issued by /api/v3/send-email and /api/v3/send-sms, which this
    # server does not offer yet: no code can be right, so say so rather than ignore the proof asked for.
    if request.email_pass_code:
        raise VerificationCodeWrong(field="options.emailPassCodeForInformationCompletion")
    if request.phone_pass_code:
        raise VerificationCodeWrong(field="options.phonePassCodeForInformationCompletion")


def _raise_taken(taken: set[str]) -> None:
    for name in ("email", "username", "phone"):
        if name in taken:
            raise _TAKEN[name]()

"""Canonical forms of the identifiers that must be unique in a user pool.

The stored value is what the user typed (trimmed); uniqueness is enforced on the normalised form by
unique indexes, so ``Bob@Example.com`` and ``bob@example.com`` are one account.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from keyhall.server.errors import InvalidArgument, InvalidEmail

USERNAME_MAX = 64
EMAIL_MAX = 254
DEFAULT_PHONE_COUNTRY_CODE = "+86"  # GenAuth: "Chinese mainland phone number can be left blank"


@dataclass(frozen=True)
class Email:
    display: str
    normalised: str


@dataclass(frozen=True)
class Phone:
    national: str
    country_code: str
    e164: str


def normalise_email(raw: str, field: str = "email") -> Email:
    """Validate the syntax of an address (no DNS look-up) and give its unique key.

    The key is lower-cased, trimmed and NFC: GenAuth treats email as case-insensitive.
    """
    value = raw.strip()
    if not value:
        raise InvalidEmail(field=field, reason="it is empty")
    if len(value) > EMAIL_MAX:
        raise InvalidEmail(field=field, reason=f"it is longer than {EMAIL_MAX} characters")
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(field=field, reason=f"{raw!r} is not a valid email address ({exc})") from None
    display = unicodedata.normalize("NFC", value)
    return Email(display=display, normalised=unicodedata.normalize("NFC", checked.normalized).lower())


def normalise_username(raw: str, field: str = "username") -> tuple[str, str]:
    """Return (display, unique key) of a username: NFC, trimmed; the key is case-folded."""
    value = unicodedata.normalize("NFC", raw.strip())
    if not value:
        raise InvalidArgument(field=field, reason="it is empty")
    if len(value) > USERNAME_MAX:
        raise InvalidArgument(field=field, reason=f"it is longer than {USERNAME_MAX} characters")
    for char in value:
        if char.isspace() or unicodedata.category(char).startswith("C"):
            raise InvalidArgument(field=field, reason="it must not contain spaces or control characters")
    if "@" in value:
        # Sign-in by ``account`` tries email, username and phone: an address-shaped username is ambiguous.
        raise InvalidArgument(
            field=field, reason="it must not contain '@' (use the email field for addresses)"
        )
    return value, value.casefold()


def normalise_phone(raw: str, country_code: str | None, field: str = "phone") -> Phone:
    """Parse a phone number with its country code (default +86) and validate it with phonenumbers."""
    number = raw.strip()
    code = (country_code or "").strip() or DEFAULT_PHONE_COUNTRY_CODE
    if not code.startswith("+"):
        code = "+" + code
    if not code[1:].isdigit() or len(code) > 5:
        raise InvalidArgument(
            field=f"{field.rpartition('.')[0]}.phoneCountryCode".lstrip("."),
            reason=f"{country_code!r} is not a country calling code",
        )
    candidate = number if number.startswith("+") else code + number
    try:
        parsed = phonenumbers.parse(candidate, None)
    except phonenumbers.NumberParseException:
        raise InvalidArgument(field=field, reason=f"{raw!r} is not a phone number") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidArgument(field=field, reason=f"{raw!r} is not a valid phone number for {code}")
    return Phone(
        national=phonenumbers.national_significant_number(parsed),
        country_code=f"+{parsed.country_code}",
        e164=phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164),
    )

"""The wire DTOs of the signup endpoint (SignUpDto and its parts) and the rendering of UserDto.

Field names are GenAuth's camelCase. Validation is strict on types (a number where a string belongs is an
error, not coerced) and tolerant of what official SDKs send: unknown keys are ignored and nulls mean
"not given".
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from datetime import date
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from keyhall.server.clock import iso

SHORT_MAX = 255
LONG_MAX = 2048
URL_MAX = 2048
PASSWORD_WIRE_MAX = 4096  # an RSA-2048 or SM2 ciphertext of a 128-character password fits with room
CUSTOM_DATA_MAX_BYTES = 16 * 1024
CUSTOM_DATA_MAX_DEPTH = 5


def _text(max_len: int, *, multiline: bool = False) -> Any:
    allowed = {"\n", "\r", "\t"} if multiline else set()

    def check(value: str) -> str:
        if len(value) > max_len:
            raise ValueError(f"must be at most {max_len} characters")
        for char in value:
            if unicodedata.category(char) in ("Cc", "Cs") and char not in allowed:
                raise ValueError("must not contain control characters or invalid Unicode")
        return value

    return AfterValidator(check)


def _http_url(value: str) -> str:
    if len(value) > URL_MAX:
        raise ValueError(f"must be at most {URL_MAX} characters")
    if any(unicodedata.category(c) in ("Cc", "Cs", "Zs") for c in value):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ValueError("must be an http(s) URL") from None
    try:
        host = parts.hostname
    except ValueError:
        host = None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


def _gender(value: str) -> str:
    upper = value.strip().upper()
    if upper == "W":  # GenAuth's SignUpProfileDto documents W for female
        return "F"
    if upper not in ("M", "F", "U"):
        raise ValueError("must be M, F or U")
    return upper


_BIRTHDATE = re.compile(r"(\d{4})[-./](\d{1,2})[-./](\d{1,2})")


def _birthdate(value: str) -> str:
    match = _BIRTHDATE.fullmatch(value.strip())
    if match is None:
        raise ValueError("must be a date like 2020-02-02 (also 2020.2.2 or 2020/2/2)")
    try:
        day = date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise ValueError("is not a real calendar date") from None
    return day.isoformat()


def _custom_data(value: dict[str, Any]) -> dict[str, Any]:
    _check_json_tree(value, depth=1)
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > CUSTOM_DATA_MAX_BYTES:
        raise ValueError(f"must be at most {CUSTOM_DATA_MAX_BYTES} bytes as JSON (it is {size})")
    return value


def _check_json_tree(value: Any, depth: int) -> None:
    """Walk the tree; ``depth`` counts objects and arrays, the top-level object being 1."""
    if isinstance(value, dict | list) and depth > CUSTOM_DATA_MAX_DEPTH:
        raise ValueError(f"must be nested at most {CUSTOM_DATA_MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("keys must be strings")
            _check_json_string(key)
            _check_json_tree(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json_tree(item, depth + 1)
    elif isinstance(value, str):
        _check_json_string(value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must not contain NaN or Infinity")


def _check_json_string(value: str) -> None:
    # PostgreSQL's jsonb refuses \u0000, and a lone surrogate cannot be stored as UTF-8.
    if "\x00" in value or any(unicodedata.category(c) == "Cs" for c in value):
        raise ValueError("must not contain NUL characters or invalid Unicode")


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


Short = Annotated[str, _text(SHORT_MAX)]
Long = Annotated[str, _text(LONG_MAX, multiline=True)]
Url = Annotated[str, AfterValidator(_http_url)]
CustomData = Annotated[dict[str, Any], AfterValidator(_custom_data)]


class _Wire(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=True)


class PasswordPayload(_Wire):
    # Only capped here: what a password may contain is the password policy's to say (400/2029).
    password: Annotated[str, Field(max_length=PASSWORD_WIRE_MAX)] | None = None
    email: Short | None = None
    username: Short | None = None


class PassCodePayload(_Wire):
    passCode: Short | None = None
    email: Short | None = None
    phone: Short | None = None
    phoneCountryCode: Short | None = None


class SignUpProfileDto(_Wire):
    nickname: Short | None = None
    company: Short | None = None
    photo: Url | None = None
    device: Short | None = None
    browser: Annotated[str, _text(1024)] | None = None
    name: Short | None = None
    givenName: Short | None = None
    familyName: Short | None = None
    middleName: Short | None = None
    profile: Long | None = None
    preferredUsername: Short | None = None
    website: Url | None = None
    gender: Annotated[str, AfterValidator(_gender)] | None = None
    birthdate: Annotated[str, AfterValidator(_birthdate)] | None = None
    zoneinfo: Short | None = None
    locale: Short | None = None
    address: Long | None = None
    formatted: Long | None = None
    streetAddress: Long | None = None
    locality: Short | None = None
    region: Short | None = None
    postalCode: Annotated[str, _text(64)] | None = None
    country: Short | None = None
    email: Short | None = None
    phone: Annotated[str, _text(32)] | None = None
    phoneCountryCode: Annotated[str, _text(8)] | None = None
    customData: CustomData | None = None


class SignUpOptionsDto(_Wire):
    clientIp: Annotated[str, _text(64)] | None = None
    phonePassCodeForInformationCompletion: Short | None = None
    emailPassCodeForInformationCompletion: Short | None = None
    context: CustomData | None = None
    passwordEncryptType: Annotated[Literal["none", "rsa", "sm2"], BeforeValidator(_lower)] | None = None


class SignUpDto(_Wire):
    connection: Annotated[Literal["PASSWORD", "PASSCODE"], BeforeValidator(_upper)]
    passwordPayload: PasswordPayload | None = None
    passCodePayload: PassCodePayload | None = None
    profile: SignUpProfileDto | None = None
    options: SignUpOptionsDto | None = None
    client_id: Short | None = None
    client_secret: Short | None = None


# SignUpProfileDto field -> users column, for the fields stored as they are.
PROFILE_COLUMNS: dict[str, str] = {
    "nickname": "nickname",
    "company": "company",
    "photo": "photo",
    "device": "device",
    "browser": "browser",
    "name": "name",
    "givenName": "given_name",
    "familyName": "family_name",
    "middleName": "middle_name",
    "profile": "profile",
    "preferredUsername": "preferred_username",
    "website": "website",
    "gender": "gender",
    "birthdate": "birthdate",
    "zoneinfo": "zoneinfo",
    "locale": "locale",
    "address": "address",
    "formatted": "formatted",
    "streetAddress": "street_address",
    "locality": "locality",
    "region": "region",
    "postalCode": "postal_code",
    "country": "country",
}


def profile_columns(profile: SignUpProfileDto | None) -> dict[str, Any]:
    """The given profile fields as users-table columns (absent and null fields left out)."""
    if profile is None:
        return {}
    return {
        column: getattr(profile, name)
        for name, column in PROFILE_COLUMNS.items()
        if getattr(profile, name) is not None
    }


class IdentityDto(BaseModel):
    identityId: str
    extIdpId: str
    provider: str
    type: str
    userIdInIdp: str
    originConnIds: list[str]


class UserDto(BaseModel):
    """The user as GenAuth returns it: every documented field present, null where unknown."""

    userId: str
    createdAt: str
    updatedAt: str
    status: Literal["Activated", "Suspended", "Deactivated", "Resigned", "Archived"]
    workStatus: Literal["Active", "Closed"]
    externalId: str | None
    email: str | None
    phone: str | None
    phoneCountryCode: str | None
    username: str | None
    name: str | None
    nickname: str | None
    photo: str | None
    loginsCount: int
    lastLogin: str | None
    lastIp: str | None
    gender: Literal["M", "F", "U"]
    emailVerified: bool
    phoneVerified: bool
    passwordLastSetAt: str | None
    birthdate: str | None
    country: str | None
    province: str | None
    city: str | None
    address: str | None
    streetAddress: str | None
    postalCode: str | None
    company: str | None
    browser: str | None
    device: str | None
    givenName: str | None
    familyName: str | None
    middleName: str | None
    profile: str | None
    preferredUsername: str | None
    website: str | None
    zoneinfo: str | None
    locale: str | None
    formatted: str | None
    region: str | None
    locality: str | None
    userSourceType: Literal["excel", "register", "adminCreated", "syncTask"]
    userSourceId: str | None
    lastLoginApp: str | None
    mainDepartmentId: str | None
    lastMfaTime: str | None
    passwordSecurityLevel: int | None
    resetPasswordOnNextLogin: bool
    departmentIds: list[str]
    # get-profile leaves these two out unless asked (withIdentities, withCustomData); sign-up and
    # update-profile always send them.
    identities: list[IdentityDto] = Field(
        default_factory=list, description="Only with withIdentities on get-profile"
    )
    customData: dict[str, Any] = Field(
        default_factory=dict, description="Only with withCustomData on get-profile"
    )
    statusChangedAt: str | None


class UserSingleRespDto(BaseModel):
    statusCode: int = Field(description="200 on success; otherwise the error class (400, 403, 409, ...)")
    message: str
    apiCode: int | None = Field(default=None, description="The specific error; see docs/errors.md")
    requestId: str
    data: UserDto | None = None


class Envelope(BaseModel):
    """The envelope of every answer, as published in the OpenAPI document (errors carry no ``data``).

    An endpoint's response model is a subclass naming its ``data``: ``class FooRespDto(Envelope): data:
    FooDto | None = None`` (see docs/architecture.md, "Documenting an endpoint").
    """

    statusCode: int = Field(description="200 on success; otherwise the error class (400, 403, 409, ...)")
    message: str
    apiCode: int | None = Field(default=None, description="The specific error; see docs/errors.md")
    requestId: str


class ProbeStatusData(BaseModel):
    status: Literal["alive", "ready"]


class ProbeStatus(Envelope):
    """The answer of /healthz and /readyz."""

    data: ProbeStatusData | None = None


def render_user(row: Any, identities: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A users row as UserDto (a plain dict, ready for JSON). Never includes the password hash."""
    return {
        "userId": row.id,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "status": row.status,
        "workStatus": row.work_status,
        "externalId": row.external_id,
        "email": row.email,
        "phone": row.phone,
        "phoneCountryCode": row.phone_country_code,
        "username": row.username,
        "name": row.name,
        "nickname": row.nickname,
        "photo": row.photo,
        "loginsCount": row.logins_count,
        "lastLogin": iso(row.last_login),
        "lastIp": row.last_ip,
        "gender": row.gender,
        "emailVerified": row.email_verified,
        "phoneVerified": row.phone_verified,
        "passwordLastSetAt": iso(row.password_last_set_at),
        "birthdate": row.birthdate,
        "country": row.country,
        "province": row.province,
        "city": row.city,
        "address": row.address,
        "streetAddress": row.street_address,
        "postalCode": row.postal_code,
        "company": row.company,
        "browser": row.browser,
        "device": row.device,
        "givenName": row.given_name,
        "familyName": row.family_name,
        "middleName": row.middle_name,
        "profile": row.profile,
        "preferredUsername": row.preferred_username,
        "website": row.website,
        "zoneinfo": row.zoneinfo,
        "locale": row.locale,
        "formatted": row.formatted,
        "region": row.region,
        "locality": row.locality,
        "userSourceType": row.user_source_type,
        "userSourceId": row.user_source_id,
        "lastLoginApp": row.last_login_app,
        "mainDepartmentId": row.main_department_id,
        "lastMfaTime": iso(row.last_mfa_time),
        "passwordSecurityLevel": row.password_security_level,
        "resetPasswordOnNextLogin": row.reset_password_on_next_login,
        "departmentIds": [],
        "identities": identities or [],
        "customData": row.custom_data or {},
        "statusChangedAt": iso(row.status_changed_at),
    }

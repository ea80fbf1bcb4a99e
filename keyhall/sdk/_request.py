"""What goes on the wire and how answers are read, shared by the sync and async clients.

Nothing here does I/O: the clients build an :class:`ApiRequest` here, send it with httpx, and hand the
status and body back to :func:`parse_response`, so both clients send byte-identical requests.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from keyhall.sdk._version import __version__
from keyhall.sdk.errors import KeyhallConnectionError, KeyhallError

JSONDict = dict[str, Any]

SIGN_UP_PATH: Final = "/api/v3/signup"
SYSTEM_PATH: Final = "/api/v3/system"
SEND_EMAIL_PATH: Final = "/api/v3/send-email"
SEND_SMS_PATH: Final = "/api/v3/send-sms"

#: Calls on which the app proves its secret with HTTP Basic auth; the server honours
#: ``options.clientIp`` only from callers that do.
APP_AUTH_PATHS: Final = frozenset(
    {
        SIGN_UP_PATH,
        "/api/v3/signin",
        "/api/v3/signin-by-mobile",
        "/api/v3/exchange-tokenset-with-qrcode-ticket",
    }
)

#: Password transport encryptions the SDK can apply, as named in ``options.passwordEncryptType``.
ENCRYPT_TYPES: Final = ("rsa", "sm2")


@dataclass(frozen=True, slots=True)
class AppSettings:
    """Validated client configuration; everything that decides what a request looks like."""

    app_id: str
    app_host: str
    app_secret: str | None = field(default=None, repr=False)
    redirect_uri: str | None = None
    timeout: float = 10.0
    lang: str | None = None
    access_token: str | None = field(default=None, repr=False)
    password_encrypt_type: str | None = None

    @property
    def host(self) -> str:
        """The ``host[:port]`` part of ``app_host``, for messages."""
        return urlsplit(self.app_host).netloc


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """A request ready to send: absolute URL, headers and the encoded JSON body (None for no body)."""

    method: str
    url: str
    headers: dict[str, str]
    content: bytes | None


def make_settings(
    app_id: str,
    app_host: str,
    app_secret: str | None = None,
    redirect_uri: str | None = None,
    timeout: float = 10.0,
    lang: str | None = None,
    access_token: str | None = None,
    password_encrypt_type: str | None = None,
) -> AppSettings:
    """Validate the client constructor's arguments; raise ValueError naming the bad one."""
    if not isinstance(app_id, str) or not app_id.strip():
        raise ValueError("app_id must be a non-empty string (the application ID from the console)")
    return AppSettings(
        app_id=app_id,
        app_host=_check_app_host(app_host),
        app_secret=app_secret or None,
        redirect_uri=redirect_uri,
        timeout=_check_timeout(timeout),
        lang=lang or None,
        access_token=access_token or None,
        password_encrypt_type=_check_encrypt_type(password_encrypt_type),
    )


def _check_app_host(app_host: str) -> str:
    """Return ``app_host`` without trailing slashes if it is an http(s) URL of a server."""
    if not isinstance(app_host, str) or not app_host.strip():
        raise ValueError("app_host must be the server's URL, e.g. 'https://id.example.com'")
    parts = urlsplit(app_host.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"app_host must be an http:// or https:// URL, e.g. 'https://id.example.com'; got {app_host!r}"
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError("app_host must not contain credentials; pass app_id and app_secret instead")
    if parts.query or parts.fragment:
        raise ValueError(f"app_host must not have a query string or fragment; got {app_host!r}")
    return app_host.strip().rstrip("/")


def _check_timeout(timeout: float) -> float:
    """Return ``timeout`` (seconds) as a float if it is a positive number."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds; got {timeout!r}")
    return float(timeout)


def _check_encrypt_type(encrypt_type: str | None) -> str | None:
    """Return the client's password encryption ("rsa", "sm2") or None for none."""
    if encrypt_type is None or encrypt_type == "none":
        return None
    return check_encrypt_type(encrypt_type)


def check_encrypt_type(encrypt_type: str) -> str:
    """Return ``encrypt_type`` if the SDK can encrypt passwords with it, else raise ValueError."""
    if encrypt_type not in ENCRYPT_TYPES:
        raise ValueError(
            f"password encryption must be one of {', '.join(ENCRYPT_TYPES)}; got {encrypt_type!r}"
        )
    return encrypt_type


def build_request(
    settings: AppSettings, method: str, path: str, body: Mapping[str, Any] | None = None
) -> ApiRequest:
    """Build the request for ``method path`` with ``body`` sent as JSON, top-level None keys dropped."""
    headers = {
        "x-genauth-app-id": settings.app_id,
        "x-genauth-request-from": "sdk",
        "x-genauth-sdk-version": f"keyhall-py:{__version__}",
    }
    if settings.lang:
        headers["x-genauth-lang"] = settings.lang
    if settings.app_secret and path in APP_AUTH_PATHS:
        headers["authorization"] = _basic_auth(settings.app_id, settings.app_secret)
    elif settings.access_token:
        headers["authorization"] = settings.access_token
    content = None
    if body is not None:
        headers["content-type"] = "application/json"
        kept = {key: value for key, value in body.items() if value is not None}
        content = json.dumps(kept, ensure_ascii=False, separators=(",", ":")).encode()
    return ApiRequest(method=method, url=settings.app_host + path, headers=headers, content=content)


def _basic_auth(app_id: str, app_secret: str) -> str:
    """The HTTP Basic ``authorization`` value for the app's credentials."""
    return "Basic " + base64.b64encode(f"{app_id}:{app_secret}".encode()).decode("ascii")


def parse_response(status_code: int, content: bytes) -> JSONDict:
    """Decode an answer's JSON object; a non-JSON answer becomes an error envelope, never an exception.

    The synthetic envelope's ``statusCode`` is the HTTP status when that is an error status, else 500
    (a 200 page of HTML is no success either).
    """
    try:
        decoded = json.loads(content)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        return decoded
    snippet = " ".join(content[:200].decode("utf-8", "replace").split())[:60]
    seen = f"body starting {snippet!r}" if snippet else "an empty body"
    return {
        "statusCode": status_code if status_code >= 400 else 500,
        "message": (
            f"The server answered HTTP {status_code} with {seen} instead of a JSON object; "
            "check that app_host points at a Keyhall server and that no proxy is failing in between."
        ),
        "requestId": None,
    }


def connection_error(exc: httpx.TransportError, settings: AppSettings) -> KeyhallConnectionError:
    """The SDK error for a request that got no answer from the server."""
    if isinstance(exc, httpx.TimeoutException):
        reason = f"no answer within {settings.timeout:g} s"
    else:
        reason = str(exc) or type(exc).__name__
    return KeyhallConnectionError(
        f"Could not reach the Keyhall server at {settings.host}: {reason}", host=settings.host
    )


def sign_up_body(
    connection: str,
    password_payload: Mapping[str, Any] | None = None,
    pass_code_payload: Mapping[str, Any] | None = None,
    profile: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
) -> JSONDict:
    """The JSON body of ``POST /api/v3/signup``; copies the caller's mappings, never mutates them."""
    return {
        "connection": connection,
        "passwordPayload": _copy(password_payload),
        "passCodePayload": _copy(pass_code_payload),
        "profile": _copy(profile),
        "options": _copy(options),
    }


def send_sms_body(channel: str, phone_number: str, phone_country_code: str | None = None) -> JSONDict:
    """The JSON body of ``POST /api/v3/send-sms`` (the country code left out when not given)."""
    body: JSONDict = {"channel": channel, "phoneNumber": phone_number}
    if phone_country_code:
        body["phoneCountryCode"] = phone_country_code
    return body


def phone_pass_code_payload(phone: str, pass_code: str, phone_country_code: str | None) -> JSONDict:
    payload: JSONDict = {"phone": phone, "passCode": pass_code}
    if phone_country_code:
        payload["phoneCountryCode"] = phone_country_code
    return payload


def _copy(mapping: Mapping[str, Any] | None) -> JSONDict | None:
    """A shallow dict copy of ``mapping``, or None."""
    return None if mapping is None else dict(mapping)


def encryption_for(body: Mapping[str, Any], client_encrypt_type: str | None) -> str | None:
    """How the SDK must encrypt the plaintext password in ``body`` ("rsa", "sm2"), or None to send it.

    The call's ``options.passwordEncryptType`` decides ("none": send as given); without it, the
    client's ``password_encrypt_type``. The password given is always plaintext: the SDK encrypts it.
    Raises ValueError for a type the SDK cannot apply.
    """
    payload = body.get("passwordPayload")
    password = payload.get("password") if isinstance(payload, Mapping) else None
    if not isinstance(password, str) or not password:
        return None
    options = body.get("options")
    given = options.get("passwordEncryptType") if isinstance(options, Mapping) else None
    if given is None:
        return client_encrypt_type
    if given == "none":
        return None
    return check_encrypt_type(given)


def is_decrypt_failure(answer: Mapping[str, Any]) -> bool:
    """True for 499/2016: the server could not decrypt the password (e.g. its keys were rotated)."""
    return answer.get("statusCode") == 499 and answer.get("apiCode") == 2016


def with_encrypted_password(body: Mapping[str, Any], encrypt_type: str, public_key: str) -> JSONDict:
    """A copy of ``body`` whose password is encrypted and whose options say how."""
    payload = dict(body["passwordPayload"])
    payload["password"] = encrypt(payload["password"], encrypt_type, public_key)
    options = dict(body.get("options") or {})
    options["passwordEncryptType"] = encrypt_type
    return {**body, "passwordPayload": payload, "options": options}


def encrypt(password: str, encrypt_type: str, public_key: str) -> str:
    """Encrypt ``password`` for transport with the server's ``encrypt_type`` public key."""
    from keyhall.sdk._encryption import encrypt_password

    encrypted: str = encrypt_password(password, encrypt_type, public_key)
    return encrypted


def read_public_keys(info: Mapping[str, Any], encrypt_type: str, settings: AppSettings) -> dict[str, str]:
    """The public keys, by type, in a ``GET /api/v3/system`` answer; the wanted one must be there."""
    keys: dict[str, str] = {}
    for kind in ENCRYPT_TYPES:
        entry = info.get(kind)
        key = entry.get("publicKey") if isinstance(entry, Mapping) else None
        if isinstance(key, str) and key:
            keys[kind] = key
    if encrypt_type not in keys:
        if "statusCode" in info:
            why = f"the server answered {info.get('statusCode')}: {info.get('message')}"
        else:
            why = f"the answer has no {encrypt_type}.publicKey"
        raise KeyhallError(
            f"Could not get the {encrypt_type} public key from {settings.host}{SYSTEM_PATH}: {why}"
        )
    return keys

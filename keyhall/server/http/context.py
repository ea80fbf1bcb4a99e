"""What a handler needs to know about the caller: the body, the application, the client's address."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from keyhall.server.errors import AppIdMissing, AppNotFound, InvalidArgument, InvalidBody, InvalidClient
from keyhall.server.http.envelope import request_info
from keyhall.server.identity.app import App
from keyhall.server.services import Services

Model = TypeVar("Model", bound=BaseModel)

_APP_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


async def parse_body(request: Request, model: type[Model]) -> Model:
    """Read and validate a JSON body; any problem is a 400 that names the field."""
    raw = await request.body()
    if not raw.strip():
        raise InvalidBody(reason="the body is empty")
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        # ValueError covers malformed JSON, invalid UTF-8 and integers over Python's digit limit.
        raise InvalidBody(reason=_json_reason(exc)) from None
    if not isinstance(data, dict):
        raise InvalidBody(reason=f"got a JSON {type(data).__name__}, not an object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidArgument(field=field, reason=_pydantic_reason(first)) from None
    except RecursionError:
        raise InvalidBody(reason="it is nested too deeply") from None


async def resolve_app(request: Request) -> App:
    """The application named by ``x-genauth-app-id`` (or ``x-authing-app-id``)."""
    app_id = request.headers.get("x-genauth-app-id") or request.headers.get("x-authing-app-id")
    if not app_id:
        raise AppIdMissing()
    if not _APP_ID.fullmatch(app_id):
        raise AppNotFound(app_id=repr(app_id[:64]))
    app = await services(request).apps.get(app_id)
    if app is None:
        raise AppNotFound(app_id=app_id)
    request_info(request).app_id = app.id
    return app


def proves_secret(request: Request, app: App, client_id: str | None, client_secret: str | None) -> bool:
    """True when the caller showed the app secret (Basic header or client_id/client_secret in the body).

    Credentials that are offered but wrong are an error, not silently ignored. ``client_id`` alone (this
    app's id, no secret) is a public client, as the ``none`` method of /oidc/token: not an error, and
    not trusted either. The official SDKs send exactly that when they are made without the app secret.
    """
    header = request.headers.get("authorization", "")
    if header[:6].lower() == "basic ":
        try:
            user, _, secret = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidClient(reason="the Basic authorization header is malformed") from None
        if user != app.id or not app.secret_matches(secret):
            raise InvalidClient(reason="the Basic authorization header does not match this app")
        return True
    if client_id == app.id and not client_secret:
        return False
    if client_id is not None or client_secret is not None:
        if client_id != app.id or not client_secret or not app.secret_matches(client_secret):
            raise InvalidClient(reason="client_id/client_secret do not match this app")
        return True
    return False


def client_ip(request: Request, *, trusted_caller: bool, claimed: str | None) -> str | None:
    """The end user's address: the peer, unless the app secret or a trusted proxy vouches for another."""
    peer = request.client.host if request.client else None
    from_proxy = peer is not None and _is_trusted_proxy(request, peer)
    if trusted_caller and claimed:
        return _valid_ip(claimed, "options.clientIp")
    if trusted_caller or from_proxy:
        forwarded = request.headers.get("x-real-ip") or _last_forwarded(request)
        if forwarded:
            try:
                return _valid_ip(forwarded, "x-real-ip")
            except InvalidArgument:
                return peer
    return peer


def _is_trusted_proxy(request: Request, peer: str) -> bool:
    networks = services(request).settings.trusted_networks
    if not networks:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in network for network in networks)


def _last_forwarded(request: Request) -> str | None:
    value = request.headers.get("x-forwarded-for")
    if not value:
        return None
    return value.split(",")[-1].strip() or None


def _valid_ip(value: str, field: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise InvalidArgument(field=field, reason=f"{value[:64]!r} is not an IP address") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json_reason(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "it is nested too deeply"
    if isinstance(exc, json.JSONDecodeError):
        return f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
    if isinstance(exc, UnicodeDecodeError):
        return "it is not valid UTF-8"
    return str(exc)[:200]


def _pydantic_reason(error: Any) -> str:
    message = str(error.get("msg", "is invalid"))
    if message.startswith("Value error, "):
        return message[len("Value error, ") :]
    if error.get("type") == "missing":
        return "it is required"
    return message[0].lower() + message[1:] if message else "is invalid"

"""The OpenID Connect / OAuth 2.0 endpoints the SDKs use: token (refresh_token grant), introspection
(RFC 7662), revocation (RFC 7009), userinfo (``/oidc/me``), JWKS and discovery.

These are not ``/api/v3`` calls: they take form-encoded bodies (JSON is accepted too) and answer with the
HTTP status OAuth prescribes. A failure's body has OAuth's ``error`` and ``error_description`` and also
Keyhall's ``statusCode``, ``message`` and ``requestId``. The client (the application) authenticates with
``client_secret_basic`` (Basic header), ``client_secret_post`` (``client_id`` + ``client_secret``) or
``none`` (``client_id`` only; the token itself is the credential).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from keyhall.server.errors import (
    AppNotFound,
    DomainError,
    InvalidArgument,
    InvalidBody,
    InvalidClient,
    InvalidGrant,
    InvalidToken,
)
from keyhall.server.http.context import services
from keyhall.server.http.envelope import request_info
from keyhall.server.identity.app import App
from keyhall.server.messages import message_for
from keyhall.server.tokens.claims import KNOWN_SCOPES, user_claims

router = APIRouter()

_OAUTH_CODES: dict[type[DomainError], str] = {
    InvalidClient: "invalid_client",
    InvalidGrant: "invalid_grant",
    InvalidToken: "invalid_token",
    AppNotFound: "invalid_client",
}


def _form_body(required: list[str], fields: dict[str, str]) -> dict[str, Any]:
    """An OpenAPI request body for a form-encoded OAuth endpoint (the handlers parse the form themselves)."""
    properties: dict[str, Any] = {
        name: {"type": "string", "description": text} for name, text in fields.items()
    }
    properties["client_id"] = {"type": "string", "description": "client_secret_post / none: the app id"}
    properties["client_secret"] = {"type": "string", "description": "client_secret_post: the app secret"}
    schema = {"type": "object", "required": required, "properties": properties}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": schema}},
        }
    }


_TOKEN_FIELDS = {
    "token": "The access token or refresh token",
    "token_type_hint": "access_token or refresh_token",
}


@router.post(
    "/oidc/token",
    summary="OAuth 2.0 token endpoint (grant_type=refresh_token)",
    openapi_extra=_form_body(
        ["grant_type", "refresh_token"],
        {
            "grant_type": "refresh_token (the only grant served)",
            "refresh_token": "The refresh token to rotate",
        },
    ),
)
async def token(request: Request) -> Response:
    async def handle() -> Response:
        form = await _form(request)
        app = await _client(request, form)
        grant = form.get("grant_type")
        if grant != "refresh_token":
            raise _UnsupportedGrant(grant_type=str(grant)[:40])
        refresh_token = form.get("refresh_token")
        if not refresh_token:
            raise InvalidArgument(field="refresh_token", reason="it is required")
        tokens = await services(request).tokens.refresh(app, refresh_token)
        return _json(request, tokens.as_dict(), headers={"cache-control": "no-store", "pragma": "no-cache"})

    return await _oauth(request, handle)


@router.post(
    "/oidc/token/introspection",
    summary="RFC 7662 token introspection",
    openapi_extra=_form_body(["token"], _TOKEN_FIELDS),
)
async def introspection(request: Request) -> Response:
    async def handle() -> Response:
        form = await _form(request)
        app = await _client(request, form)
        token_value = form.get("token")
        if not token_value:
            raise InvalidArgument(field="token", reason="it is required")
        return _json(request, await services(request).tokens.introspect(app, token_value))

    return await _oauth(request, handle)


@router.post(
    "/oidc/token/revocation",
    summary="RFC 7009 token revocation",
    openapi_extra=_form_body(["token"], _TOKEN_FIELDS),
)
async def revocation(request: Request) -> Response:
    async def handle() -> Response:
        form = await _form(request)
        app = await _client(request, form)
        token_value = form.get("token")
        if not token_value:
            raise InvalidArgument(field="token", reason="it is required")
        await services(request).tokens.revoke(app, token_value)
        request_info(request).status_code = 200
        return Response(status_code=200, headers={"x-request-id": request_info(request).request_id})

    return await _oauth(request, handle)


@router.api_route("/oidc/me", methods=["GET", "POST"], summary="OpenID Connect userinfo")
async def userinfo(request: Request) -> Response:
    async def handle() -> Response:
        token_value = _bearer(request) or request.query_params.get("access_token")
        if not token_value and request.method == "POST":
            token_value = (await _form(request, required=False)).get("access_token")
        if not token_value:
            raise InvalidToken(reason="is missing (send Authorization: Bearer <token>)")
        keyhall = services(request)
        claims = await keyhall.tokens.signed_access_claims(token_value)
        app = await keyhall.apps.get(str(claims["aud"]))
        if app is None:
            raise InvalidToken(reason="was issued to an application that no longer exists")
        user = (await keyhall.account.token_user(app, claims)).row
        request_info(request).user_id = user.id
        return _json(request, user_claims(user, claims["scope"]))

    return await _oauth(request, handle)


@router.get("/oidc/.well-known/jwks.json", summary="The public keys that verify Keyhall's tokens")
async def jwks(request: Request) -> Response:
    keys = await services(request).signing_keys.jwks()
    return _json(request, keys, headers={"cache-control": "public, max-age=60"})


@router.get("/{app_id}/oidc/.well-known/jwks.json", summary="The JWKS, at the path authing-node-sdk uses")
async def app_jwks(request: Request, app_id: str) -> Response:
    if await services(request).apps.get(app_id[:64]) is None:
        return await _oauth(request, _raise(AppNotFound(app_id=app_id[:64])))
    return await jwks(request)


@router.get("/oidc/.well-known/openid-configuration", summary="OpenID Connect discovery")
async def discovery(request: Request) -> Response:
    keyhall = services(request)
    host = keyhall.settings.app_host
    auth_methods = ["client_secret_post", "client_secret_basic", "none"]
    return _json(
        request,
        {
            "issuer": keyhall.tokens.issuer,
            "jwks_uri": f"{host}/oidc/.well-known/jwks.json",
            "token_endpoint": f"{host}/oidc/token",
            "introspection_endpoint": f"{host}/oidc/token/introspection",
            "revocation_endpoint": f"{host}/oidc/token/revocation",
            "userinfo_endpoint": f"{host}/oidc/me",
            "grant_types_supported": ["refresh_token"],
            "response_types_supported": [],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": list(KNOWN_SCOPES),
            "token_endpoint_auth_methods_supported": auth_methods,
            "introspection_endpoint_auth_methods_supported": auth_methods,
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "claims_supported": [
                "sub",
                "name",
                "nickname",
                "given_name",
                "family_name",
                "middle_name",
                "preferred_username",
                "profile",
                "picture",
                "website",
                "birthdate",
                "gender",
                "zoneinfo",
                "locale",
                "updated_at",
                "username",
                "email",
                "email_verified",
                "phone_number",
                "phone_number_verified",
                "address",
            ],
        },
    )


class _UnsupportedGrant(DomainError):
    status_code = 400
    message_id = "unsupported_grant_type"


_OAUTH_CODES[_UnsupportedGrant] = "unsupported_grant_type"


async def _client(request: Request, form: dict[str, str]) -> App:
    """The application calling: Basic header, or client_id (+ client_secret) in the body."""
    apps = services(request).apps
    header = request.headers.get("authorization", "")
    if header[:6].lower() == "basic ":
        try:
            basic_id, _, basic_secret = (
                base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidClient(reason="the Basic authorization header is malformed") from None
        found = await apps.get(basic_id[:64]) if basic_id else None
        if found is None or not found.secret_matches(basic_secret):
            raise InvalidClient(reason="the Basic authorization header does not name an app and its secret")
        request_info(request).app_id = found.id
        return found
    client_id = form.get("client_id")
    if not client_id:
        raise InvalidClient(reason="give client_id (and client_secret) or a Basic authorization header")
    app = await apps.get(client_id[:64])
    if app is None:
        raise InvalidClient(reason="client_id names no application")
    secret = form.get("client_secret")
    if secret is not None and not app.secret_matches(secret):
        raise InvalidClient(reason="client_secret does not match client_id")
    request_info(request).app_id = app.id
    return app


async def _form(request: Request, *, required: bool = True) -> dict[str, str]:
    """The body's parameters: form-encoded (OAuth's format) or a JSON object."""
    raw = await request.body()
    if not raw.strip():
        if required:
            raise InvalidBody(reason="the body is empty (send application/x-www-form-urlencoded parameters)")
        return {}
    content_type = request.headers.get("content-type", "").lower()
    try:
        if content_type.startswith("application/json"):
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            return {str(k): v for k, v in data.items() if isinstance(v, str)}
        return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
    except (ValueError, RecursionError):
        raise InvalidBody(reason="it is neither form-encoded parameters nor a JSON object") from None


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "").strip()
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    if header and header[:6].lower() != "basic ":
        return header
    return None


async def _oauth(request: Request, handle: Callable[[], Awaitable[Response]]) -> Response:
    """Run ``handle``; a domain error becomes an OAuth error answer with the HTTP status it names."""
    try:
        return await handle()
    except DomainError as err:
        info = request_info(request)
        status = err.status_code if 400 <= err.status_code < 600 else 400
        message = message_for(err.message_id, info.lang, **err.params)
        code = _OAUTH_CODES.get(type(err), "invalid_request" if status < 500 else "server_error")
        info.status_code = status
        info.api_code = err.api_code
        info.error = err.message_id
        body: dict[str, Any] = {
            "error": code,
            "error_description": message,
            "statusCode": status,
            "message": message,
            "requestId": info.request_id,
        }
        if err.api_code is not None:
            body["apiCode"] = err.api_code
        headers = {"x-request-id": info.request_id, "cache-control": "no-store"}
        if status == 401:
            scheme = "Bearer" if isinstance(err, InvalidToken) else "Basic"
            headers["www-authenticate"] = f'{scheme} error="{code}"'
        return JSONResponse(body, status_code=status, headers=headers)


def _raise(err: DomainError) -> Callable[[], Awaitable[Response]]:
    async def handle() -> Response:
        raise err

    return handle


def _json(request: Request, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    info = request_info(request)
    info.status_code = 200
    return JSONResponse(body, status_code=200, headers={"x-request-id": info.request_id, **(headers or {})})

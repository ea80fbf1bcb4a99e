"""What the sync and async clients share for sign-in, tokens and the user's own profile: request bodies,
the OAuth form requests, and offline verification of Keyhall's RS256 tokens against the JWKS."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import jwt

from keyhall.sdk._request import AppSettings, JSONDict, _basic_auth, check_encrypt_type, encrypt

SIGN_IN_PATH: Final = "/api/v3/signin"
GET_PROFILE_PATH: Final = "/api/v3/get-profile"
UPDATE_PROFILE_PATH: Final = "/api/v3/update-profile"
UPDATE_PASSWORD_PATH: Final = "/api/v3/update-password"  # noqa: S105 (a path)
TOKEN_PATH: Final = "/oidc/token"  # noqa: S105 (a path)
INTROSPECTION_PATH: Final = "/oidc/token/introspection"
REVOCATION_PATH: Final = "/oidc/token/revocation"
JWKS_PATH: Final = "/oidc/.well-known/jwks.json"


def sign_in_body(
    settings: AppSettings,
    connection: str,
    password_payload: Mapping[str, Any] | None = None,
    pass_code_payload: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
) -> JSONDict:
    """The JSON body of ``POST /api/v3/signin``; the app's credentials go in the Basic header.

    ``client_id`` goes in the body only with a secret. The server would take a ``client_id`` alone as a
    public client, but it proves nothing, so a client without the app secret sends neither.
    """
    return {
        "connection": connection,
        "passwordPayload": dict(password_payload) if password_payload is not None else None,
        "passCodePayload": dict(pass_code_payload) if pass_code_payload is not None else None,
        "options": dict(options) if options is not None else None,
        "client_id": settings.app_id if settings.app_secret else None,
    }


def update_password_encryption(given: str | None, client_encrypt_type: str | None) -> str | None:
    """How ``update_password`` must encrypt: the call's ``password_encrypt_type`` ("none": send the
    passwords as given), else the client's; None for no encryption. ValueError for an unknown type."""
    if given is None:
        return client_encrypt_type
    if given == "none":
        return None
    return check_encrypt_type(given)


def update_password_body(
    new_password: str,
    old_password: str | None,
    encrypt_type: str | None = None,
    public_key: str | None = None,
) -> JSONDict:
    """The body of ``POST /api/v3/update-password``; with ``encrypt_type`` both passwords encrypted."""
    if encrypt_type is None or public_key is None:
        return {"newPassword": new_password, "oldPassword": old_password}
    return {
        "newPassword": encrypt(new_password, encrypt_type, public_key),
        "oldPassword": encrypt(old_password, encrypt_type, public_key) if old_password else None,
        "passwordEncryptType": encrypt_type,
    }


def profile_query(with_custom_data: bool, with_identities: bool) -> str:
    flags = [("withCustomData", with_custom_data), ("withIdentities", with_identities)]
    query = "&".join(f"{name}=true" for name, on in flags if on)
    return GET_PROFILE_PATH + ("?" + query if query else "")


def oauth_request(settings: AppSettings, path: str, form: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """URL and headers of a form-encoded OAuth call, the client authenticated with Basic when it can."""
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if settings.app_secret:
        headers["authorization"] = _basic_auth(settings.app_id, settings.app_secret)
    return settings.app_host + path, headers


def oauth_form(settings: AppSettings, **fields: str) -> dict[str, str]:
    form = dict(fields)
    if not settings.app_secret:
        form["client_id"] = settings.app_id  # token_endpoint_auth_method "none"
    return form


def parse_oauth(content: bytes) -> JSONDict:
    """An OAuth endpoint's JSON answer (tokens, or ``error``/``error_description``)."""
    try:
        decoded = json.loads(content)
    except ValueError:
        return {"error": "invalid_response", "error_description": "the server did not answer JSON"}
    return decoded if isinstance(decoded, dict) else {"error": "invalid_response"}


def verify_offline(settings: AppSettings, jwks: Mapping[str, Any], token: str) -> JSONDict:
    """Check ``token``'s RS256 signature against ``jwks``, its expiry, issuer and audience; its claims.

    PyJWT does the JOSE work; raises ``jwt.InvalidTokenError`` when the token does not verify.
    """
    token = token.removeprefix("Bearer ").strip()
    kid = jwt.get_unverified_header(token).get("kid")
    keys = [k for k in jwks.get("keys", []) if k.get("kid") == kid]
    if not keys:
        raise jwt.InvalidTokenError("no key in the JWKS has the token's kid")
    key = jwt.PyJWK(dict(keys[0]))
    claims: JSONDict = jwt.decode(
        token,
        key.key,
        algorithms=["RS256"],
        audience=settings.app_id,
        options={"require": ["exp", "iat", "sub", "iss"]},
    )
    # Not compared with app_host: behind a proxy the server's KEYHALL_APP_HOST may differ from the URL
    # this client uses; the signature and the audience (this app) are what bind the token.
    if not str(claims["iss"]).endswith("/oidc"):
        raise jwt.InvalidIssuerError("the token was not issued by a Keyhall /oidc issuer")
    return claims

"""Which user claims a scope releases (OpenID Connect Core 1.0, section 5.4), for id tokens and /oidc/me."""

from __future__ import annotations

from typing import Any

from keyhall.server.clock import iso

#: The scopes Keyhall understands; others in a request are dropped.
KNOWN_SCOPES = (
    "openid",
    "profile",
    "email",
    "phone",
    "address",
    "username",
    "offline_access",
    "roles",
    "external_id",
    "extended_fields",
    "tenant_id",
)
DEFAULT_SCOPE = "openid profile"


def normalise_scope(requested: str | None) -> str:
    """The known scopes of ``requested`` (space-separated), in the order given, without duplicates."""
    if requested is None or not requested.strip():
        requested = DEFAULT_SCOPE
    kept: list[str] = []
    for part in requested.split():
        if part in KNOWN_SCOPES and part not in kept:
            kept.append(part)
    return " ".join(kept)


def user_claims(user: Any, scope: str) -> dict[str, Any]:
    """The claims about ``user`` that ``scope`` releases (``sub`` always)."""
    scopes = set(scope.split())
    claims: dict[str, Any] = {"sub": user.id}
    if "profile" in scopes:
        claims.update(
            {
                "name": user.name,
                "nickname": user.nickname,
                "given_name": user.given_name,
                "family_name": user.family_name,
                "middle_name": user.middle_name,
                "preferred_username": user.preferred_username,
                "profile": user.profile,
                "picture": user.photo,
                "website": user.website,
                "birthdate": user.birthdate,
                "gender": user.gender,
                "zoneinfo": user.zoneinfo,
                "locale": user.locale,
                "updated_at": iso(user.updated_at),
            }
        )
    if "username" in scopes or "profile" in scopes:
        claims["username"] = user.username
    if "email" in scopes:
        claims.update({"email": user.email, "email_verified": bool(user.email_verified)})
    if "phone" in scopes:
        claims.update(
            {
                "phone_number": user.phone,
                "phone_number_verified": bool(user.phone_verified),
                "phone_country_code": user.phone_country_code,
            }
        )
    if "address" in scopes:
        claims["address"] = {
            "formatted": user.formatted,
            "street_address": user.street_address,
            "locality": user.locality,
            "region": user.region,
            "postal_code": user.postal_code,
            "country": user.country,
        }
    if "external_id" in scopes:
        claims["external_id"] = user.external_id
    return claims

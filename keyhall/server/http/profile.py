"""The signed-in user's own account: get-profile, update-profile, update-password, get-security-info.

The access token comes in ``authorization``, bare (as GenAuth's SDKs send it) or as ``Bearer <token>``,
and must have been issued to the app named by ``x-genauth-app-id``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from starlette.responses import JSONResponse, Response

from keyhall.server.errors import InvalidArgument, InvalidToken
from keyhall.server.flows.account import PasswordChange, ProfileUpdate, security_info
from keyhall.server.http.context import parse_body, resolve_app, services
from keyhall.server.http.dto import (
    PASSWORD_WIRE_MAX,
    CustomData,
    Envelope,
    Long,
    Short,
    Url,
    UserSingleRespDto,
    _birthdate,
    _gender,
    render_user,
)
from keyhall.server.http.envelope import json_bytes, ok, ok_json, request_info
from keyhall.server.identity.app import App
from keyhall.server.store.user_cache import CachedUser

router = APIRouter()


async def access_claims(request: Request, app: App) -> dict[str, Any]:
    """The claims of the caller's access token, issued to ``app``; InvalidToken (401) otherwise."""
    token = bearer_token(request)
    claims = await services(request).tokens.verify_access(token, audience=app.id)
    request_info(request).user_id = claims["sub"]
    return claims


async def signed_in_user(request: Request, app: App) -> CachedUser:
    """The user whose access token (issued to ``app``) came with the request (its row and memo); else 401."""
    user = await services(request).account.signed_in_user(app, bearer_token(request))
    request_info(request).user_id = user.row.id
    return user


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "").strip()
    if header[:7].lower() == "bearer ":
        header = header[7:].strip()
    if not header or header[:6].lower() == "basic ":
        raise InvalidToken(reason="is missing (send it in the authorization header)")
    return header


class _Wire(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class UpdateProfileDto(_Wire):
    name: Short | None = None
    nickname: Short | None = None
    photo: Url | None = None
    externalId: Short | None = None
    birthdate: Annotated[str, AfterValidator(_birthdate)] | None = None
    country: Short | None = None
    province: Short | None = None
    city: Short | None = None
    address: Long | None = None
    streetAddress: Long | None = None
    postalCode: Annotated[str, Field(max_length=64)] | None = None
    gender: Annotated[str, AfterValidator(_gender)] | None = None
    username: Short | None = None
    company: Short | None = None
    customData: CustomData | None = None
    identityNumber: Short | None = None


# UpdateProfileDto field -> users column, for the fields stored as they are.
_PROFILE_COLUMNS = {
    "name": "name",
    "nickname": "nickname",
    "photo": "photo",
    "birthdate": "birthdate",
    "country": "country",
    "province": "province",
    "city": "city",
    "address": "address",
    "streetAddress": "street_address",
    "postalCode": "postal_code",
    "gender": "gender",
    "company": "company",
}


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


class UpdatePasswordDto(_Wire):
    newPassword: Annotated[str, Field(max_length=PASSWORD_WIRE_MAX)] | None = None
    oldPassword: Annotated[str, Field(max_length=PASSWORD_WIRE_MAX)] | None = None
    passwordEncryptType: Annotated[Literal["none", "rsa", "sm2"], BeforeValidator(_lower)] | None = None


_FLAGS = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "description": f"true: include `{field}` in the answer (default false)",
        "schema": {"type": "boolean", "default": False},
    }
    for name, field in (("withCustomData", "customData"), ("withIdentities", "identities"))
]


@router.get(
    "/api/v3/get-profile",
    summary="The signed-in user's profile",
    response_model=UserSingleRespDto,
    openapi_extra={"parameters": _FLAGS},
)
async def get_profile(request: Request) -> Response:
    app = await resolve_app(request)
    with_custom_data = _flag(request, "withCustomData")
    with_identities = _flag(request, "withIdentities")
    user = await signed_in_user(request, app)
    if with_identities:  # identities are another table, which the user cache does not watch
        body = render_user(user.row, await services(request).account.identities(user.row.id))
        if not with_custom_data:
            body.pop("customData", None)
        return ok(request_info(request), body)
    # The UserDto as JSON, made once per cached row: rendering and encoding it were a fifth of a
    # get-profile's CPU, for the same bytes every time (docs/profiling.md).
    key = "profile+customData" if with_custom_data else "profile"
    data = user.memo.get(key)
    if data is None:
        body = render_user(user.row, None)
        body.pop("identities", None)
        if not with_custom_data:
            body.pop("customData", None)
        data = user.memo[key] = json_bytes(body)
    return ok_json(request_info(request), data)


@router.post(
    "/api/v3/update-profile",
    summary="Change the signed-in user's profile",
    response_model=UserSingleRespDto,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UpdateProfileDto"}}},
        }
    },
)
async def update_profile(request: Request) -> JSONResponse:
    app = await resolve_app(request)
    claims = await access_claims(request, app)
    dto = await parse_body(request, UpdateProfileDto)
    if dto.identityNumber is not None:
        raise InvalidArgument(field="identityNumber", reason="Keyhall does not store identity numbers")
    change = ProfileUpdate(
        columns={
            column: getattr(dto, name)
            for name, column in _PROFILE_COLUMNS.items()
            if getattr(dto, name) is not None
        },
        username=dto.username,
        external_id=dto.externalId,
        custom_data=dto.customData,
    )
    user = await services(request).account.update_profile(app, claims["sub"], change)
    return ok(request_info(request), render_user(user))


@router.post(
    "/api/v3/update-password",
    summary="Change the signed-in user's password (the other sessions' refresh tokens are revoked)",
    response_model=Envelope,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UpdatePasswordDto"}}},
        }
    },
)
async def update_password(request: Request) -> JSONResponse:
    app = await resolve_app(request)
    claims = await access_claims(request, app)
    dto = await parse_body(request, UpdatePasswordDto)
    await services(request).account.update_password(
        app,
        claims["sub"],
        claims.get("sid"),
        PasswordChange(
            new_password=dto.newPassword or "",
            old_password=dto.oldPassword or None,
            password_encrypt_type=dto.passwordEncryptType,
        ),
    )
    return ok(request_info(request))


class SecurityInfoDto(BaseModel):
    passwordSecurityLevel: int | None = Field(description="1-3, or null when no password is set")
    mfaEnrolled: bool
    passwordSet: bool
    emailBinded: bool
    phoneBinded: bool
    securityScore: int = Field(description="0-100, see docs/configuration.md")


class SecurityInfoRespDto(Envelope):
    data: SecurityInfoDto | None = None


@router.get(
    "/api/v3/get-security-info",
    summary="What protects the signed-in user's account",
    response_model=SecurityInfoRespDto,
)
async def get_security_info(request: Request) -> JSONResponse:
    app = await resolve_app(request)
    user = await signed_in_user(request, app)
    return ok(request_info(request), security_info(user.row))


def _flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name)
    if value is None or value.strip().lower() in ("", "false", "0", "no"):
        return False
    if value.strip().lower() in ("true", "1", "yes"):
        return True
    raise InvalidArgument(field=name, reason=f"{value[:20]!r} is not a boolean (true or false)")

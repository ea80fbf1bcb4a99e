"""POST /api/v3/signin: parse the SigninByCredentialsDto, call the sign-in flow, answer LoginTokenRespDto."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.responses import JSONResponse

from keyhall.server.errors import DomainError, InvalidArgument
from keyhall.server.flows.signin import PassCodeSignIn, PasswordSignIn, SignedIn, SignIn
from keyhall.server.http.context import client_ip, parse_body, proves_secret, resolve_app, services
from keyhall.server.http.dto import PASSWORD_WIRE_MAX, Short
from keyhall.server.http.envelope import ok, request_info
from keyhall.server.identity.app import App
from keyhall.server.metrics import record_signin_failure
from keyhall.server.tokens.claims import normalise_scope

router = APIRouter()


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


class _Wire(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class SignInPasswordPayload(_Wire):
    password: Annotated[str, Field(max_length=PASSWORD_WIRE_MAX)] | None = None
    account: Short | None = None
    email: Short | None = None
    username: Short | None = None
    phone: Short | None = None
    phoneCountryCode: Short | None = None


class SignInPassCodePayload(_Wire):
    passCode: Short | None = None
    email: Short | None = None
    phone: Short | None = None
    phoneCountryCode: Short | None = None


class SignInOptionsDto(_Wire):
    scope: Annotated[str, Field(max_length=1024)] | None = None
    clientIp: Short | None = None
    passwordEncryptType: Annotated[Literal["none", "rsa", "sm2"], BeforeValidator(_lower)] | None = None
    # Accepted and not used by Keyhall (yet): context, tenantId, customData, autoRegister, captcha*.


class SignInDto(_Wire):
    connection: Annotated[Literal["PASSWORD", "PASSCODE"], BeforeValidator(_upper)]
    passwordPayload: SignInPasswordPayload | None = None
    passCodePayload: SignInPassCodePayload | None = None
    options: SignInOptionsDto | None = None
    client_id: Short | None = None
    client_secret: Short | None = None


class LoginTokenDto(BaseModel):
    access_token: str
    id_token: str | None = Field(default=None, description="With scope openid")
    refresh_token: str | None = Field(default=None, description="With scope offline_access")
    token_type: str
    expire_in: int
    expires_in: int
    scope: str


class LoginTokenRespDto(BaseModel):
    statusCode: int
    message: str
    apiCode: int | None = None
    requestId: str
    data: LoginTokenDto | None = None


@router.post(
    "/api/v3/signin",
    summary="Sign in with a password (email, username, phone or account) or a one-time code",
    response_model=LoginTokenRespDto,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SignInDto"}}},
        }
    },
)
async def signin(request: Request) -> JSONResponse:
    app = await resolve_app(request)
    dto = await parse_body(request, SignInDto)
    trusted = proves_secret(request, app, dto.client_id, dto.client_secret)
    options = dto.options or SignInOptionsDto()
    ip = client_ip(request, trusted_caller=trusted, claimed=options.clientIp)
    scope = normalise_scope(options.scope)
    try:
        signed = await _sign_in(services(request).signin, app, dto, options, scope, ip)
    except DomainError as refused:
        record_signin_failure(refused.message_id)  # a fixed word from the catalogue, never user input
        raise
    info = request_info(request)
    info.user_id = signed.user.id
    return ok(info, signed.tokens.as_dict())


async def _sign_in(
    flows: SignIn, app: App, dto: SignInDto, options: SignInOptionsDto, scope: str, ip: str | None
) -> SignedIn:
    if dto.connection == "PASSCODE":
        code = dto.passCodePayload
        if code is None:
            raise InvalidArgument(
                field="passCodePayload", reason="it is required when connection is PASSCODE"
            )
        return await flows.sign_in_by_passcode(
            app,
            PassCodeSignIn(
                pass_code=(code.passCode or "").strip(),
                email=code.email or None,
                phone=code.phone or None,
                phone_country_code=code.phoneCountryCode or None,
                scope=scope,
                client_ip=ip,
            ),
        )
    else:
        payload = dto.passwordPayload
        if payload is None:
            raise InvalidArgument(
                field="passwordPayload", reason="it is required when connection is PASSWORD"
            )
        return await flows.sign_in_by_password(
            app,
            PasswordSignIn(
                password=payload.password or "",
                account=payload.account or None,
                email=payload.email or None,
                username=payload.username or None,
                phone=payload.phone or None,
                phone_country_code=payload.phoneCountryCode or None,
                password_encrypt_type=options.passwordEncryptType,
                scope=scope,
                client_ip=ip,
            ),
        )

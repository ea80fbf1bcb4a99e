"""POST /api/v3/signup: parse the SignUpDto, call the registration flow, render the UserDto."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from keyhall.server.errors import InvalidArgument
from keyhall.server.flows.registration import PassCodeSignUp, PasswordSignUp
from keyhall.server.http.context import client_ip, parse_body, proves_secret, resolve_app, services
from keyhall.server.http.dto import SignUpDto, UserSingleRespDto, profile_columns, render_user
from keyhall.server.http.envelope import ok, request_info
from keyhall.server.metrics import record_signup

router = APIRouter()


@router.post(
    "/api/v3/signup",
    summary="Register a user (email or username + password, or email or phone + a code)",
    response_model=UserSingleRespDto,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SignUpDto"}}},
        }
    },
)
async def signup(request: Request) -> JSONResponse:
    app = await resolve_app(request)
    dto = await parse_body(request, SignUpDto)
    trusted = proves_secret(request, app, dto.client_id, dto.client_secret)
    claimed_ip = dto.options.clientIp if dto.options else None
    ip = client_ip(request, trusted_caller=trusted, claimed=claimed_ip)
    registration = services(request).registration
    if dto.connection == "PASSCODE":
        user = await registration.register_by_passcode(app, _pass_code_sign_up(dto, ip))
        record_signup("PASSCODE")
    else:
        user = await registration.register_by_password(app, _password_sign_up(dto, ip))
        record_signup("PASSWORD")
    info = request_info(request)
    info.user_id = user.id
    return ok(info, render_user(user))


def _pass_code_sign_up(dto: SignUpDto, ip: str | None) -> PassCodeSignUp:
    payload = dto.passCodePayload
    if payload is None:
        raise InvalidArgument(field="passCodePayload", reason="it is required when connection is PASSCODE")
    return PassCodeSignUp(
        pass_code=(payload.passCode or "").strip(),
        email=payload.email or None,
        phone=payload.phone or None,
        phone_country_code=payload.phoneCountryCode or None,
        profile=profile_columns(dto.profile),
        custom_data=_custom_data(dto),
        client_ip=ip,
    )


def _custom_data(dto: SignUpDto) -> dict[str, Any]:
    custom: dict[str, Any] = {}
    if dto.options and dto.options.context:
        custom.update(dto.options.context)
    if dto.profile and dto.profile.customData:
        custom.update(dto.profile.customData)  # what the profile says explicitly wins over context
    return custom


def _password_sign_up(dto: SignUpDto, ip: str | None) -> PasswordSignUp:
    payload = dto.passwordPayload
    if payload is None:
        raise InvalidArgument(field="passwordPayload", reason="it is required when connection is PASSWORD")
    profile = dto.profile
    options = dto.options
    custom: dict[str, Any] = {}
    if options and options.context:
        custom.update(options.context)
    if profile and profile.customData:
        custom.update(profile.customData)  # what the profile says explicitly wins over context
    return PasswordSignUp(
        password=payload.password or "",
        email=payload.email or None,
        username=payload.username or None,
        password_encrypt_type=options.passwordEncryptType if options else None,
        profile=profile_columns(profile),
        profile_email=profile.email if profile else None,
        phone=profile.phone if profile else None,
        phone_country_code=profile.phoneCountryCode if profile else None,
        custom_data=custom,
        client_ip=ip,
        email_pass_code=options.emailPassCodeForInformationCompletion if options else None,
        phone_pass_code=options.phonePassCodeForInformationCompletion if options else None,
    )

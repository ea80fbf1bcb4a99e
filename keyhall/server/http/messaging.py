"""POST /api/v3/send-email and /api/v3/send-sms: issue a verification code and queue its message.

The per-client hourly cap keys on the peer address, or on ``x-real-ip`` when the caller proves the app
secret (a back end sending codes for its users) or is a trusted proxy.

The answer is the envelope without ``data`` (as GenAuth's SendEmailRespDto), given once the code and the
message are committed; delivery follows in the outbox worker.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from starlette.responses import JSONResponse

from keyhall.server.http.context import client_ip, parse_body, proves_secret, resolve_app, services
from keyhall.server.http.envelope import ok, request_info
from keyhall.server.identity.normalise import normalise_email, normalise_phone

router = APIRouter()


def _channel(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


def _short(value: str) -> str:
    if len(value) > 320:
        raise ValueError("must be at most 320 characters")
    return value


Channel = Annotated[str, BeforeValidator(_channel), Field(max_length=64)]
Text = Annotated[str, AfterValidator(_short)]


class _Wire(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class SendEmailDto(_Wire):
    channel: Channel
    email: Text


class SendSmsDto(_Wire):
    channel: Channel
    phoneNumber: Text
    phoneCountryCode: Annotated[str, Field(max_length=8)] | None = None


class SendRespDto(BaseModel):
    statusCode: int
    message: str
    apiCode: int | None = None
    requestId: str


def _body(model: type[BaseModel]) -> dict[str, Any]:
    """The request body in the OpenAPI document (the handlers parse it themselves, see context.parse_body)."""
    schema = {"schema": model.model_json_schema()}
    return {"requestBody": {"required": True, "content": {"application/json": schema}}}


@router.post(
    "/api/v3/send-email",
    summary="Send a verification code by email",
    response_model=SendRespDto,
    openapi_extra=_body(SendEmailDto),
)
async def send_email(request: Request) -> JSONResponse:
    app = await resolve_app(request)
    dto = await parse_body(request, SendEmailDto)
    email = normalise_email(dto.email, "email")
    info = request_info(request)
    await services(request).codes.send(
        app.pool_id,
        "email",
        dto.channel,
        email.normalised,
        client_ip=client_ip(request, trusted_caller=proves_secret(request, app, None, None), claimed=None),
        lang=info.lang,
    )
    return ok(info)


@router.post(
    "/api/v3/send-sms",
    summary="Send a verification code by SMS",
    response_model=SendRespDto,
    openapi_extra=_body(SendSmsDto),
)
async def send_sms(request: Request) -> JSONResponse:
    app = await resolve_app(request)
    dto = await parse_body(request, SendSmsDto)
    phone = normalise_phone(dto.phoneNumber, dto.phoneCountryCode, "phoneNumber")
    info = request_info(request)
    await services(request).codes.send(
        app.pool_id,
        "sms",
        dto.channel,
        phone.e164,
        client_ip=client_ip(request, trusted_caller=proves_secret(request, app, None, None), claimed=None),
        lang=info.lang,
    )
    return ok(info)

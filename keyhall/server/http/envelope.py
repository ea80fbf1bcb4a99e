"""The one envelope builder and the one error mapper.

Every ``/api/v3`` answer is HTTP 200 with ``{statusCode, message, apiCode?, requestId, data?}``; the body's
``statusCode`` carries the outcome (GenAuth's SDKs read the body, and some throw on a non-2xx status).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from keyhall.server.errors import DomainError
from keyhall.server.messages import DEFAULT_LANG, message_for, normalise_lang


@dataclass
class RequestInfo:
    """What the server knows of one request, for its answer and its log line."""

    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    lang: str = DEFAULT_LANG
    started: float = field(default_factory=time.perf_counter)
    status_code: int | None = None
    api_code: int | None = None
    app_id: str | None = None
    user_id: str | None = None
    error: str | None = None

    @classmethod
    def of_scope(cls, scope: Scope) -> RequestInfo:
        state = scope.setdefault("state", {})
        info = state.get("keyhall")
        if info is None:
            info = cls(
                lang=normalise_lang(_header(scope, b"x-genauth-lang") or _header(scope, b"x-authing-lang"))
            )
            state["keyhall"] = info
        return info  # type: ignore[no-any-return]


def request_info(request: Request) -> RequestInfo:
    return RequestInfo.of_scope(request.scope)


def ok(info: RequestInfo, data: Any = None) -> JSONResponse:
    """A success envelope (``data`` left out when None, as GenAuth does for send-email)."""
    body: dict[str, Any] = {
        "statusCode": 200,
        "message": message_for("ok", info.lang),
        "requestId": info.request_id,
    }
    if data is not None:
        body["data"] = data
    info.status_code = 200
    return _json(body, info)


def error(info: RequestInfo, err: DomainError) -> JSONResponse:
    """The envelope of a domain error."""
    body: dict[str, Any] = {
        "statusCode": err.status_code,
        "message": message_for(err.message_id, info.lang, **err.params),
        "requestId": info.request_id,
    }
    if err.api_code is not None:
        body["apiCode"] = err.api_code
    info.status_code = err.status_code
    info.api_code = err.api_code
    info.error = err.message_id
    response = _json(body, info)
    retry_after = err.params.get("retry_after")
    if isinstance(retry_after, int | float) and retry_after > 0:
        response.headers["retry-after"] = str(math.ceil(retry_after))  # for proxies and generic clients
    return response


def json_bytes(data: Any) -> bytes:
    """``data`` encoded exactly as a JSONResponse encodes its content."""
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def ok_json(info: RequestInfo, data: bytes) -> Response:
    """``ok(info, d)`` for ``data = json_bytes(d)``, byte for byte: for answers whose data was encoded
    once and kept (the signed-in user's profile), so that only the envelope is encoded per request."""
    head = json_bytes(
        {"statusCode": 200, "message": message_for("ok", info.lang), "requestId": info.request_id}
    )
    info.status_code = 200
    return Response(
        head[:-1] + b',"data":' + data + b"}",
        media_type="application/json",
        headers={"x-request-id": info.request_id},
    )


def _json(body: dict[str, Any], info: RequestInfo) -> JSONResponse:
    return JSONResponse(body, status_code=200, headers={"x-request-id": info.request_id})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None

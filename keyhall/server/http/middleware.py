"""The outermost layer: request id, body-size limit, request timeout, a last-resort 500 envelope, one log
line per request and the request metrics (count by route and outcome, duration, in flight).

Written as plain ASGI (not BaseHTTPMiddleware) so that the body limit applies while the body streams in,
before a byte of an oversized request is buffered.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyhall.server.errors import PayloadTooLarge, RequestTimedOut, ServerError
from keyhall.server.http.envelope import RequestInfo, error
from keyhall.server.metrics import IN_FLIGHT, REQUEST_SECONDS, REQUESTS

log = structlog.get_logger("keyhall.http")


class KeyhallMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, request_timeout_s: float | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.request_timeout_s = request_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        info = RequestInfo.of_scope(scope)
        http_status: list[int] = []
        limit = self.max_body_bytes

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                http_status.append(message["status"])
                headers = list(message.get("headers", []))
                if not any(k == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", info.request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(limit=limit)
            return message

        # The last bound on a request, whatever it waits for (a database that stopped answering, a queue):
        # past it the work is cancelled and the client gets a 503 envelope instead of a hung connection.
        deadline = asyncio.timeout(self.request_timeout_s)
        IN_FLIGHT.inc()
        try:
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                await error(info, PayloadTooLarge(limit=limit))(scope, receive, send_wrapper)
            else:
                try:
                    async with deadline:
                        await self.app(scope, receive_wrapper, send_wrapper)
                except TimeoutError:
                    if not deadline.expired():
                        raise  # not ours: a bug, answered 500 below
                    log.warning("request_timeout", request_id=info.request_id, path=scope.get("path"))
                    timed_out = RequestTimedOut(seconds=f"{self.request_timeout_s:g}")
                    if http_status:  # the answer had begun: nothing more can be said on this connection
                        info.error = timed_out.message_id
                    else:
                        await error(info, timed_out)(scope, receive, send_wrapper)
        except PayloadTooLarge as exc:
            if not http_status:
                await error(info, exc)(scope, receive, send_wrapper)
        except ClientDisconnect:
            info.error = "client_disconnected"  # nobody to answer; not a server fault
        except Exception:
            log.exception("unhandled_error", request_id=info.request_id, path=scope.get("path"))
            if not http_status:
                await error(info, ServerError())(scope, receive, send_wrapper)
        finally:
            IN_FLIGHT.dec()
            _log_request(scope, info, http_status)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Scope) -> str:
    """The path pattern the router matched (``/api/v3/signup``), never the raw path: a bounded label."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def _log_request(scope: Scope, info: RequestInfo, http_status: list[int]) -> None:
    elapsed = time.perf_counter() - info.started
    route = route_template(scope)
    status = info.status_code or (http_status[0] if http_status else None)
    fields: dict[str, Any] = {
        "request_id": info.request_id,
        "method": scope.get("method"),
        "route": route,
        "path": scope.get("path"),
        "http_status": http_status[0] if http_status else None,
        "status_code": info.status_code,
        "duration_ms": round(elapsed * 1000, 1),  # the request's latency inside the server
    }
    method = scope.get("method")
    method_label = method if method in _METHODS else "other"  # any token is a method to HTTP: bound it
    REQUESTS.labels(route=route, method=method_label, status=str(status)).inc()
    REQUEST_SECONDS.labels(route=route).observe(elapsed)
    client = scope.get("client")
    if client:
        fields["peer"] = client[0]
    for name in ("api_code", "app_id", "user_id", "error"):
        value = getattr(info, name)
        if value is not None:
            fields[name] = value
    log.info("request", **fields)

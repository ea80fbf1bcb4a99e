"""Endpoints for the people and machines that run Keyhall: /healthz, /readyz and /metrics.

- ``GET /healthz``: the process is alive and its event loop answers. It touches no database, so a
  database outage does not get every process restarted by its supervisor.
- ``GET /readyz``: the database answers ``SELECT 1`` within ``READY_TIMEOUT_S`` (and Redis answers PING
  when ``KEYHALL_REDIS_URL`` is set: without it, counters fail closed). A load balancer sends
  traffic only to ready processes. Not ready is a 503 envelope with HTTP status 503 too (unlike /api/v3,
  where the HTTP status is always 200), because probes read the status line.
- ``GET /metrics``: Prometheus text exposition (see ``keyhall.server.metrics``); off when
  ``KEYHALL_METRICS_ENABLED=false``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from fastapi import APIRouter, Request
from sqlalchemy import text
from starlette.responses import JSONResponse, Response

from keyhall.server.errors import NotFound, NotReady
from keyhall.server.http.context import services
from keyhall.server.http.dto import Envelope, ProbeStatus
from keyhall.server.http.envelope import error, ok, request_info
from keyhall.server.metrics import render
from keyhall.server.ratelimit_redis import RedisRateLimiter

router = APIRouter(tags=["operations"])
log = structlog.get_logger("keyhall.http")

READY_TIMEOUT_S = 2.0

_NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"model": Envelope, "description": "Not ready: the database cannot be reached (statusCode 503)"}
}


@router.get("/healthz", summary="Liveness: the process answers (no database)", response_model=ProbeStatus)
async def healthz(request: Request) -> JSONResponse:
    return ok(request_info(request), {"status": "alive"})


@router.get(
    "/readyz",
    summary="Readiness: the database answers within 2 s",
    response_model=ProbeStatus,
    responses=_NOT_READY,
)
async def readyz(request: Request) -> JSONResponse:
    info = request_info(request)
    try:
        await asyncio.wait_for(_ping(request), timeout=READY_TIMEOUT_S)
    except TimeoutError:
        return _not_ready(request, f"the database did not answer within {READY_TIMEOUT_S:g} s")
    except Exception as exc:  # any failure to reach it means: send no traffic here
        log.warning("not_ready", request_id=info.request_id, exc_type=type(exc).__name__)
        return _not_ready(request, "the database cannot be reached")
    limiter = services(request).limiter
    if isinstance(limiter, RedisRateLimiter) and not await limiter.ping():
        return _not_ready(request, "the rate-limit store (Redis) cannot be reached")
    return ok(info, {"status": "ready"})


@router.get(
    "/metrics",
    summary="Prometheus metrics of every worker of this server",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    if not services(request).settings.metrics_enabled:
        raise NotFound(method=request.method, path=request.url.path)
    # Reading the workers' files is blocking file I/O: off the event loop.
    body, media_type = await asyncio.to_thread(render)
    return Response(body, media_type=media_type)


async def _ping(request: Request) -> None:
    async with services(request).engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


def _not_ready(request: Request, reason: str) -> JSONResponse:
    response = error(request_info(request), NotReady(reason=reason))
    response.status_code = 503
    return response

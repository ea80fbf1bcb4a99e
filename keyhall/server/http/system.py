"""GET /api/v3/system: the public keys for password transport encryption (a bare object, no envelope).

The keys are those of the app's user pool (``x-genauth-app-id`` or ``x-authing-app-id``); without an app
id, the default (first) pool's. An unknown or malformed app id is the usual envelope 404/1001: a
GenAuth client treats a body without top-level ``rsa``/``sm2`` as an error and shows its message.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from keyhall.server.http.context import resolve_app, services

router = APIRouter()

SERVER_VERSION = "0.1.0"


@router.get("/api/v3/system", summary="Public keys of the app's pool (RSA PEM, SM2 hex) and server version")
async def system(request: Request) -> dict[str, Any]:
    has_app_id = "x-genauth-app-id" in request.headers or "x-authing-app-id" in request.headers
    pool_id = (await resolve_app(request)).pool_id if has_app_id else None
    transport = services(request).transport
    await transport.ring(pool_id)  # loads, or reloads when older than the refresh interval
    return {
        **transport.public_info(pool_id),
        "version": {"server": SERVER_VERSION, "console": None, "login": None},
        "publicIps": [],
    }


@router.get("/health", summary="Liveness and database check", include_in_schema=True)
async def health(request: Request) -> dict[str, str]:
    from sqlalchemy import text

    async with services(request).engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return {"status": "ok"}

"""GET /api/v3/system: the public keys for password transport encryption (a bare object, no envelope)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from keyhall.server.http.context import services

router = APIRouter()

SERVER_VERSION = "0.1.0"


@router.get("/api/v3/system", summary="Public keys (RSA PEM, SM2 hex) and server version")
async def system(request: Request) -> dict[str, Any]:
    keys = services(request).transport.public_info(None)
    return {
        **keys,
        "version": {"server": SERVER_VERSION, "console": None, "login": None},
        "publicIps": [],
    }


@router.get("/health", summary="Liveness and database check", include_in_schema=True)
async def health(request: Request) -> dict[str, str]:
    from sqlalchemy import text

    async with services(request).engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return {"status": "ok"}

"""create_app(settings): the one place that wires the server together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from keyhall.server.errors import (
    DomainError,
    InvalidBody,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
)
from keyhall.server.http import messaging, oidc, ops, profile, signin, signup, system
from keyhall.server.http.dto import SignUpDto
from keyhall.server.http.envelope import error, request_info
from keyhall.server.http.middleware import KeyhallMiddleware
from keyhall.server.http.openapi import document_envelopes
from keyhall.server.logs import configure_logging
from keyhall.server.metrics import process_exiting
from keyhall.server.services import Services
from keyhall.server.settings import Settings
from keyhall.server.store.db import DATABASE_UNAVAILABLE

log = structlog.get_logger("keyhall.http")


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """The ASGI application. Pass ``services`` to share one set between apps (tests); else built at start."""
    settings = settings or Settings()
    configure_logging(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services is not None:
            app.state.services = services
            yield
            return
        own = await Services.start(settings)
        app.state.services = own
        try:
            yield
        finally:
            await own.stop()
            process_exiting()

    app = FastAPI(
        title="Keyhall",
        version=system.SERVER_VERSION,
        summary="Self-hosted identity server speaking the GenAuth v3 Authentication API",
        lifespan=lifespan,
    )
    app.add_middleware(
        KeyhallMiddleware,
        max_body_bytes=settings.max_body_bytes,
        request_timeout_s=settings.request_timeout_s,
    )
    app.include_router(signup.router)
    app.include_router(messaging.router)
    app.include_router(system.router)
    app.include_router(ops.router)
    app.include_router(signin.router)
    app.include_router(profile.router)
    app.include_router(oidc.router)

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        return error(request_info(request), exc)

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        info = request_info(request)
        log.warning("database_unavailable", request_id=info.request_id, exc_type=type(exc).__name__)
        return error(info, ServiceUnavailable(reason="the database cannot be reached; retry later"))

    for kind in DATABASE_UNAVAILABLE:
        app.add_exception_handler(kind, _unavailable)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(request_info(request), InvalidBody(reason=str(exc.errors()[:1])))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = MethodNotAllowed if exc.status_code == 405 else NotFound
        return error(request_info(request), kind(method=request.method, path=request.url.path))

    _publish_schema(app)
    return app


def _publish_schema(app: FastAPI) -> None:
    """Add the hand-parsed request DTOs to the OpenAPI document."""
    original = app.openapi

    def openapi() -> dict:  # type: ignore[type-arg]
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        extra = SignUpDto.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(extra.pop("$defs", {}))
        components["SignUpDto"] = extra
        for name, model in (
            ("SignInDto", signin.SignInDto),
            ("UpdateProfileDto", profile.UpdateProfileDto),
            ("UpdatePasswordDto", profile.UpdatePasswordDto),
        ):
            extra = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(extra.pop("$defs", {}))
            components[name] = extra
        document_envelopes(schema)  # errors as envelopes, no 422, the app-id header
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

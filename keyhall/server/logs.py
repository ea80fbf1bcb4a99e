"""Structured logging: one JSON object per line on stderr, secrets redacted by key name."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
import structlog.tracebacks

from keyhall.server.settings import Settings

_SECRET_KEYS = ("password", "secret", "token", "authorization", "hash", "private")


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Defence in depth: no log field whose name suggests a secret ever carries its value."""
    for key in list(event):
        if _names_a_secret(key):
            event[key] = "[redacted]"
    return event


@functools.lru_cache(maxsize=1024)
def _names_a_secret(key: str) -> bool:
    # Remembered per field name: field names come from the code, and the six substring tests for each of
    # a request line's dozen fields were 3% of a get-profile's CPU.
    lowered = key.lower()
    return any(marker in lowered for marker in _SECRET_KEYS)


def configure_logging(settings: Settings) -> None:
    level = logging.getLevelName(settings.log_level.upper())
    if not isinstance(level, int):
        level = logging.INFO
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            # Tracebacks without local variables: a local may hold a password.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
            if settings.log_json
            else structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # One write per record (message and newline together): workers share stderr, and PrintLogger's
        # two writes let records of two processes interleave on one line.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def stdlib_json_formatter() -> logging.Formatter:
    """A formatter that renders records of the standard library's logging (uvicorn's start-up, shutdown
    and error lines) as JSON lines like Keyhall's own, so that a log shipper reads every line as one
    object. structlog's ProcessorFormatter does the rendering; named in ``uvicorn_log_config``."""
    return structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_secrets,
            structlog.processors.JSONRenderer(),
        ],
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
    )


def uvicorn_log_config(settings: Settings) -> dict[str, Any] | None:
    """uvicorn's ``log_config`` for ``keyhall serve``: JSON lines when ``log_json`` (the default); None
    (use uvicorn's own console format) otherwise. Each worker applies it when it starts. The handler writes a
    record with one write, as ours do, so lines of several workers never interleave."""
    if not settings.log_json:
        return None
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "keyhall.server.logs.stdlib_json_formatter"}},
        "handlers": {
            "json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
        },
        "loggers": {
            "uvicorn": {"handlers": ["json"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["json"], "level": level, "propagate": False},
        },
    }

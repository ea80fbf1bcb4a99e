"""uvicorn's HTTP/1.1 protocols with a deadline for the request head (``KEYHALL_TIMEOUT_HEADER_S``).

uvicorn closes idle keep-alive connections, but a connection that is opened and then sends nothing, or
sends its request line and headers one byte at a time, is kept for ever: a few hundred such clients hold
a worker's sockets (slowloris). uvicorn has no setting for this, so these subclasses arm one timer when a
connection opens and when a new request begins, and cancel it when the head is complete; if it fires
first, the connection is closed. ``keyhall serve`` passes one of them as uvicorn's ``http`` class.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from keyhall.server.settings import Settings

_settings: Settings | None = None


def _header_timeout_s() -> float:
    global _settings  # read the environment once per worker, on its first connection
    if _settings is None:
        _settings = Settings()
    return _settings.timeout_header_s


class _HeadDeadline:
    """The timer of one connection: armed until the request head has arrived."""

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: asyncio.BaseTransport) -> None:
        self._loop = loop
        self._transport = transport
        self._timer: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        if self._timer is None:
            self._timer = self._loop.call_later(_header_timeout_s(), self._expire)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if not self._transport.is_closing():
            self._transport.close()


class HeaderTimeoutH11Protocol(H11Protocol):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._head_deadline = _HeadDeadline(self.loop, transport)
        self._head_deadline.arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:
            self._head_deadline.arm()  # a head has begun (or is awaited) but is not complete
        else:
            self._head_deadline.cancel()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._head_deadline.cancel()  # idle now: uvicorn's keep-alive timeout applies until data comes

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_deadline.cancel()
        super().connection_lost(exc)


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is optional in uvicorn: serve falls back to the h11 class
    HeaderTimeoutHttpToolsProtocol: type | None = None
else:

    class _HeaderTimeoutHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._head_deadline = _HeadDeadline(self.loop, transport)
            self._head_deadline.arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_deadline.arm()

        def on_headers_complete(self) -> None:
            self._head_deadline.cancel()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._head_deadline.cancel()
            super().connection_lost(exc)

    HeaderTimeoutHttpToolsProtocol = _HeaderTimeoutHttpToolsProtocol


def protocol_class_path() -> str:
    """The ``module:Class`` uvicorn should load: the httptools parser when installed, else h11."""
    name = "HeaderTimeoutHttpToolsProtocol" if HeaderTimeoutHttpToolsProtocol else "HeaderTimeoutH11Protocol"
    return f"{__name__}:{name}"

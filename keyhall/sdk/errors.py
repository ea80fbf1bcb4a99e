"""Exceptions raised by the Keyhall SDK.

Answers from the server, errors included, come back as envelope dicts (check ``statusCode``), like the
official SDK. Exceptions are kept for failures where there is no answer to return.
"""

from __future__ import annotations


class KeyhallError(Exception):
    """Base of every exception raised by the Keyhall SDK."""


class KeyhallConnectionError(KeyhallError):
    """The server could not be reached: connection refused, DNS failure, timeout, dropped connection."""

    def __init__(self, message: str, *, host: str) -> None:
        super().__init__(message)
        self.host = host

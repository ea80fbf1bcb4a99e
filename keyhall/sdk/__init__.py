"""Keyhall Python SDK: clients of the GenAuth (Authing) v3 Authentication API."""

from __future__ import annotations

from keyhall.sdk.async_client import AsyncAuthenticationClient
from keyhall.sdk.client import AuthenticationClient
from keyhall.sdk.errors import KeyhallConnectionError, KeyhallError

__all__ = [
    "AsyncAuthenticationClient",
    "AuthenticationClient",
    "KeyhallConnectionError",
    "KeyhallError",
]

"""Keyhall: a self-hosted identity server speaking the GenAuth v3 Authentication API, and its SDK.

Only the SDK is imported here; the server (``keyhall.server``) needs the ``server`` extra.
"""

from __future__ import annotations

from keyhall.sdk import (
    AsyncAuthenticationClient,
    AuthenticationClient,
    KeyhallConnectionError,
    KeyhallError,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncAuthenticationClient",
    "AuthenticationClient",
    "KeyhallConnectionError",
    "KeyhallError",
    "__version__",
]

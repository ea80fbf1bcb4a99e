"""Version of the Keyhall Python SDK, sent in the ``x-genauth-sdk-version`` header."""

from __future__ import annotations

__version__ = "0.1.0"

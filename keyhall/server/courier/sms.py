"""SMS through a provider: the interface, and a generic provider that posts each message to a webhook.

The webhook receives ``POST <url>`` with a JSON body ``{"id", "to", "text", "lang"}`` (``to`` in E.164)
and the headers ``x-keyhall-timestamp`` (Unix seconds) and ``x-keyhall-signature: sha256=<hex>``, the
HMAC-SHA256 under the shared secret of ``<timestamp>.<body>``. A receiver recomputes it over the raw body,
compares in constant time, and refuses old timestamps; any SMS gateway can be plugged in behind it.
A 2xx answer is delivered; 408, 429 and 5xx are retried; other answers are permanent failures.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Protocol

import httpx

from keyhall.server.courier.message import DeliveryError, Message, PermanentDeliveryError

SIGNATURE_HEADER = "x-keyhall-signature"
TIMESTAMP_HEADER = "x-keyhall-timestamp"


class SmsProvider(Protocol):
    async def send(self, message: Message) -> None:
        """Deliver an SMS or raise :class:`DeliveryError`."""


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The value of ``x-keyhall-signature`` for ``body`` sent at ``timestamp``."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookSmsProvider:
    def __init__(self, url: str, secret: str, timeout_s: float = 20.0) -> None:
        if not url.lower().startswith(("http://", "https://")):
            raise ValueError("KEYHALL_SMS_WEBHOOK_URL must be an http:// or https:// URL")
        if not secret:
            raise ValueError("KEYHALL_SMS_WEBHOOK_SECRET is required with KEYHALL_SMS_WEBHOOK_URL")
        self._url = url
        self._secret = secret.encode()
        self._timeout_s = timeout_s

    async def send(self, message: Message) -> None:
        body = json.dumps(
            {"id": message.id, "to": message.to, "text": message.text, "lang": message.lang},
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        timestamp = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }
        try:
            async with httpx.AsyncClient(timeout=self._timeout_s) as client:
                response = await client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"SMS webhook unreachable: {type(exc).__name__}") from None
        if response.is_success:
            return
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise DeliveryError(f"SMS webhook answered {response.status_code}")
        raise PermanentDeliveryError(f"SMS webhook answered {response.status_code}")

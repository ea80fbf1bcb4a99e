"""What the courier carries, and how a transport says that delivery failed."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

Kind = Literal["email", "sms"]


@dataclass(frozen=True)
class Message:
    """One email or SMS. ``to`` is an email address or an E.164 phone number; SMS have no subject/HTML."""

    kind: Kind
    to: str
    subject: str
    text: str
    html: str | None = None
    lang: str = "en-US"
    id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


class DeliveryError(Exception):
    """Delivery failed for a reason that may pass (connection refused, timeout, 4xx reply): retry later.

    The text names the failure without any part of the message (no address, no code).
    """


class PermanentDeliveryError(DeliveryError):
    """Delivery can never succeed as it is (recipient refused, 5xx reply): do not retry."""


class Transport(Protocol):
    async def send(self, message: Message) -> None:
        """Deliver ``message`` or raise :class:`DeliveryError`."""

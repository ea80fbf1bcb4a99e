"""The courier: renders code messages and delivers them by email (SMTP) or SMS (a provider), through the
transactional outbox.

``message.py`` the message and the delivery errors; ``templates.py`` the texts (en-US, zh-CN, text + HTML);
``smtp.py`` email over aiosmtplib; ``sms.py`` the SMS provider interface and the signed-webhook provider;
``outbox.py`` the outbox table, its claims and the delivery worker.
"""

from __future__ import annotations

from keyhall.server.courier.message import DeliveryError, Message, PermanentDeliveryError, Transport

__all__ = ["DeliveryError", "Message", "PermanentDeliveryError", "Transport"]

"""The transports the settings ask for: SMTP for email, the signed webhook for SMS, else none (dev outbox)."""

from __future__ import annotations

from keyhall.server.courier.message import Kind, Transport
from keyhall.server.courier.sms import WebhookSmsProvider
from keyhall.server.courier.smtp import SmtpTransport
from keyhall.server.settings import Settings


def transports_from(settings: Settings) -> dict[Kind, Transport | None]:
    email: Transport | None = None
    sms: Transport | None = None
    if settings.smtp_url is not None:
        email = SmtpTransport.from_url(
            settings.smtp_url.get_secret_value(), settings.mail_from, settings.smtp_timeout_s
        )
    if settings.sms_webhook_url:
        secret = settings.sms_webhook_secret.get_secret_value() if settings.sms_webhook_secret else ""
        sms = WebhookSmsProvider(settings.sms_webhook_url, secret, settings.smtp_timeout_s)
    return {"email": email, "sms": sms}

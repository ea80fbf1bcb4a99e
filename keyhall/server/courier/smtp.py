"""Email over SMTP with aiosmtplib, configured by one URL.

``smtp://user:pass@host:587?starttls=true`` (STARTTLS required), ``smtp://host:25`` (STARTTLS when the
server offers it), ``smtp://host:25?starttls=false`` (never), ``smtps://user:pass@host:465`` (TLS from the
first byte). User and password are URL-decoded.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass, field
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from keyhall.server.courier.message import DeliveryError, Message, PermanentDeliveryError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SmtpUrlError(ValueError):
    """KEYHALL_SMTP_URL cannot be used; the message says why (without the password)."""


@dataclass(frozen=True)
class SmtpTransport:
    hostname: str
    port: int
    use_tls: bool
    start_tls: bool | None
    mail_from: str
    timeout_s: float
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str, mail_from: str, timeout_s: float = 20.0) -> SmtpTransport:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps"):
            raise SmtpUrlError(
                f"KEYHALL_SMTP_URL must start with smtp:// or smtps://, not {scheme or '?'}://"
            )
        try:
            port = parts.port
        except ValueError:
            raise SmtpUrlError("KEYHALL_SMTP_URL has an invalid port") from None
        if not parts.hostname:
            raise SmtpUrlError("KEYHALL_SMTP_URL names no host")
        start_tls: bool | None = None
        flag = parse_qs(parts.query).get("starttls", [""])[-1].lower()
        if flag in _TRUE:
            start_tls = True
        elif flag in _FALSE:
            start_tls = False
        elif flag:
            raise SmtpUrlError("KEYHALL_SMTP_URL: starttls must be true or false")
        use_tls = scheme == "smtps"
        if use_tls and start_tls:
            raise SmtpUrlError("KEYHALL_SMTP_URL: smtps:// is TLS already; drop starttls=true")
        return cls(
            hostname=parts.hostname,
            port=port or (465 if use_tls else 587 if start_tls else 25),
            use_tls=use_tls,
            start_tls=False if use_tls else start_tls,
            mail_from=mail_from,
            timeout_s=timeout_s,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    async def send(self, message: Message) -> None:
        try:
            await aiosmtplib.send(
                self._mime(message),
                hostname=self.hostname,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.use_tls,
                start_tls=self.start_tls,
                timeout=self.timeout_s,
            )
        except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPSenderRefused) as exc:
            raise PermanentDeliveryError(
                f"the SMTP server refused the envelope ({type(exc).__name__})"
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            kind = PermanentDeliveryError if 500 <= exc.code < 600 else DeliveryError
            raise kind(f"the SMTP server answered {exc.code}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"SMTP delivery failed: {type(exc).__name__}") from None

    def _mime(self, message: Message) -> EmailMessage:
        mime = EmailMessage()
        mime["From"] = self.mail_from
        mime["To"] = message.to
        mime["Subject"] = message.subject
        mime["Date"] = email.utils.formatdate(usegmt=True)
        mime["Message-ID"] = email.utils.make_msgid(idstring=message.id or None, domain="keyhall")
        mime.set_content(message.text)
        if message.html:
            mime.add_alternative(message.html, subtype="html")
        mime["Content-Language"] = message.lang  # after the body: set_content drops Content-* headers
        return mime

"""Domain errors: every failure the server can answer, with its stable statusCode and apiCode.

A flow raises one of these; only ``keyhall.server.http.envelope`` turns it into a response. The text
of each message lives in ``keyhall.server.messages`` under the error's ``message_id``, so that it can
be translated and so that each id stays stable for clients and docs/errors.md.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """Base of every error that is answered to the client as an envelope."""

    status_code: ClassVar[int] = 400
    api_code: ClassVar[int | None] = None
    message_id: ClassVar[str] = "invalid_argument"

    def __init__(self, **params: Any) -> None:
        self.params = params
        super().__init__(f"{self.message_id} {params}")


class InvalidArgument(DomainError):
    """A field is missing, of the wrong type or out of range. ``field`` and ``reason`` name it."""

    message_id = "invalid_argument"


class InvalidEmail(DomainError):
    api_code = 2003
    message_id = "invalid_email"


class PasswordMissing(DomainError):
    api_code = 2032
    message_id = "password_missing"


class PasswordRejected(DomainError):
    """The pool's password policy refused the password; ``rule`` names the rule (see messages)."""

    api_code = 2029
    message_id = "password_rejected"


class VerificationCodeWrong(DomainError):
    api_code = 2001
    message_id = "code_wrong"


class VerificationCodeExpired(DomainError):
    api_code = 2300
    message_id = "code_expired"


class EmailVerificationRequired(DomainError):
    """The pool requires a verified email at registration and no email code came with the sign-up."""

    message_id = "email_code_required"


class RegistrationDisabled(DomainError):
    status_code = 403
    api_code = 2031
    message_id = "registration_disabled"


class AppNotFound(DomainError):
    status_code = 404
    api_code = 1001
    message_id = "app_not_found"


class AppIdMissing(AppNotFound):
    message_id = "app_id_missing"


class InvalidClient(DomainError):
    """App credentials were offered (Basic header or client_id/client_secret) and are wrong."""

    status_code = 401
    message_id = "invalid_client"


class InvalidBody(DomainError):
    """The body is not a JSON object (malformed JSON, wrong top-level type, too deep)."""

    message_id = "invalid_body"


class EmailTaken(DomainError):
    status_code = 409
    api_code = 2026
    message_id = "email_taken"


class UsernameTaken(DomainError):
    status_code = 409
    api_code = 2034
    message_id = "username_taken"


class PhoneTaken(DomainError):
    status_code = 409
    api_code = 2035
    message_id = "phone_taken"


class PayloadTooLarge(DomainError):
    status_code = 413
    message_id = "payload_too_large"


class Throttled(DomainError):
    status_code = 429
    api_code = 2100
    message_id = "throttled"


class PasswordDecryptFailed(DomainError):
    """An ``rsa``/``sm2`` encrypted password could not be decrypted to valid text."""

    status_code = 499
    api_code = 2016
    message_id = "password_decrypt_failed"


class SignInRefused(DomainError):
    """Sign-in: the account does not exist or the password is wrong (one answer for both, on purpose)."""

    status_code = 403
    api_code = 2333
    message_id = "signin_refused"


class AccountLocked(DomainError):
    """Too many failed password sign-ins for this account; ``retry_after`` seconds until it unlocks."""

    status_code = 403
    api_code = 2005
    message_id = "account_locked"


class AccountSuspended(DomainError):
    """The user's status is not Activated (Suspended, Deactivated, Resigned, Archived)."""

    status_code = 403
    message_id = "account_suspended"


class OldPasswordWrong(DomainError):
    """update-password: the current password given does not match."""

    status_code = 403
    api_code = 2006
    message_id = "old_password_wrong"


class InvalidToken(DomainError):
    """The access token is missing, malformed, expired, revoked or not for this app; ``reason`` says which."""

    status_code = 401
    message_id = "invalid_token"


class InvalidGrant(DomainError):
    """OAuth token endpoint: the refresh token is unknown, expired, revoked or already used."""

    status_code = 400
    message_id = "invalid_grant"


class NotFound(DomainError):
    """A path the server does not serve."""

    status_code = 404
    message_id = "route_not_found"


class MethodNotAllowed(DomainError):
    status_code = 405
    message_id = "method_not_allowed"


class ServerError(DomainError):
    """An unexpected failure; its details stay in the log, the client gets the requestId."""

    status_code = 500
    message_id = "server_error"


class ServiceUnavailable(DomainError):
    status_code = 503
    message_id = "service_unavailable"


class ServerBusy(ServiceUnavailable):
    """The queue for password hashing/decryption is full; ``retry_after`` seconds is a fair wait."""

    message_id = "server_busy"


class RateLimitStoreUnavailable(ServiceUnavailable):
    """KEYHALL_REDIS_URL is set and Redis cannot be reached: requests that need a counter are refused
    (fail closed) rather than let through uncounted; ``retry_after`` seconds is a fair wait."""

    message_id = "rate_limit_store_unavailable"


class NotReady(ServiceUnavailable):
    """GET /readyz: the database cannot be reached, so this process should get no traffic."""

    message_id = "not_ready"


class RequestTimedOut(ServiceUnavailable):
    """The request was not answered within ``seconds`` (KEYHALL_REQUEST_TIMEOUT_S); its work was cancelled."""

    message_id = "request_timeout"

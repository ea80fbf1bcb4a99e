"""Asynchronous client of the GenAuth v3 Authentication API served by Keyhall."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from keyhall.sdk._base import ClientBase
from keyhall.sdk._request import (
    SEND_EMAIL_PATH,
    SEND_SMS_PATH,
    SIGN_UP_PATH,
    SYSTEM_PATH,
    JSONDict,
    build_request,
    check_encrypt_type,
    connection_error,
    encrypt,
    parse_response,
    password_to_encrypt,
    phone_pass_code_payload,
    read_public_keys,
    send_sms_body,
    sign_up_body,
    with_encrypted_password,
)


class AsyncAuthenticationClient(ClientBase):
    """The :class:`~keyhall.sdk.client.AuthenticationClient` API as coroutines, on one ``httpx.AsyncClient``.

    A caller-supplied ``http_client`` is used as is and left open by :meth:`aclose`.
    """

    def __init__(
        self,
        app_id: str,
        app_host: str,
        app_secret: str | None = None,
        redirect_uri: str | None = None,
        timeout: float = 10.0,
        lang: str | None = None,
        access_token: str | None = None,
        password_encrypt_type: str | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            app_id, app_host, app_secret, redirect_uri, timeout, lang, access_token, password_encrypt_type
        )
        self._owns_http = http_client is None
        self._http = httpx.AsyncClient(timeout=self._settings.timeout) if http_client is None else http_client
        self._keys_lock = asyncio.Lock()

    async def sign_up(
        self,
        connection: str,
        password_payload: Mapping[str, Any] | None = None,
        pass_code_payload: Mapping[str, Any] | None = None,
        profile: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> JSONDict:
        """Register a user (``POST /api/v3/signup``) with ``connection`` "PASSWORD" or "PASSCODE"."""
        body = sign_up_body(connection, password_payload, pass_code_payload, profile, options)
        encrypt_type = self._settings.password_encrypt_type
        if encrypt_type is not None and password_to_encrypt(body, encrypt_type) is not None:
            body = with_encrypted_password(body, encrypt_type, await self._public_key(encrypt_type))
        return await self._send("POST", SIGN_UP_PATH, body)

    async def sign_up_by_email_password(
        self,
        email: str,
        password: str,
        profile: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> JSONDict:
        """Register a user with email and password."""
        return await self.sign_up("PASSWORD", {"email": email, "password": password}, None, profile, options)

    async def sign_up_by_username_password(
        self,
        username: str,
        password: str,
        profile: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> JSONDict:
        """Register a user with username and password."""
        return await self.sign_up(
            "PASSWORD", {"username": username, "password": password}, None, profile, options
        )

    async def sign_up_by_email_passcode(
        self,
        email: str,
        pass_code: str,
        profile: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> JSONDict:
        """Register a user with email and a CHANNEL_REGISTER code from :meth:`send_email`."""
        payload = {"email": email, "passCode": pass_code}
        return await self.sign_up("PASSCODE", None, payload, profile, options)

    async def sign_up_by_phone_passcode(
        self,
        phone: str,
        pass_code: str,
        phone_country_code: str | None = None,
        profile: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> JSONDict:
        """Register a user with a phone number and a CHANNEL_REGISTER code from :meth:`send_sms`."""
        payload = phone_pass_code_payload(phone, pass_code, phone_country_code)
        return await self.sign_up("PASSCODE", None, payload, profile, options)

    async def send_email(self, channel: str, email: str) -> JSONDict:
        """Send a verification code by email (``POST /api/v3/send-email``); ``channel`` says what for,
        e.g. "CHANNEL_REGISTER". One send per address and channel per minute (429 otherwise)."""
        return await self._send("POST", SEND_EMAIL_PATH, {"channel": channel, "email": email})

    async def send_sms(
        self, channel: str, phone_number: str, phone_country_code: str | None = None
    ) -> JSONDict:
        """Send a verification code by SMS (``POST /api/v3/send-sms``); the country code defaults to +86."""
        return await self._send(
            "POST", SEND_SMS_PATH, send_sms_body(channel, phone_number, phone_country_code)
        )

    async def get_system_info(self) -> JSONDict:
        """The server's public information (``GET /api/v3/system``): public keys and version."""
        return await self._send("GET", SYSTEM_PATH)

    async def encrypt_password(self, password: str, encrypt_type: str) -> str:
        """Encrypt ``password`` with the server's ``encrypt_type`` ("rsa"/"sm2") public key, for callers
        who send ``options.passwordEncryptType`` themselves."""
        check_encrypt_type(encrypt_type)
        return encrypt(password, encrypt_type, await self._public_key(encrypt_type))

    async def aclose(self) -> None:
        """Close the connection pool, unless the caller supplied the HTTP client."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _public_key(self, encrypt_type: str) -> str:
        """The server's ``encrypt_type`` public key, fetched on first use and then cached."""
        key = self._public_keys.get(encrypt_type)
        if key is None:
            async with self._keys_lock:
                key = self._public_keys.get(encrypt_type)
                if key is None:
                    info = await self.get_system_info()
                    self._public_keys = read_public_keys(info, encrypt_type, self._settings)
                    key = self._public_keys[encrypt_type]
        return key

    async def _send(self, method: str, path: str, body: JSONDict | None = None) -> JSONDict:
        """Send one API call and return the decoded answer."""
        request = build_request(self._settings, method, path, body)
        try:
            response = await self._http.request(
                request.method,
                request.url,
                headers=request.headers,
                content=request.content,
                timeout=self._settings.timeout,
            )
        except httpx.TransportError as exc:
            raise connection_error(exc, self._settings) from exc
        return parse_response(response.status_code, response.content)

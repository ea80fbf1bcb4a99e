"""Synchronous client of the GenAuth v3 Authentication API served by Keyhall."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
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
    encryption_for,
    is_decrypt_failure,
    parse_response,
    phone_pass_code_payload,
    read_public_keys,
    send_sms_body,
    sign_up_body,
    with_encrypted_password,
)
from keyhall.sdk._signin import (
    INTROSPECTION_PATH,
    JWKS_PATH,
    REVOCATION_PATH,
    SIGN_IN_PATH,
    TOKEN_PATH,
    UPDATE_PASSWORD_PATH,
    UPDATE_PROFILE_PATH,
    oauth_form,
    oauth_request,
    parse_oauth,
    profile_query,
    sign_in_body,
    update_password_body,
    update_password_encryption,
    verify_offline,
)


class AuthenticationClient(ClientBase):
    """Calls the Authentication API as an app; answers are the server's JSON dicts (check ``statusCode``).

    ``timeout`` is in seconds. Passwords are always given in plaintext: with ``password_encrypt_type``
    ("rsa" or "sm2"), or a call's ``options={"passwordEncryptType": ...}``, the client encrypts them
    itself with the server's public key (fetched once, fetched again and the call retried once when the
    server answers 499/2016 after a key rotation). A caller-supplied ``http_client`` is used as is and
    left open by :meth:`close`.
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
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(
            app_id, app_host, app_secret, redirect_uri, timeout, lang, access_token, password_encrypt_type
        )
        self._owns_http = http_client is None
        self._http = httpx.Client(timeout=self._settings.timeout) if http_client is None else http_client
        self._keys_lock = threading.Lock()

    def sign_up(
        self,
        connection: str,
        password_payload: Mapping[str, Any] | None = None,
        pass_code_payload: Mapping[str, Any] | None = None,
        profile: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> JSONDict:
        """Register a user (``POST /api/v3/signup``) with ``connection`` "PASSWORD" or "PASSCODE"."""
        body = sign_up_body(connection, password_payload, pass_code_payload, profile, options)
        return self._send_with_password("POST", SIGN_UP_PATH, body)

    def sign_up_by_email_password(
        self,
        email: str,
        password: str,
        profile: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> JSONDict:
        """Register a user with email and password."""
        return self.sign_up("PASSWORD", {"email": email, "password": password}, None, profile, options)

    def sign_up_by_username_password(
        self,
        username: str,
        password: str,
        profile: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> JSONDict:
        """Register a user with username and password."""
        return self.sign_up("PASSWORD", {"username": username, "password": password}, None, profile, options)

    def sign_up_by_email_passcode(
        self,
        email: str,
        pass_code: str,
        profile: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> JSONDict:
        """Register a user with email and a CHANNEL_REGISTER code from :meth:`send_email`."""
        payload = {"email": email, "passCode": pass_code}
        return self.sign_up("PASSCODE", None, payload, profile, options)

    def sign_up_by_phone_passcode(
        self,
        phone: str,
        pass_code: str,
        phone_country_code: str | None = None,
        profile: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> JSONDict:
        """Register a user with a phone number and a CHANNEL_REGISTER code from :meth:`send_sms`."""
        payload = phone_pass_code_payload(phone, pass_code, phone_country_code)
        return self.sign_up("PASSCODE", None, payload, profile, options)

    def send_email(self, channel: str, email: str) -> JSONDict:
        """Send a verification code by email (``POST /api/v3/send-email``); ``channel`` says what for,
        e.g. "CHANNEL_REGISTER". One send per address and channel per minute (429 otherwise)."""
        return self._send("POST", SEND_EMAIL_PATH, {"channel": channel, "email": email})

    def send_sms(self, channel: str, phone_number: str, phone_country_code: str | None = None) -> JSONDict:
        """Send a verification code by SMS (``POST /api/v3/send-sms``); the country code defaults to +86."""
        return self._send("POST", SEND_SMS_PATH, send_sms_body(channel, phone_number, phone_country_code))

    def get_system_info(self) -> JSONDict:
        """The server's public information (``GET /api/v3/system``): public keys and version."""
        return self._send("GET", SYSTEM_PATH)

    def encrypt_password(self, password: str, encrypt_type: str) -> str:
        """Encrypt ``password`` with the server's ``encrypt_type`` ("rsa"/"sm2") public key, for requests
        sent by other clients (e.g. the official SDKs). Not for this client's own calls: they take the
        plaintext password and encrypt it themselves."""
        check_encrypt_type(encrypt_type)
        return encrypt(password, encrypt_type, self._public_key(encrypt_type))

    # -- sign-in, tokens and the user's own profile (keyhall.sdk._signin) --

    def set_access_token(self, access_token: str | None) -> None:
        """Use ``access_token`` (bare or ``Bearer ...``) for the calls made as the user."""
        self._settings = dataclasses.replace(self._settings, access_token=access_token)

    def sign_in_by_credentials(
        self,
        connection: str,
        password_payload: Mapping[str, Any] | None = None,
        pass_code_payload: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> JSONDict:
        """``POST /api/v3/signin``; on success the client keeps the access token for later calls."""
        body = sign_in_body(self._settings, connection, password_payload, pass_code_payload, options)
        answer = self._send_with_password("POST", SIGN_IN_PATH, body)
        if answer.get("statusCode") == 200 and isinstance(answer.get("data"), dict):
            self.set_access_token(answer["data"].get("access_token"))
        return answer

    def sign_in_by_email_password(
        self, email: str, password: str, options: Mapping[str, Any] | None = None
    ) -> JSONDict:
        return self.sign_in_by_credentials("PASSWORD", {"email": email, "password": password}, None, options)

    def sign_in_by_username_password(
        self, username: str, password: str, options: Mapping[str, Any] | None = None
    ) -> JSONDict:
        payload = {"username": username, "password": password}
        return self.sign_in_by_credentials("PASSWORD", payload, None, options)

    def sign_in_by_account_password(
        self, account: str, password: str, options: Mapping[str, Any] | None = None
    ) -> JSONDict:
        payload = {"account": account, "password": password}
        return self.sign_in_by_credentials("PASSWORD", payload, None, options)

    def get_profile(self, with_custom_data: bool = False, with_identities: bool = False) -> JSONDict:
        """The signed-in user's profile (``GET /api/v3/get-profile``)."""
        return self._send("GET", profile_query(with_custom_data, with_identities))

    def update_profile(self, **fields: Any) -> JSONDict:
        """``POST /api/v3/update-profile`` with the given camelCase fields (e.g. ``nickname="x"``)."""
        return self._send("POST", UPDATE_PROFILE_PATH, dict(fields))

    def update_password(
        self, new_password: str, old_password: str, password_encrypt_type: str | None = None
    ) -> JSONDict:
        """``POST /api/v3/update-password``: the old password is required; other sessions end.

        Both passwords are plaintext; with ``password_encrypt_type`` ("rsa", "sm2"; default the
        client's, "none" for none) the client encrypts them, as on sign-up and sign-in.
        """
        encrypt_type = update_password_encryption(password_encrypt_type, self._settings.password_encrypt_type)
        if encrypt_type is None:
            return self._send("POST", UPDATE_PASSWORD_PATH, update_password_body(new_password, old_password))
        return self._send_encrypted(
            "POST",
            UPDATE_PASSWORD_PATH,
            encrypt_type,
            lambda key: update_password_body(new_password, old_password, encrypt_type, key),
        )

    def get_new_access_token_by_refresh_token(self, refresh_token: str) -> JSONDict:
        """``POST /oidc/token`` with grant_type=refresh_token: new tokens (the refresh token rotates)."""
        answer = self._oauth(
            TOKEN_PATH, oauth_form(self._settings, grant_type="refresh_token", refresh_token=refresh_token)
        )
        if "access_token" in answer:
            self.set_access_token(answer["access_token"])
        return answer

    def introspect_token(self, token: str) -> JSONDict:
        """``POST /oidc/token/introspection``: ``{"active": false}`` or the token's claims."""
        return self._oauth(INTROSPECTION_PATH, oauth_form(self._settings, token=token))

    def revoke_token(self, token: str) -> bool:
        """``POST /oidc/token/revocation``; True when the server took it."""
        url, headers = oauth_request(self._settings, REVOCATION_PATH, {})
        form = oauth_form(self._settings, token=token)
        try:
            response = self._http.post(url, data=form, headers=headers, timeout=self._settings.timeout)
        except httpx.TransportError as exc:
            raise connection_error(exc, self._settings) from exc
        return response.status_code == 200

    def introspect_token_offline(self, token: str) -> JSONDict:
        """Verify ``token`` against the server's JWKS here (raises ``jwt.InvalidTokenError``); its claims."""
        try:
            response = self._http.get(self._settings.app_host + JWKS_PATH, timeout=self._settings.timeout)
        except httpx.TransportError as exc:
            raise connection_error(exc, self._settings) from exc
        return verify_offline(self._settings, parse_oauth(response.content), token)

    def _oauth(self, path: str, form: dict[str, str]) -> JSONDict:
        url, headers = oauth_request(self._settings, path, form)
        try:
            response = self._http.post(url, data=form, headers=headers, timeout=self._settings.timeout)
        except httpx.TransportError as exc:
            raise connection_error(exc, self._settings) from exc
        return parse_oauth(response.content)

    def close(self) -> None:
        """Close the connection pool, unless the caller supplied the HTTP client."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _public_key(self, encrypt_type: str, stale: str | None = None) -> str:
        """The server's ``encrypt_type`` public key, fetched on first use and then cached; fetched again
        when the cached one is ``stale`` (the server refused a password encrypted with it)."""
        key = self._public_keys.get(encrypt_type)
        if key is None or key == stale:
            with self._keys_lock:
                key = self._public_keys.get(encrypt_type)
                if key is None or key == stale:
                    info = self.get_system_info()
                    self._public_keys = read_public_keys(info, encrypt_type, self._settings)
                    key = self._public_keys[encrypt_type]
        return key

    def _send_with_password(self, method: str, path: str, body: JSONDict) -> JSONDict:
        """Send ``body``, first encrypting its plaintext password when the call or the client asks for it.

        A 499/2016 answer means the server no longer takes the cached key (a rotation): the keys are
        fetched again and, if they changed, the request is sent once more.
        """
        encrypt_type = encryption_for(body, self._settings.password_encrypt_type)
        if encrypt_type is None:
            return self._send(method, path, body)
        return self._send_encrypted(
            method, path, encrypt_type, lambda key: with_encrypted_password(body, encrypt_type, key)
        )

    def _send_encrypted(
        self, method: str, path: str, encrypt_type: str, body_for: Callable[[str], JSONDict]
    ) -> JSONDict:
        """Send ``body_for(public key)``; after a 499/2016 with keys that have since changed, once more."""
        key = self._public_key(encrypt_type)
        answer = self._send(method, path, body_for(key))
        if is_decrypt_failure(answer):
            fresh = self._public_key(encrypt_type, stale=key)
            if fresh != key:
                answer = self._send(method, path, body_for(fresh))
        return answer

    def _send(self, method: str, path: str, body: JSONDict | None = None) -> JSONDict:
        """Send one API call and return the decoded answer."""
        request = build_request(self._settings, method, path, body)
        try:
            response = self._http.request(
                request.method,
                request.url,
                headers=request.headers,
                content=request.content,
                timeout=self._settings.timeout,
            )
        except httpx.TransportError as exc:
            raise connection_error(exc, self._settings) from exc
        return parse_response(response.status_code, response.content)

"""What the sync and async clients share: validated settings, their accessors, the key cache."""

from __future__ import annotations

from keyhall.sdk._request import AppSettings, make_settings


class ClientBase:
    def __init__(
        self,
        app_id: str,
        app_host: str,
        app_secret: str | None,
        redirect_uri: str | None,
        timeout: float,
        lang: str | None,
        access_token: str | None,
        password_encrypt_type: str | None,
    ) -> None:
        self._settings = make_settings(
            app_id, app_host, app_secret, redirect_uri, timeout, lang, access_token, password_encrypt_type
        )
        self._public_keys: dict[str, str] = {}

    @property
    def settings(self) -> AppSettings:
        """The validated configuration this client sends requests with."""
        return self._settings

    @property
    def app_id(self) -> str:
        """The application ID."""
        return self._settings.app_id

    @property
    def app_host(self) -> str:
        """The server URL, without trailing slash."""
        return self._settings.app_host

"""The SDK's request builder and both clients: what goes on the wire and how answers are read.

``httpx.MockTransport`` only records requests (and plays canned answers); connection failures use
real sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import keyhall
import keyhall.sdk
from keyhall.sdk import AsyncAuthenticationClient, AuthenticationClient, KeyhallConnectionError, KeyhallError
from keyhall.sdk._request import build_request, make_settings, parse_response
from keyhall.sdk._version import __version__ as sdk_version

APP_ID = "app-1"
SECRET = "s3cret"
HOST = "https://id.example.com"
SYSTEM_INFO = {"rsa": {"publicKey": "RSA-PEM"}, "sm2": {"publicKey": "04abcdef"}, "version": {"server": "x"}}
OK = {"statusCode": 200, "message": "", "requestId": "r1", "data": {"userId": "u1"}}

Wire = tuple[str, str, list[tuple[bytes, bytes]], bytes]


class Recorder:
    """A MockTransport handler that records each request and answers from canned (status, body) by path."""

    def __init__(self, answers: dict[str, tuple[int, bytes]] | None = None) -> None:
        self.answers = answers or {}
        self.requests: list[httpx.Request] = []
        self.lock = threading.Lock()
        self.system_delay = 0.0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
        if request.url.path == "/api/v3/system" and self.system_delay:
            time.sleep(self.system_delay)
        status, body = self.answers.get(request.url.path, (200, json.dumps(OK).encode()))
        return httpx.Response(status, content=body)

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)

    def wire(self) -> list[Wire]:
        return [(r.method, str(r.url), list(r.headers.raw), r.content) for r in self.requests]


def system_answer() -> dict[str, tuple[int, bytes]]:
    return {"/api/v3/system": (200, json.dumps(SYSTEM_INFO).encode())}


def sync_client(recorder: Recorder, **kwargs: Any) -> AuthenticationClient:
    kwargs.setdefault("app_host", HOST)
    http = httpx.Client(transport=httpx.MockTransport(recorder))
    return AuthenticationClient(APP_ID, http_client=http, **kwargs)


def async_client(handler: Callable[..., Any], **kwargs: Any) -> AsyncAuthenticationClient:
    kwargs.setdefault("app_host", HOST)
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return AsyncAuthenticationClient(APP_ID, http_client=http, **kwargs)


@pytest.fixture
def fake_encryption(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Stand in for keyhall.sdk._encryption; returns the (password, type, key) calls it received."""
    calls: list[tuple[str, str, str]] = []

    def encrypt_password(password: str, encrypt_type: str, public_key: str) -> str:
        calls.append((password, encrypt_type, public_key))
        return f"enc[{encrypt_type}:{public_key}]({password})"

    module = types.ModuleType("keyhall.sdk._encryption")
    module.encrypt_password = encrypt_password  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "keyhall.sdk._encryption", module)
    return calls


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


# --- request builder ----------------------------------------------------------------------------


def test_headers_of_sign_up_with_secret_and_lang() -> None:
    settings = make_settings(APP_ID, HOST, app_secret=SECRET, lang="en-US")
    request = build_request(settings, "POST", "/api/v3/signup", {"connection": "PASSWORD"})
    basic = "Basic " + base64.b64encode(f"{APP_ID}:{SECRET}".encode()).decode()
    assert request.headers == {
        "x-genauth-app-id": APP_ID,
        "x-genauth-request-from": "sdk",
        "x-genauth-sdk-version": "keyhall-py:0.1.0",
        "x-genauth-lang": "en-US",
        "authorization": basic,
        "content-type": "application/json",
    }
    assert request.method == "POST"
    assert request.url == "https://id.example.com/api/v3/signup"


def test_sdk_version_is_its_own_constant() -> None:
    assert sdk_version == "0.1.0"
    assert keyhall.__version__ == "0.1.0"


def test_no_lang_header_and_no_basic_without_secret() -> None:
    request = build_request(make_settings(APP_ID, HOST), "POST", "/api/v3/signup", {})
    assert "x-genauth-lang" not in request.headers
    assert "authorization" not in request.headers


def test_basic_header_only_on_sign_up_and_sign_in_calls() -> None:
    settings = make_settings(APP_ID, HOST, app_secret=SECRET)
    assert build_request(settings, "POST", "/api/v3/signin", {}).headers["authorization"].startswith("Basic ")
    assert "authorization" not in build_request(settings, "GET", "/api/v3/system").headers


def test_access_token_sent_as_is_where_no_basic_auth() -> None:
    settings = make_settings(APP_ID, HOST, app_secret=SECRET, access_token="tok")
    assert build_request(settings, "GET", "/api/v3/system").headers["authorization"] == "tok"
    assert build_request(settings, "POST", "/api/v3/signup", {}).headers["authorization"].startswith("Basic ")


def test_top_level_none_keys_dropped_nested_kept() -> None:
    body = {
        "connection": "PASSCODE",
        "profile": None,
        "passCodePayload": {"phone": "1", "phoneCountryCode": None},
    }
    request = build_request(make_settings(APP_ID, HOST), "POST", "/api/v3/signup", body)
    assert request.content is not None
    assert json.loads(request.content) == {
        "connection": "PASSCODE",
        "passCodePayload": {"phone": "1", "phoneCountryCode": None},
    }


def test_no_body_and_no_content_type_without_json() -> None:
    request = build_request(make_settings(APP_ID, HOST), "GET", "/api/v3/system")
    assert request.content is None
    assert "content-type" not in request.headers


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("https://id.example.com", "https://id.example.com/api/v3/system"),
        ("https://id.example.com/", "https://id.example.com/api/v3/system"),
        ("http://127.0.0.1:8080//", "http://127.0.0.1:8080/api/v3/system"),
        ("https://example.com/keyhall/", "https://example.com/keyhall/api/v3/system"),
    ],
)
def test_url_joining(host: str, url: str) -> None:
    assert build_request(make_settings(APP_ID, host), "GET", "/api/v3/system").url == url


def test_secret_not_in_settings_repr() -> None:
    assert SECRET not in repr(make_settings(APP_ID, HOST, app_secret=SECRET, access_token="tok-xyz"))
    assert "tok-xyz" not in repr(make_settings(APP_ID, HOST, access_token="tok-xyz"))


# --- reading answers -----------------------------------------------------------------------------


def test_parse_response_returns_json_object_as_is() -> None:
    envelope = {"statusCode": 409, "apiCode": 2026, "message": "taken", "requestId": "r"}
    assert parse_response(409, json.dumps(envelope).encode()) == envelope


def test_parse_response_html_gateway_error_becomes_envelope() -> None:
    answer = parse_response(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>")
    assert answer["statusCode"] == 502
    assert answer["requestId"] is None
    assert "HTTP 502" in answer["message"]
    assert "JSON" in answer["message"]
    assert "502 Bad Gateway" in answer["message"]


@pytest.mark.parametrize(("status", "content"), [(200, b"<html>hi</html>"), (200, b""), (200, b"[1, 2]")])
def test_parse_response_non_object_success_is_a_500(status: int, content: bytes) -> None:
    answer = parse_response(status, content)
    assert answer["statusCode"] == 500
    assert set(answer) == {"statusCode", "message", "requestId"}


# --- clients on the wire -------------------------------------------------------------------------


def test_sync_sign_up_by_email_password_on_the_wire() -> None:
    recorder = Recorder()
    with sync_client(recorder, app_secret=SECRET) as client:
        answer = client.sign_up_by_email_password("a@example.com", "pw", profile={"nickname": "A"})
    assert answer == OK
    (request,) = recorder.requests
    assert (request.method, str(request.url)) == ("POST", "https://id.example.com/api/v3/signup")
    assert request.headers["x-genauth-app-id"] == APP_ID
    assert request.headers["authorization"].startswith("Basic ")
    assert request.headers["content-type"] == "application/json"
    assert recorder.body() == {
        "connection": "PASSWORD",
        "passwordPayload": {"email": "a@example.com", "password": "pw"},
        "profile": {"nickname": "A"},
    }


def test_sync_sign_up_by_username_password_and_options_as_given() -> None:
    recorder = Recorder()
    client = sync_client(recorder)
    client.sign_up_by_username_password(
        "ann", "plain", options={"passwordEncryptType": "none", "locale": "x"}
    )
    assert recorder.paths() == ["/api/v3/signup"]
    assert "authorization" not in recorder.requests[0].headers
    assert recorder.body() == {
        "connection": "PASSWORD",
        "passwordPayload": {"username": "ann", "password": "plain"},
        "options": {"passwordEncryptType": "none", "locale": "x"},
    }


def test_sync_get_system_info_returns_bare_object() -> None:
    recorder = Recorder(system_answer())
    assert sync_client(recorder).get_system_info() == SYSTEM_INFO
    assert recorder.requests[0].method == "GET"
    assert recorder.requests[0].content == b""


def test_sync_non_json_answer_becomes_envelope() -> None:
    recorder = Recorder({"/api/v3/signup": (502, b"<html>Bad Gateway</html>")})
    answer = sync_client(recorder).sign_up("PASSWORD", {"email": "a@example.com", "password": "pw"})
    assert answer["statusCode"] == 502
    assert answer["requestId"] is None


async def test_async_non_json_answer_becomes_envelope() -> None:
    recorder = Recorder({"/api/v3/system": (503, b"Service Unavailable")})
    async with async_client(recorder) as client:
        answer = await client.get_system_info()
    assert answer["statusCode"] == 503
    assert "Service Unavailable" in answer["message"]


async def test_sync_and_async_send_byte_identical_requests() -> None:
    kwargs: dict[str, Any] = {"app_secret": SECRET, "lang": "zh-CN", "app_host": HOST + "/"}

    def calls_sync(client: AuthenticationClient) -> None:
        client.sign_up_by_email_password("é@example.com", "pw", profile={"nickname": "É"}, options=None)
        client.sign_up_by_username_password("ann", "pw", options={"clientIp": "1.2.3.4"})
        client.sign_up("PASSCODE", pass_code_payload={"phone": "1", "passCode": "1234"})
        client.get_system_info()

    async def calls_async(client: AsyncAuthenticationClient) -> None:
        await client.sign_up_by_email_password("é@example.com", "pw", profile={"nickname": "É"}, options=None)
        await client.sign_up_by_username_password("ann", "pw", options={"clientIp": "1.2.3.4"})
        await client.sign_up("PASSCODE", pass_code_payload={"phone": "1", "passCode": "1234"})
        await client.get_system_info()

    sync_recorder, async_recorder = Recorder(), Recorder()
    calls_sync(sync_client(sync_recorder, **kwargs))
    await calls_async(async_client(async_recorder, **kwargs))
    assert len(sync_recorder.requests) == 4
    assert sync_recorder.wire() == async_recorder.wire()


# --- connection failures (real sockets) ----------------------------------------------------------


def test_sync_connection_refused_names_the_host(closed_port: int) -> None:
    with AuthenticationClient(APP_ID, f"http://127.0.0.1:{closed_port}", timeout=2) as client:
        with pytest.raises(KeyhallConnectionError) as caught:
            client.get_system_info()
    assert f"127.0.0.1:{closed_port}" in str(caught.value)
    assert caught.value.host == f"127.0.0.1:{closed_port}"
    assert isinstance(caught.value, KeyhallError)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_async_connection_refused_names_the_host(closed_port: int) -> None:
    async with AsyncAuthenticationClient(APP_ID, f"http://127.0.0.1:{closed_port}", timeout=2) as client:
        with pytest.raises(KeyhallConnectionError, match=f"127.0.0.1:{closed_port}"):
            await client.sign_up_by_email_password("a@example.com", "pw")


def test_sync_timeout_is_a_connection_error(silent_port: int) -> None:
    with AuthenticationClient(APP_ID, f"http://127.0.0.1:{silent_port}", timeout=0.2) as client:
        with pytest.raises(KeyhallConnectionError, match=r"127\.0\.0\.1:\d+: no answer within 0\.2 s"):
            client.get_system_info()


async def test_async_timeout_is_a_connection_error(silent_port: int) -> None:
    async with AsyncAuthenticationClient(APP_ID, f"http://127.0.0.1:{silent_port}", timeout=0.2) as client:
        with pytest.raises(KeyhallConnectionError, match=r"no answer within 0\.2 s"):
            await client.get_system_info()


def test_timeout_applies_to_a_supplied_http_client(silent_port: int) -> None:
    supplied = httpx.Client(timeout=30)
    client = AuthenticationClient(
        APP_ID, f"http://127.0.0.1:{silent_port}", timeout=0.2, http_client=supplied
    )
    started = time.monotonic()
    with supplied, pytest.raises(KeyhallConnectionError):
        client.get_system_info()
    assert time.monotonic() - started < 5


async def test_async_timeout_applies_to_a_supplied_http_client(silent_port: int) -> None:
    supplied = httpx.AsyncClient(timeout=30)
    client = AsyncAuthenticationClient(
        APP_ID, f"http://127.0.0.1:{silent_port}", timeout=0.2, http_client=supplied
    )
    started = time.monotonic()
    async with supplied:
        with pytest.raises(KeyhallConnectionError):
            await client.get_system_info()
    assert time.monotonic() - started < 5


# --- constructor ---------------------------------------------------------------------------------


@pytest.mark.parametrize("client_class", [AuthenticationClient, AsyncAuthenticationClient])
@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"app_id": "", "app_host": HOST}, "app_id"),
        ({"app_id": "  ", "app_host": HOST}, "app_id"),
        ({"app_id": APP_ID, "app_host": ""}, "app_host"),
        ({"app_id": APP_ID, "app_host": "id.example.com"}, "app_host"),
        ({"app_id": APP_ID, "app_host": "ftp://id.example.com"}, "app_host"),
        ({"app_id": APP_ID, "app_host": "https://"}, "app_host"),
        ({"app_id": APP_ID, "app_host": "https://u:p@id.example.com"}, "credentials"),
        ({"app_id": APP_ID, "app_host": HOST + "?x=1"}, "query"),
        ({"app_id": APP_ID, "app_host": HOST, "timeout": 0}, "timeout"),
        ({"app_id": APP_ID, "app_host": HOST, "timeout": -1.0}, "timeout"),
        ({"app_id": APP_ID, "app_host": HOST, "password_encrypt_type": "aes"}, "rsa, sm2"),
    ],
)
def test_constructor_rejects_bad_arguments(
    client_class: type, kwargs: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        client_class(**kwargs)


def test_constructor_accepts_the_official_sample_and_positional_order() -> None:
    sample = AuthenticationClient(
        app_id=APP_ID, app_secret=SECRET, app_host=HOST + "/", redirect_uri="https://a/cb"
    )
    positional = AuthenticationClient(APP_ID, HOST, SECRET)
    for client in (sample, positional):
        assert (client.app_id, client.app_host, client.settings.app_secret) == (APP_ID, HOST, SECRET)
        client.close()
    assert sample.settings.redirect_uri == "https://a/cb"
    assert (
        AuthenticationClient(APP_ID, HOST, password_encrypt_type="none").settings.password_encrypt_type
        is None
    )


def test_close_closes_own_http_client_but_not_a_supplied_one() -> None:
    with AuthenticationClient(APP_ID, HOST) as own:
        pass
    assert own._http.is_closed
    supplied = httpx.Client(transport=httpx.MockTransport(Recorder()))
    with AuthenticationClient(APP_ID, HOST, http_client=supplied):
        pass
    assert not supplied.is_closed


async def test_aclose_closes_own_http_client() -> None:
    async with AsyncAuthenticationClient(APP_ID, HOST) as client:
        pass
    assert client._http.is_closed


# --- password encryption -------------------------------------------------------------------------


def test_without_encrypt_type_nothing_is_fetched_or_encrypted(fake_encryption: list[Any]) -> None:
    recorder = Recorder(system_answer())
    sync_client(recorder).sign_up_by_email_password("a@example.com", "plain")
    assert recorder.paths() == ["/api/v3/signup"]
    assert recorder.body()["passwordPayload"]["password"] == "plain"
    assert "options" not in recorder.body()
    assert fake_encryption == []


def test_sync_client_encrypts_with_key_fetched_once(fake_encryption: list[Any]) -> None:
    recorder = Recorder(system_answer())
    client = sync_client(recorder, password_encrypt_type="sm2")
    options = {"clientIp": "1.2.3.4"}
    client.sign_up_by_email_password("a@example.com", "pw1", options=options)
    client.sign_up_by_username_password("ann", "pw2")
    assert recorder.paths() == ["/api/v3/system", "/api/v3/signup", "/api/v3/signup"]
    assert fake_encryption == [("pw1", "sm2", "04abcdef"), ("pw2", "sm2", "04abcdef")]
    assert recorder.body(1)["passwordPayload"]["password"] == "enc[sm2:04abcdef](pw1)"
    assert recorder.body(1)["options"] == {"clientIp": "1.2.3.4", "passwordEncryptType": "sm2"}
    assert recorder.body(2)["options"] == {"passwordEncryptType": "sm2"}
    assert options == {"clientIp": "1.2.3.4"}


def test_sync_key_fetch_happens_once_across_threads(fake_encryption: list[Any]) -> None:
    recorder = Recorder(system_answer())
    recorder.system_delay = 0.05
    client = sync_client(recorder, password_encrypt_type="rsa")
    barrier = threading.Barrier(6)

    def sign_up(n: int) -> None:
        barrier.wait()
        client.sign_up_by_email_password(f"u{n}@example.com", "pw")

    threads = [threading.Thread(target=sign_up, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert recorder.paths().count("/api/v3/system") == 1
    assert recorder.paths().count("/api/v3/signup") == 6


async def test_async_client_encrypts_with_key_fetched_once(fake_encryption: list[Any]) -> None:
    recorder = Recorder(system_answer())

    async def slow(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v3/system":
            await asyncio.sleep(0.02)
        return recorder(request)

    async with async_client(slow, password_encrypt_type="rsa") as client:
        await asyncio.gather(*(client.sign_up_by_email_password(f"u{n}@example.com", "pw") for n in range(5)))
        encrypted = await client.encrypt_password("other", "rsa")
    assert recorder.paths().count("/api/v3/system") == 1
    assert encrypted == "enc[rsa:RSA-PEM](other)"
    signups = [json.loads(r.content) for r in recorder.requests if r.url.path == "/api/v3/signup"]
    assert len(signups) == 5
    assert all(body["passwordPayload"]["password"] == "enc[rsa:RSA-PEM](pw)" for body in signups)
    assert all(body["options"] == {"passwordEncryptType": "rsa"} for body in signups)


def test_public_encrypt_password_uses_cached_key(fake_encryption: list[Any]) -> None:
    recorder = Recorder(system_answer())
    client = sync_client(recorder)
    assert client.encrypt_password("a", "rsa") == "enc[rsa:RSA-PEM](a)"
    assert client.encrypt_password("b", "sm2") == "enc[sm2:04abcdef](b)"
    assert recorder.paths() == ["/api/v3/system"]
    with pytest.raises(ValueError, match="rsa, sm2"):
        client.encrypt_password("c", "aes")


def test_call_option_overrides_the_client_encrypt_type(fake_encryption: list[Any]) -> None:
    recorder = Recorder(system_answer())
    client = sync_client(recorder, password_encrypt_type="rsa")
    client.sign_up_by_email_password("a@example.com", "plain", options={"passwordEncryptType": "sm2"})
    assert fake_encryption == [("plain", "sm2", "04abcdef")]
    assert recorder.body()["options"] == {"passwordEncryptType": "sm2"}


def test_passcode_sign_up_on_encrypting_client_fetches_nothing(fake_encryption: list[Any]) -> None:
    recorder = Recorder(system_answer())
    sync_client(recorder, password_encrypt_type="rsa").sign_up(
        "PASSCODE", pass_code_payload={"email": "a@b.c"}
    )
    assert recorder.paths() == ["/api/v3/signup"]
    assert "options" not in recorder.body()


@pytest.mark.parametrize(
    ("answer", "complaint"),
    [
        ((200, json.dumps({"rsa": {"publicKey": "K"}}).encode()), "no sm2.publicKey"),
        ((502, b"<html>Bad Gateway</html>"), "answered 502"),
    ],
)
def test_missing_public_key_raises_and_is_not_cached(
    fake_encryption: list[Any], answer: tuple[int, bytes], complaint: str
) -> None:
    recorder = Recorder({"/api/v3/system": answer})
    client = sync_client(recorder, password_encrypt_type="sm2")
    for _ in range(2):
        with pytest.raises(KeyhallError, match=complaint):
            client.sign_up_by_email_password("a@example.com", "pw")
    assert recorder.paths() == ["/api/v3/system", "/api/v3/system"]


# --- package surface -----------------------------------------------------------------------------


def test_package_exports() -> None:
    assert set(keyhall.sdk.__all__) == {
        "AuthenticationClient",
        "AsyncAuthenticationClient",
        "KeyhallError",
        "KeyhallConnectionError",
    }
    for name in keyhall.sdk.__all__:
        assert getattr(keyhall, name) is getattr(keyhall.sdk, name)
    assert issubclass(KeyhallConnectionError, KeyhallError)


def test_importing_keyhall_loads_nothing_from_the_server() -> None:
    code = "import sys, keyhall; print(sorted(m for m in sys.modules if m.startswith('keyhall.server')))"
    root = Path(keyhall.__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert result.stdout.strip() == "[]"

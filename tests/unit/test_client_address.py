"""Which address counts as the end user's: the peer, unless the app secret or a trusted proxy vouches."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from starlette.requests import Request

from keyhall.server.errors import InvalidArgument
from keyhall.server.http.context import client_ip
from keyhall.server.settings import Settings


def request(peer: str, headers: dict[str, str], trusted: str = "") -> Request:
    settings = Settings(trusted_proxies=trusted)
    app = SimpleNamespace(state=SimpleNamespace(services=SimpleNamespace(settings=settings)))
    scope = {
        "type": "http",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": (peer, 40000),
        "app": app,
    }
    return Request(scope)


def test_untrusted_peer_headers_and_claims_are_ignored() -> None:
    req = request("198.51.100.7", {"x-real-ip": "203.0.113.1", "x-forwarded-for": "203.0.113.2"})
    assert client_ip(req, trusted_caller=False, claimed="203.0.113.3") == "198.51.100.7"


def test_trusted_proxy_forwards_the_real_ip() -> None:
    req = request("10.1.2.3", {"x-real-ip": "203.0.113.1"}, trusted="10.0.0.0/8")
    assert client_ip(req, trusted_caller=False, claimed="203.0.113.3") == "203.0.113.1"


def test_trusted_proxy_last_forwarded_for_hop_counts() -> None:
    req = request("10.1.2.3", {"x-forwarded-for": "1.2.3.4, 203.0.113.9"}, trusted="10.0.0.0/8")
    assert client_ip(req, trusted_caller=False, claimed=None) == "203.0.113.9"


def test_garbage_forwarded_header_falls_back_to_the_peer() -> None:
    req = request("10.1.2.3", {"x-real-ip": "not-an-ip"}, trusted="10.0.0.0/8")
    assert client_ip(req, trusted_caller=False, claimed=None) == "10.1.2.3"


def test_app_secret_holder_may_claim_the_client_ip() -> None:
    req = request("198.51.100.7", {})
    assert client_ip(req, trusted_caller=True, claimed="2001:db8::1") == "2001:db8::1"


def test_a_claimed_client_ip_must_be_an_address() -> None:
    with pytest.raises(InvalidArgument) as caught:
        client_ip(request("198.51.100.7", {}), trusted_caller=True, claimed="localhost")
    assert caught.value.params["field"] == "options.clientIp"


def test_trusted_proxies_must_be_networks() -> None:
    with pytest.raises(ValueError, match="trusted_proxies"):
        Settings(trusted_proxies="not-a-network")

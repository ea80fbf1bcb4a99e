"""The bounded hashing queue (503 + Retry-After when full), the header and keep-alive timeouts, and graceful
shutdown on SIGTERM. (The request body limit is tested in tests/http/test_errors.py.)

Each test starts its own one-worker SQLite server with one hashing slot, so a burst of sign-ups queues.
"""

from __future__ import annotations

import signal
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ops.test_observability import metric_value
from tests.support.servers import RunningServer, start_server

BURST = 16
HEADER_TIMEOUT_S = 1
KEEP_ALIVE_S = 2  # longer than the header timeout, so that the test can tell which of the two closed


def _signup(server: RunningServer, email: str) -> httpx.Response:
    body = {
        "connection": "PASSWORD",
        "passwordPayload": {"email": email, "password": "Blue-Harbor-7-Lantern"},
    }
    return httpx.post(
        f"{server.base_url}/api/v3/signup",
        json=body,
        headers={"x-genauth-app-id": server.app_id},
        timeout=60,
    )


def _stored(server: RunningServer, emails: list[str]) -> set[str]:
    rows = server.sql("SELECT email FROM users")
    return {row[0] for row in rows} & set(emails)


@pytest.fixture(scope="module")
def busy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("queue")
    server = start_server(
        "sqlite",
        f"sqlite:///{folder / 'keyhall.db'}",
        folder / "server.log",
        workers=1,
        env={
            "KEYHALL_HASH_CONCURRENCY": "1",
            "KEYHALL_HASH_QUEUE_MAX": "1",
            "KEYHALL_TIMEOUT_HEADER_S": str(HEADER_TIMEOUT_S),
            "KEYHALL_TIMEOUT_KEEP_ALIVE_S": str(KEEP_ALIVE_S),
        },
    )
    yield server
    server.stop()


def test_a_full_hashing_queue_answers_503_with_retry_after_and_stores_nothing(
    busy_server: RunningServer,
) -> None:
    emails = [f"q{i}.{uuid.uuid4().hex[:8]}@example.com" for i in range(BURST)]
    with ThreadPoolExecutor(BURST) as pool:
        responses = list(pool.map(lambda email: _signup(busy_server, email), emails))
    answers: list[dict[str, Any]] = [response.json() for response in responses]
    ok = [email for email, answer in zip(emails, answers, strict=True) if answer["statusCode"] == 200]
    busy = [
        (email, response, answer)
        for email, response, answer in zip(emails, responses, answers, strict=True)
        if answer["statusCode"] == 503
    ]
    assert len(ok) + len(busy) == BURST, answers  # nothing else: no 500, no hang
    assert ok and busy, "one slot and a queue of one must both serve and refuse some of a 16-way burst"
    for _, response, answer in busy:
        assert response.status_code == 200  # /api/v3 answers carry the outcome in the envelope
        assert int(response.headers["retry-after"]) >= 1
        assert "busy" in answer["message"] and answer["requestId"]
    assert _stored(busy_server, emails) == set(ok)  # refused sign-ups left nothing behind
    metrics = httpx.get(f"{busy_server.base_url}/metrics", timeout=10).text
    assert metric_value(metrics, "keyhall_cpu_queue_rejections_total") >= len(busy)


@pytest.mark.parametrize("head", [b"", b"POST /api/v3/signup HTTP/1.1\r\nHost: keyhall\r\n"])
def test_a_connection_that_never_completes_its_request_head_is_closed(
    busy_server: RunningServer, head: bytes
) -> None:
    host, port = busy_server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        assert sock.recv(1024) == b""  # closed by the server (KEYHALL_TIMEOUT_HEADER_S=1), no answer
    # A well-behaved client is served as before.
    assert httpx.get(f"{busy_server.base_url}/healthz", timeout=10).status_code == 200


def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(
    busy_server: RunningServer,
) -> None:
    host, port = busy_server.base_url.removeprefix("http://").split(":")
    request = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        for _ in range(2):  # the connection is kept alive between requests that come in time
            sock.sendall(request)
            answer = _read_response(sock)
            assert answer.startswith(b"HTTP/1.1 200") and b"connection: close" not in answer.lower()
        idle_since = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server, with nothing more said
        idle = time.monotonic() - idle_since
    # The keep-alive timeout closed it, not the header timeout (shorter) and not never.
    assert KEEP_ALIVE_S - 0.5 <= idle <= KEEP_ALIVE_S + 3, idle


def _read_response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body) from a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(4096)
        assert chunk, data
        body += chunk
    return head + b"\r\n\r\n" + body


def test_sigterm_finishes_in_flight_signups_before_exiting(tmp_path: Path) -> None:
    server = start_server(
        "sqlite",
        f"sqlite:///{tmp_path / 'keyhall.db'}",
        tmp_path / "server.log",
        workers=1,
        env={"KEYHALL_HASH_CONCURRENCY": "1", "KEYHALL_HASH_QUEUE_MAX": "100"},
    )
    emails = [f"g{i}.{uuid.uuid4().hex[:8]}@example.com" for i in range(BURST)]
    try:
        with ThreadPoolExecutor(BURST) as pool:
            futures = [pool.submit(_signup, server, email) for email in emails]
            # Wait until several sign-ups are inside the server (queued for the one hashing slot), then
            # ask it to stop. The /metrics request itself is one of the in-flight requests.
            for _ in range(600):
                text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
                if metric_value(text, "keyhall_requests_in_flight") >= 3:
                    break
            else:
                pytest.fail("the burst never had 2 sign-ups in flight at once")
            server.process.send_signal(signal.SIGTERM)
            responses = [future.result() for future in futures]
        # uvicorn re-raises the signal once it has shut down cleanly: killed by SIGTERM, after the answers.
        assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
    answers = [response.json() for response in responses]
    assert all(response.status_code == 200 for response in responses)
    acknowledged = {
        email for email, answer in zip(emails, answers, strict=True) if answer["statusCode"] == 200
    }
    assert len(acknowledged) == BURST, answers  # every in-flight request was finished, none cut off
    assert _stored(server, emails) == acknowledged

"""The bounded hashing queue (503 + Retry-After when full) and graceful shutdown on SIGTERM.

Each test starts its own one-worker SQLite server with one hashing slot, so a burst of sign-ups queues.
"""

from __future__ import annotations

import signal
import socket
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
        env={"KEYHALL_HASH_CONCURRENCY": "1", "KEYHALL_HASH_QUEUE_MAX": "1", "KEYHALL_TIMEOUT_HEADER_S": "1"},
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

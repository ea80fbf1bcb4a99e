"""Shared counters in Redis (KEYHALL_REDIS_URL), against a real, private ``redis-server``.

Every test here starts its own Redis on a free port (never the shared one at 6379), so that it can be
killed and restarted. Covered: the backend on its own (window, peek, clear, retry_after, the same answers
as the database backend, hashed keys under the prefix, an unreachable Redis), two ``keyhall serve``
processes on one PostgreSQL database sharing a send throttle and the sign-in lockout through Redis, and
Redis killed under a running server (503 envelopes, nothing stored, /readyz 503) and started again on the
same port (the server works again without a restart).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from keyhall.server.errors import RateLimitStoreUnavailable
from keyhall.server.ratelimit import DatabaseRateLimiter, Decision, RateLimiter
from keyhall.server.ratelimit_redis import RETRY_AFTER_S, RedisRateLimiter
from keyhall.server.store.db import create_engine
from keyhall.server.store.migrate import migrate
from tests.http.test_signup import STRONG
from tests.support.codes import random_ip, send_email, trusted_headers
from tests.support.servers import (
    RunningServer,
    create_postgres_database,
    drop_postgres_database,
    free_port,
    start_server,
)

# Not skipped when missing (like PostgreSQL): scripts/services.sh installs it.
REDIS_SERVER = shutil.which("redis-server")


class PrivateRedis:
    """A ``redis-server`` of this test alone, without persistence, that the test may kill and restart."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed (scripts/services.sh installs it)")
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.client().ping():
                    return
            except redis.exceptions.ConnectionError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no goodbye to connected clients, as when the host dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def keys(self, prefix: str) -> list[str]:
        with self.client() as client:
            return sorted(key.decode() for key in client.scan_iter(match=f"{prefix}:*"))


@pytest.fixture(scope="module")
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.kill()


@pytest.fixture
async def limiter(private_redis: PrivateRedis) -> AsyncIterator[RedisRateLimiter]:
    backend = RedisRateLimiter(private_redis.url, key_prefix=f"test-{uuid.uuid4().hex[:8]}")
    yield backend
    await backend.close()


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- the backend on its own ------------------------------------------------------------------


async def test_counts_up_to_the_limit_then_refuses_with_the_time_left(limiter: RedisRateLimiter) -> None:
    key = f"send:{uuid.uuid4()}"
    decisions = [await limiter.hit(key, limit=3, window_s=60) for _ in range(4)]
    assert [(d.allowed, d.count) for d in decisions] == [(True, 1), (True, 2), (True, 3), (False, 4)]
    assert [d.retry_after_s for d in decisions[:3]] == [0, 0, 0]
    assert 58 <= decisions[-1].retry_after_s <= 60
    peeked = await limiter.peek(key, limit=3, window_s=60)
    assert not peeked.allowed and peeked.count == 4 and 58 <= peeked.retry_after_s <= 60


async def test_the_window_starts_at_the_first_hit_and_ends_by_itself(limiter: RedisRateLimiter) -> None:
    key = f"short:{uuid.uuid4()}"
    assert (await limiter.hit(key, limit=1, window_s=1)).allowed
    refused = await limiter.hit(key, limit=1, window_s=1)
    assert not refused.allowed and refused.retry_after_s == 1
    await asyncio.sleep(1.3)  # the window of the first hit is over: the next hit starts a new one
    assert await limiter.peek(key, limit=1, window_s=1) == Decision(allowed=True, count=0, retry_after_s=0)
    again = await limiter.hit(key, limit=1, window_s=1)
    assert again.allowed and again.count == 1


async def test_a_later_hit_does_not_extend_the_window(
    limiter: RedisRateLimiter, private_redis: PrivateRedis
) -> None:
    key = f"fixed:{uuid.uuid4()}"
    await limiter.hit(key, limit=5, window_s=100)
    name = f"{limiter_prefix(limiter)}:{_sha256(key)}"
    with private_redis.client() as client:
        client.expire(name, 30)  # as if 70 s had passed since the first hit
        await limiter.hit(key, limit=5, window_s=100)
        assert 28 <= int(client.ttl(name)) <= 30


async def test_peek_counts_nothing_and_clear_forgets(limiter: RedisRateLimiter) -> None:
    key, other = f"peek:{uuid.uuid4()}", f"other:{uuid.uuid4()}"
    for _ in range(3):
        assert await limiter.peek(key, limit=1, window_s=60) == Decision(True, 0, 0)
    assert (await limiter.hit(key, limit=1, window_s=60)).count == 1
    assert not (await limiter.peek(key, limit=1, window_s=60)).allowed
    assert (await limiter.hit(other, limit=1, window_s=60)).allowed  # keys are independent
    await limiter.clear(key)
    assert await limiter.peek(key, limit=1, window_s=60) == Decision(True, 0, 0)
    assert (await limiter.hit(key, limit=1, window_s=60)).count == 1
    assert (await limiter.peek(other, limit=2, window_s=60)).count == 1  # clear touched only its key


async def test_concurrent_hits_are_counted_exactly(limiter: RedisRateLimiter) -> None:
    key = f"race:{uuid.uuid4()}"
    decisions = await asyncio.gather(*(limiter.hit(key, limit=5, window_s=600) for _ in range(30)))
    assert sorted(d.count for d in decisions) == list(range(1, 31))
    assert sum(d.allowed for d in decisions) == 5


async def test_keys_are_hashed_under_the_prefix(
    limiter: RedisRateLimiter, private_redis: PrivateRedis
) -> None:
    name = "signin:pool:account:ada@example.com"
    await limiter.hit(name, limit=5, window_s=60)
    await limiter.hit("signin-ip:pool:203.0.113.7", limit=5, window_s=60)
    keys = private_redis.keys(limiter_prefix(limiter))
    assert keys == sorted(
        f"{limiter_prefix(limiter)}:{_sha256(n)}" for n in (name, "signin-ip:pool:203.0.113.7")
    )
    assert not any("ada" in key or "203.0.113" in key for key in keys)


async def test_the_same_answers_as_the_database_backend(limiter: RedisRateLimiter, tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'counters.db'}")
    try:
        await migrate(engine)
        database = DatabaseRateLimiter(engine)
        answers = [await _scenario(backend) for backend in (database, limiter)]
    finally:
        await engine.dispose()
    assert answers[0] == answers[1]
    assert answers[0][:4] == [(True, 1), (True, 2), (False, 3), (False, 3)]


async def _scenario(backend: RateLimiter) -> list[tuple[bool, int]]:
    """What the flows do: a throttle, the lockout's hit-with-0-then-peek-with-1, a clear."""
    throttle, lock = f"t:{uuid.uuid4()}", f"lock:{uuid.uuid4()}"
    steps = [
        backend.hit(throttle, 2, 60),
        backend.hit(throttle, 2, 60),
        backend.hit(throttle, 2, 60),
        backend.peek(throttle, 3, 60),
        backend.peek(lock, 1, 900),
        backend.hit(lock, 0, 900),
        backend.peek(lock, 1, 900),
    ]
    answers = []
    for step in steps:
        decision = await step
        assert (decision.retry_after_s > 0) == (not decision.allowed)
        answers.append((decision.allowed, decision.count))
    await backend.clear(lock)
    answers.append(((await backend.peek(lock, 1, 900)).allowed, (await backend.peek(lock, 1, 900)).count))
    return answers


async def test_an_unreachable_redis_raises_the_503_error_quickly() -> None:
    backend = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)  # nothing listens
    try:
        for operation in (
            backend.hit("k", 1, 60),
            backend.peek("k", 1, 60),
            backend.clear("k"),
        ):
            with pytest.raises(RateLimitStoreUnavailable) as caught:
                await asyncio.wait_for(operation, timeout=10)  # a hang fails here instead of blocking
            assert caught.value.status_code == 503
            assert caught.value.params == {"retry_after": RETRY_AFTER_S}
        assert await backend.ping() is False
    finally:
        await backend.close()


def limiter_prefix(backend: RedisRateLimiter) -> str:
    return backend._storage.bridge.key_prefix  # what the test handed to RedisRateLimiter


# --- two servers on one PostgreSQL database, counting in one Redis --------------------------


@pytest.fixture(scope="module")
def two_servers(
    private_redis: PrivateRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, RunningServer, str]]:
    folder = tmp_path_factory.mktemp("redis-two")
    prefix = f"keyhall-test-{uuid.uuid4().hex[:8]}"
    env = {"KEYHALL_REDIS_URL": private_redis.url, "KEYHALL_REDIS_KEY_PREFIX": prefix}
    url = create_postgres_database()
    servers: list[RunningServer] = []
    try:
        servers.append(start_server("postgres", url, folder / "first.log", workers=2, env=env))
        servers.append(start_server("postgres", url, folder / "second.log", workers=1, env=env))
        yield servers[0], servers[1], prefix
    finally:
        for server in servers:
            server.stop()
        drop_postgres_database(url)


def _client(server: RunningServer, app: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers={"x-genauth-app-id": app.app_id}, timeout=30)


def test_a_send_throttle_is_shared_by_two_servers(
    two_servers: tuple[RunningServer, RunningServer, str], private_redis: PrivateRedis, unique: str
) -> None:
    first, second, prefix = two_servers
    email = f"shared.{unique}@example.com"
    ip = random_ip()
    with _client(first, first) as one, _client(second, first) as two:
        assert send_email(one, first, email, ip=ip)["statusCode"] == 200
        again = send_email(two, first, email, ip=ip)  # the other server, within the 60 s interval
        assert (again["statusCode"], again.get("apiCode")) == (429, 2100), again
        assert "retry in" in again["message"]
        back = send_email(one, first, email, ip=ip)
        assert (back["statusCode"], back.get("apiCode")) == (429, 2100), back
    assert first.sql("SELECT count(*) FROM outbox_messages")[0][0] >= 1
    assert first.sql("SELECT count(*) FROM rate_limit_counters")[0][0] == 0  # counted in Redis only
    key = f"{prefix}:{_sha256(f'code-send:{first.pool_id}:email:CHANNEL_REGISTER:{email}')}"
    stored = private_redis.keys(prefix)
    assert key in stored
    assert all(re.fullmatch(rf"{re.escape(prefix)}:[0-9a-f]{{64}}", k) for k in stored), stored
    assert not any(email in k or ip in k for k in stored)


def test_the_signin_lockout_is_counted_across_two_servers(
    two_servers: tuple[RunningServer, RunningServer, str], unique: str
) -> None:
    first, second, _ = two_servers
    email = f"lockout.{unique}@example.com"
    with _client(first, first) as one, _client(second, first) as two:
        signed_up = one.post(
            "/api/v3/signup",
            json={"connection": "PASSWORD", "passwordPayload": {"email": email, "password": STRONG}},
        ).json()
        assert signed_up["statusCode"] == 200, signed_up
        answers = [_sign_in((one, two)[i % 2], email, f"wrong-{i}") for i in range(10)]
        assert [a.get("apiCode") for a in answers] == [2333] * 10  # five failures on each server
        for http in (one, two):  # locked on both, even with the right password
            right = _sign_in(http, email, STRONG)
            assert (right["statusCode"], right.get("apiCode")) == (403, 2005), right
    assert first.sql("SELECT count(*) FROM rate_limit_counters")[0][0] == 0


def _sign_in(http: httpx.Client, email: str, password: str) -> dict[str, Any]:
    body = {"connection": "PASSWORD", "passwordPayload": {"email": email, "password": password}}
    return http.post("/api/v3/signin", json=body).json()  # type: ignore[no-any-return]


# --- Redis killed and started again under a running server ----------------------------------


@pytest.fixture
def server_on_doomed_redis(tmp_path: Path) -> Iterator[tuple[RunningServer, PrivateRedis]]:
    doomed = PrivateRedis()
    doomed.start()
    url = create_postgres_database()
    server = None
    try:
        server = start_server(
            "postgres",
            url,
            tmp_path / "server.log",
            workers=1,
            env={"KEYHALL_REDIS_URL": doomed.url, "KEYHALL_REDIS_TIMEOUT_S": "0.5"},
        )
        yield server, doomed
    finally:
        if server is not None:
            server.stop()
        doomed.kill()
        drop_postgres_database(url)


def test_redis_down_fails_closed_with_503_and_recovers_when_it_is_back(
    server_on_doomed_redis: tuple[RunningServer, PrivateRedis], unique: str
) -> None:
    server, doomed = server_on_doomed_redis
    before, during = f"before.{unique}@example.com", f"during.{unique}@example.com"
    # A client timeout of 10 s: a request that hangs on the dead Redis fails the test here.
    with httpx.Client(
        base_url=server.base_url, headers={"x-genauth-app-id": server.app_id}, timeout=10
    ) as http:
        assert send_email(http, server, before)["statusCode"] == 200  # a live pooled connection to Redis
        signed_up = http.post(
            "/api/v3/signup",
            json={"connection": "PASSWORD", "passwordPayload": {"email": before, "password": STRONG}},
        ).json()
        assert signed_up["statusCode"] == 200, signed_up
        assert http.get("/readyz").status_code == 200
        stored = _stored(server)

        doomed.kill()

        response = http.post(
            "/api/v3/send-email",
            json={"channel": "CHANNEL_REGISTER", "email": during},
            headers=trusted_headers(server),
        )
        answer = response.json()
        assert response.status_code == 200 and answer["statusCode"] == 503, answer
        assert "apiCode" not in answer and answer["requestId"]
        assert "rate-limit store (Redis) is unreachable" in answer["message"]
        assert response.headers["retry-after"] == str(RETRY_AFTER_S)
        chinese = http.post(
            "/api/v3/send-email",
            json={"channel": "CHANNEL_REGISTER", "email": during},
            headers=trusted_headers(server, **{"x-genauth-lang": "zh-CN"}),
        ).json()
        assert chinese["statusCode"] == 503 and "Redis" in chinese["message"]
        assert "限流" in chinese["message"]

        refused = _sign_in(http, before, STRONG)  # the lockout cannot be checked: no sign-in either
        assert refused["statusCode"] == 503 and "data" not in refused, refused

        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["statusCode"] == 503 and "Redis" in ready.json()["message"]
        assert _stored(server) == stored  # no code, no message, no login recorded, no token
        assert "rate_limit_store_unreachable" in server.log_text()
        assert before not in server.log_text() and during not in server.log_text()
        other = http.post(  # a sign-up by password needs no counter: it goes on
            "/api/v3/signup",
            json={"connection": "PASSWORD", "passwordPayload": {"email": during, "password": STRONG}},
        ).json()
        assert other["statusCode"] == 200, other
        stored["users"] += 1

        doomed.start()  # the same port; the server is not restarted

        assert http.get("/readyz").status_code == 200
        sent = send_email(http, server, during)
        assert sent["statusCode"] == 200, sent
        assert _stored(server)["outbox_messages"] == stored["outbox_messages"] + 1
        signed_in = _sign_in(http, before, STRONG)
        assert signed_in["statusCode"] == 200 and signed_in["data"]["access_token"], signed_in


def _stored(server: RunningServer) -> dict[str, Any]:
    counts: dict[str, Any] = {
        table: server.sql(f"SELECT count(*) FROM {table}")[0][0]
        for table in (
            "users",
            "verification_codes",
            "outbox_messages",
            "refresh_tokens",
            "rate_limit_counters",
        )
    }
    counts["logins"] = server.sql("SELECT coalesce(sum(logins_count), 0) FROM users")[0][0]
    return counts

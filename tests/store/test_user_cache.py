"""The per-process user cache behind get-profile (keyhall.server.store.user_cache): a signed-in read is
answered from it only while the database says nothing about the user changed. Changes come from other
connections (another process, an operator's SQL): SQLite's data version says so at once, PostgreSQL's
notifications as soon as they arrive; revocations made in this process count at once on both."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text

from keyhall.server.errors import InvalidToken
from keyhall.server.flows.signin import PasswordSignIn
from keyhall.server.identity.app import App
from keyhall.server.services import Services
from keyhall.server.settings import Settings
from keyhall.server.store.db import create_engine, write_transaction
from keyhall.server.store.user_cache import CachedUser, PostgresWatcher, UserCache, open_user_cache
from tests.support.flows import PASSWORD, Running, new_user
from tests.support.private_postgres import private_postgres

NOTIFIED_WITHIN_S = 5.0  # a bound for a PostgreSQL notification to arrive on loopback, not a measurement


async def _signed_in(services: Services, app: App, prefix: str) -> tuple[str, str]:
    """A new user's id and an access token of theirs."""
    email = await new_user(services, app, prefix)
    signed = await services.signin.sign_in_by_password(app, PasswordSignIn(password=PASSWORD, email=email))
    return signed.user.id, signed.tokens.access_token


async def _elsewhere(services: Services, statement: str, **params: Any) -> None:
    """Run ``statement`` on an engine of its own: a change this process's cache was not told of."""
    engine = create_engine(services.settings.database_url)
    try:
        async with write_transaction(engine) as conn:
            await conn.execute(text(statement), params)
    finally:
        await engine.dispose()


async def _until(check: Callable[[], Awaitable[bool]], services: Services) -> None:
    """SQLite must pass ``check`` at once; PostgreSQL once the notification has arrived."""
    if services.engine.dialect.name == "sqlite":
        assert await check()
        return
    deadline = asyncio.get_running_loop().time() + NOTIFIED_WITHIN_S
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "the change was never noticed"
        await asyncio.sleep(0.01)


async def _listening(services: Services) -> None:
    if services.users is not None and isinstance(services.users._watcher, PostgresWatcher):
        await asyncio.wait_for(services.users._watcher.listening(), NOTIFIED_WITHIN_S)


async def test_a_cached_user_is_read_again_after_another_connection_changes_it(running: Running) -> None:
    services, app, _clock = running
    await _listening(services)
    user_id, token = await _signed_in(services, app, "cache.change")
    first = await services.account.signed_in_user(app, token)
    assert await services.account.signed_in_user(app, token) is first  # answered from the cache
    assert first.row.nickname is None

    await _elsewhere(services, "UPDATE users SET nickname = 'Changed' WHERE id = :id", id=user_id)

    async def changed() -> bool:
        return (await services.account.signed_in_user(app, token)).row.nickname == "Changed"

    await _until(changed, services)
    again = await services.account.signed_in_user(app, token)
    assert again is not first and again.memo == {}  # what was derived from the old row went with it

    await _elsewhere(services, "UPDATE users SET status = 'Suspended' WHERE id = :id", id=user_id)

    async def refused() -> bool:
        try:
            await services.account.signed_in_user(app, token)
        except InvalidToken as error:
            return "Suspended" in str(error)
        return False

    await _until(refused, services)


async def test_a_token_revoked_elsewhere_or_here_is_refused(running: Running) -> None:
    services, app, _clock = running
    await _listening(services)
    _user_id, elsewhere = await _signed_in(services, app, "cache.revoked")
    claims = await services.tokens.signed_access_claims(elsewhere, audience=app.id)
    await services.account.signed_in_user(app, elsewhere)
    await _elsewhere(
        services,
        "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES (:jti, '2100-01-01 00:00:00+00:00')",
        jti=claims["jti"],
    )

    async def refused() -> bool:
        try:
            await services.account.signed_in_user(app, elsewhere)
        except InvalidToken:
            return True
        return False

    await _until(refused, services)

    _user_id, here = await _signed_in(services, app, "cache.revoked.here")
    await services.account.signed_in_user(app, here)
    await services.tokens.revoke(app, here)
    with pytest.raises(InvalidToken, match="revoked"):  # no waiting: this process did it
        await services.account.signed_in_user(app, here)


async def test_an_update_made_here_is_read_back_at_once(running: Running) -> None:
    from keyhall.server.flows.account import ProfileUpdate

    services, app, _clock = running
    user_id, token = await _signed_in(services, app, "cache.mine")
    await services.account.signed_in_user(app, token)
    await services.account.update_profile(app, user_id, ProfileUpdate(columns={"nickname": "Mine"}))
    assert (await services.account.signed_in_user(app, token)).row.nickname == "Mine"


@pytest.mark.parametrize("running", ["postgres"], indirect=True)  # SQLite's cache has no connection
async def test_nothing_is_cached_while_the_postgresql_listener_is_down(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    services, app, _clock = running
    monkeypatch.setattr(PostgresWatcher, "RETRY_S", 0.05)
    await _listening(services)
    assert services.users is not None
    watcher = services.users._watcher
    assert isinstance(watcher, PostgresWatcher) and watcher._conn is not None
    _user_id, token = await _signed_in(services, app, "cache.down")
    cached = await services.account.signed_in_user(app, token)
    assert await services.account.signed_in_user(app, token) is cached

    await _elsewhere(services, "SELECT pg_terminate_backend(:pid)", pid=watcher._conn.get_server_pid())
    deadline = asyncio.get_running_loop().time() + NOTIFIED_WITHIN_S
    while watcher.stamp() is not None:  # the listener noticed: cache dropped, stamps refused
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.005)
    assert len(services.users) == 0
    assert await services.account.signed_in_user(app, token) is not cached

    await _listening(services)  # it reconnects by itself, and caching resumes
    back = await services.account.signed_in_user(app, token)
    assert await services.account.signed_in_user(app, token) is back


def test_a_size_of_zero_or_an_in_memory_database_means_no_cache(tmp_path: Any) -> None:
    assert open_user_cache(f"sqlite:///{tmp_path / 'off.db'}", 0, 30.0) is None
    assert open_user_cache("sqlite://", 100, 30.0) is None
    assert open_user_cache("sqlite:///:memory:", 100, 30.0) is None
    assert Settings(secret_key="s" * 40).user_cache_size > 0  # type: ignore[call-arg]  # on by default


class _Stamps:
    """A watcher whose stamp the test moves by hand."""

    def __init__(self) -> None:
        self.value: int | None = 1

    def attach(self, cache: UserCache) -> None:
        pass

    def stamp(self) -> int | None:
        return self.value

    async def close(self) -> None:
        pass


def test_the_cache_is_bounded_expires_and_refuses_a_read_that_raced_a_change() -> None:
    stamps, now = _Stamps(), [0.0]
    cache = UserCache(stamps, max_users=2, max_age_s=30.0, now=lambda: now[0])  # type: ignore[arg-type]
    for user in ("a", "b", "c"):
        cache.put(user, f"jti-{user}", {"id": user}, 1)
    assert len(cache) == 2 and cache.get("a", "jti-a") is None  # the oldest went
    assert isinstance(cache.get("c", "jti-c"), CachedUser)
    assert cache.get("c", "another-token") is None  # a token the cache has not seen checked

    now[0] = 31.0
    assert cache.get("c", "jti-c") is None  # too old

    kept = cache.put("d", "jti-d", {"id": "d"}, 1)
    stamps.value = 2  # something was committed
    assert cache.get("d", "jti-d") is None
    stale = cache.put("e", "jti-e", {"id": "e"}, 1)  # read before the commit, put after it
    assert stale.row == {"id": "e"} and cache.get("e", "jti-e") is None  # served once, not kept
    stamps.value = None  # the watcher cannot vouch for anything
    cache.put("f", "jti-f", {"id": "f"}, None)
    assert cache.get("f", "jti-f") is None and kept is not None


async def test_a_postgresql_listener_that_stops_answering_stops_the_caching(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frozen database (SIGSTOP: as a partition or a hung host) keeps the listening connection open
    and silent; the heartbeat notices, the cache empties and refuses entries, and once the database
    answers again the listener is back by itself."""
    monkeypatch.setattr(PostgresWatcher, "HEARTBEAT_S", 0.1)
    monkeypatch.setattr(PostgresWatcher, "RETRY_S", 0.05)
    with private_postgres(tmp_path / "pg") as cluster:
        watcher = PostgresWatcher(cluster.url(), connect_timeout_s=0.5)
        cache = UserCache(watcher)
        watcher.start()
        try:
            await asyncio.wait_for(watcher.listening(), NOTIFIED_WITHIN_S)
            cache.put("u1", "jti-1", {"id": "u1"}, cache.stamp())
            assert cache.get("u1", "jti-1") is not None
            await asyncio.to_thread(cluster.freeze)
            try:
                deadline = asyncio.get_running_loop().time() + NOTIFIED_WITHIN_S
                while watcher.stamp() is not None:
                    assert asyncio.get_running_loop().time() < deadline, "the silent listener went unnoticed"
                    await asyncio.sleep(0.02)
                assert len(cache) == 0
                cache.put("u1", "jti-1", {"id": "u1"}, cache.stamp())
                assert cache.get("u1", "jti-1") is None  # nothing kept while it cannot vouch
            finally:
                await asyncio.to_thread(cluster.thaw)
            await asyncio.wait_for(watcher.listening(), NOTIFIED_WITHIN_S * 2)
            cache.put("u1", "jti-1", {"id": "u1"}, cache.stamp())
            assert cache.get("u1", "jti-1") is not None
        finally:
            await cache.close()

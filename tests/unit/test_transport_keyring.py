"""Transport key rings and their storage: sealing at rest, per-pool keys, rotation, grace, refresh."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from keyhall._crypto import sm2
from keyhall.sdk._encryption import encrypt_password
from keyhall.server.crypto.cpu import CpuPool
from keyhall.server.crypto.kek import KeyEncryptionKey, SealedDataError
from keyhall.server.crypto.transport import KeyRing, PasswordTransport, RingKey, Sm2TransportKey
from keyhall.server.errors import PasswordDecryptFailed
from keyhall.server.flows.setup import create_pool, initialise
from keyhall.server.flows.transport_keys import (
    TransportKeyStore,
    parse_duration,
    rotate_transport_keys,
    seal_context,
)
from keyhall.server.store.db import create_engine
from tests.support.servers import run_sql

KEK = KeyEncryptionKey.from_secret("unit-test-secret-key-0123456789abcdef")
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


# --- the ring, with keys that count their work ---------------------------------------------------------


@dataclass
class CountingKey:
    """A stand-in key: "decrypts" ``<name>:<text>`` to text, counts every call."""

    name: str
    kind: str = "sm2"
    calls: list[str] = field(default_factory=list)

    @property
    def public_key(self) -> str:
        return f"public-{self.name}"

    def private_text(self) -> str:
        return self.name

    def decrypt(self, value: str) -> bytes:
        self.calls.append(value)
        prefix, _, text = value.partition(":")
        if prefix != self.name:
            raise ValueError("not mine")
        return text.encode()


def ring_of(*entries: tuple[CountingKey, datetime | None]) -> KeyRing:
    rsa = CountingKey("r", kind="rsa")
    return KeyRing(
        "pool",
        [RingKey("k-rsa", rsa), *(RingKey(f"k{n}", key, until) for n, (key, until) in enumerate(entries))],
    )


def test_current_key_first_then_keys_in_grace() -> None:
    current, old = CountingKey("new"), CountingKey("old")
    ring = ring_of((old, NOW + timedelta(hours=1)), (current, None))
    assert ring.public_info()["sm2"] == {"publicKey": "public-new"}
    assert ring.decrypt_password("sm2", "old:from-old", NOW) == "from-old"
    assert ring.decrypt_password("sm2", "new:from-new", NOW) == "from-new"
    assert current.calls[0] == "old:from-old"  # the current key is tried first


def test_every_key_is_tried_whatever_the_outcome() -> None:
    current, old = CountingKey("new"), CountingKey("old")
    ring = ring_of((current, None), (old, NOW + timedelta(hours=1)))
    for value in ("new:ok", "old:ok", "junk", ""):
        try:
            ring.decrypt_password("sm2", value, NOW)
        except PasswordDecryptFailed:
            pass
    assert len(current.calls) == len(old.calls) == 4


def test_oversized_value_still_costs_every_key_and_fails() -> None:
    current, old = CountingKey("new"), CountingKey("old")
    ring = ring_of((current, None), (old, NOW + timedelta(hours=1)))
    with pytest.raises(PasswordDecryptFailed):
        ring.decrypt_password("sm2", "new:" + "x" * 5000, NOW)
    assert len(current.calls) == len(old.calls) == 1


def test_key_is_refused_once_its_grace_period_is_over() -> None:
    current, old = CountingKey("new"), CountingKey("old")
    ring = ring_of((current, None), (old, NOW))
    with pytest.raises(PasswordDecryptFailed):
        ring.decrypt_password("sm2", "old:late", NOW)
    assert ring.decrypt_password("sm2", "old:in time", NOW - timedelta(milliseconds=1)) == "in time"
    assert len(old.calls) == 2  # tried (same work) even when expired


def test_naive_grace_end_from_sqlite_is_utc() -> None:
    current, old = CountingKey("new"), CountingKey("old")
    ring = ring_of((current, None), (old, (NOW + timedelta(minutes=1)).replace(tzinfo=None)))
    assert ring.decrypt_password("sm2", "old:ok", NOW) == "ok"


def test_when_two_keys_give_text_the_longest_wins() -> None:
    # What RSA implicit rejection can do: the wrong key yields a short printable string.
    @dataclass
    class Both(CountingKey):
        def decrypt(self, value: str) -> bytes:
            self.calls.append(value)
            return b"x" if self.name == "new" else b"the real password"

    ring = ring_of((Both("new"), None), (Both("old"), NOW + timedelta(hours=1)))
    assert ring.decrypt_password("sm2", "anything", NOW) == "the real password"


@pytest.mark.parametrize("current", [0, 2])
def test_a_ring_needs_exactly_one_current_key_per_kind(current: int) -> None:
    keys = [(CountingKey(f"k{n}"), None) for n in range(current)]
    with pytest.raises(ValueError, match="exactly one current sm2 key"):
        ring_of(*keys)


def test_sm2_key_refuses_a_public_key_of_another_pair() -> None:
    private, _ = sm2.generate_keypair()
    _, other_public = sm2.generate_keypair()
    with pytest.raises(ValueError):
        Sm2TransportKey(private, other_public)


# --- storage -----------------------------------------------------------------------------------


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, str, str]]:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    engine = create_engine(url)
    pool_id = (await initialise(engine, lambda: NOW, KEK)).pool_id
    yield engine, url, pool_id
    await engine.dispose()


def key_rows(url: str, pool_id: str) -> list[tuple[str, str, str, int, str, str | None]]:
    rows = run_sql(
        url,
        "SELECT id, kind, private_key_sealed, generation, public_key, accept_until FROM transport_keys "
        "WHERE pool_id = :p ORDER BY kind, generation",
        p=pool_id,
    )
    return [tuple(row) for row in rows]  # type: ignore[misc]


async def test_init_makes_sealed_keys_per_pool(database: tuple[AsyncEngine, str, str]) -> None:
    engine, url, pool_id = database
    rows = await asyncio.to_thread(key_rows, url, pool_id)
    assert [(row[1], row[3], row[5]) for row in rows] == [("rsa", 1, None), ("sm2", 1, None)]
    ring = await TransportKeyStore(engine, KEK, lambda: NOW, CpuPool(1)).load(pool_id)
    for key_id, kind, sealed, _, public, _ in rows:
        private = ring.current(kind).key.private_text()
        # Never in clear: neither the PEM nor the SM2 hex appears in the stored column.
        assert sealed.startswith(f"kh1.{KEK.kid}.")
        assert "PRIVATE KEY" not in sealed and private not in sealed
        assert KEK.open(sealed, seal_context(kind, pool_id, key_id)).decode() == private
        assert ring.current(kind).key.public_key == public


async def test_a_sealed_key_moved_to_another_row_does_not_open(
    database: tuple[AsyncEngine, str, str],
) -> None:
    engine, url, pool_id = database
    rows = await asyncio.to_thread(key_rows, url, pool_id)
    rsa_row, sm2_row = rows
    await asyncio.to_thread(
        run_sql,
        url,
        "UPDATE transport_keys SET private_key_sealed = :s WHERE id = :i",
        s=rsa_row[2],
        i=sm2_row[0],
    )
    with pytest.raises(SealedDataError):
        await TransportKeyStore(engine, KEK, lambda: NOW, CpuPool(1)).load(pool_id)


async def test_another_secret_key_cannot_load_the_keys(database: tuple[AsyncEngine, str, str]) -> None:
    engine, _, pool_id = database
    other = KeyEncryptionKey.from_secret("another-secret-key-0123456789abcdefgh")
    with pytest.raises(SealedDataError, match="another secret key"):
        await TransportKeyStore(engine, other, lambda: NOW, CpuPool(1)).load(pool_id)


async def test_pool_without_keys_gets_them_once_from_concurrent_loads(
    database: tuple[AsyncEngine, str, str],
) -> None:
    engine, url, _ = database
    pool_id = await create_pool(engine, "later", lambda: NOW)  # no KEK: no keys yet
    assert await asyncio.to_thread(key_rows, url, pool_id) == []
    stores = [TransportKeyStore(engine, KEK, lambda: NOW, CpuPool(1)) for _ in range(3)]
    rings = await asyncio.gather(*(store.load(pool_id) for store in stores))
    assert len({ring.public_info()["sm2"]["publicKey"] for ring in rings}) == 1
    assert len(await asyncio.to_thread(key_rows, url, pool_id)) == 2


async def test_rotation_keeps_old_keys_for_the_grace_period(database: tuple[AsyncEngine, str, str]) -> None:
    engine, url, pool_id = database
    store = TransportKeyStore(engine, KEK, lambda: NOW, CpuPool(1))
    before = await store.load(pool_id)
    old_public = before.public_info()
    ciphertext = encrypt_password("Old-Key-Password", "sm2", old_public["sm2"]["publicKey"])

    (rotation,) = await rotate_transport_keys(engine, KEK, lambda: NOW, grace=timedelta(hours=2))
    assert rotation.pool_id == pool_id and rotation.removed == 0
    assert [(k.kind, k.generation, k.retired, k.accept_until) for k in rotation.kinds] == [
        ("rsa", 2, 1, NOW + timedelta(hours=2)),
        ("sm2", 2, 1, NOW + timedelta(hours=2)),
    ]
    after = await store.load(pool_id)
    assert after.public_info() != old_public
    assert after.decrypt_password("sm2", ciphertext, NOW + timedelta(hours=1)) == "Old-Key-Password"
    with pytest.raises(PasswordDecryptFailed):
        after.decrypt_password("sm2", ciphertext, NOW + timedelta(hours=2))

    later = NOW + timedelta(hours=3)
    (again,) = await rotate_transport_keys(engine, KEK, lambda: later, pool_id=pool_id, grace=timedelta(0))
    assert again.removed == 2 and [k.generation for k in again.kinds] == [3, 3]
    assert sorted(row[3] for row in await asyncio.to_thread(key_rows, url, pool_id)) == [2, 2, 3, 3]


async def test_rotation_refuses_an_unknown_pool_and_a_negative_grace(
    database: tuple[AsyncEngine, str, str],
) -> None:
    engine, _, _ = database
    with pytest.raises(LookupError):
        await rotate_transport_keys(engine, KEK, lambda: NOW, pool_id="nope")
    with pytest.raises(ValueError):
        await rotate_transport_keys(engine, KEK, lambda: NOW, grace=timedelta(seconds=-1))


async def test_transport_reloads_a_ring_only_when_older_than_the_refresh_interval(
    database: tuple[AsyncEngine, str, str],
) -> None:
    engine, _, pool_id = database
    store = TransportKeyStore(engine, KEK, lambda: NOW, CpuPool(1))
    loads: list[str | None] = []

    async def counting_load(pool: str | None) -> KeyRing:
        loads.append(pool)
        return await store.load(pool)

    slow = PasswordTransport(counting_load, CpuPool(1), lambda: NOW, refresh_s=3600)
    await slow.start()
    first = slow.public_info(None)
    assert slow.public_info(pool_id) == first
    await rotate_transport_keys(engine, KEK, lambda: NOW)
    await slow.ring(pool_id)
    assert slow.public_info(pool_id) == first and loads == [None]  # cached: no reload yet

    fast = PasswordTransport(store.load, CpuPool(1), lambda: NOW, refresh_s=0.001)
    await fast.start()
    rotated = fast.public_info(None)
    assert rotated != first
    old_ciphertext = encrypt_password("Still-Accepted-1", "rsa", first["rsa"]["publicKey"])
    assert await fast.plain_password(pool_id, "rsa", old_ciphertext) == "Still-Accepted-1"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 604800), ("0", 0), ("1.5h", 5400), (" 12 ", 12)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "h", "-1h", "abc", "nan", "inf", "1e300d", "5w"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)

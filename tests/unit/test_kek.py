"""The key-encryption key: sealed values open only with the same secret and context."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from keyhall.server.crypto.kek import (
    KeyEncryptionKey,
    SealedDataError,
    SecretKeyError,
    ensure_key_file,
    read_key_file,
)
from keyhall.server.settings import Settings

SECRET = "correct horse battery staple, long enough"


def test_seal_round_trip_hides_the_plaintext() -> None:
    kek = KeyEncryptionKey.from_secret(SECRET)
    sealed = kek.seal(b"-----BEGIN PRIVATE KEY-----", "transport:rsa:1")
    assert sealed.startswith(f"kh1.{kek.kid}.") and b"PRIVATE" not in sealed.encode()
    assert kek.open(sealed, "transport:rsa:1") == b"-----BEGIN PRIVATE KEY-----"
    assert sealed != kek.seal(b"-----BEGIN PRIVATE KEY-----", "transport:rsa:1")  # fresh nonce


def test_another_secret_is_named_in_the_error() -> None:
    sealed = KeyEncryptionKey.from_secret(SECRET).seal(b"x", "ctx")
    other = KeyEncryptionKey.from_secret(SECRET + "!")
    with pytest.raises(SealedDataError, match="sealed with another secret key"):
        other.open(sealed, "ctx")


@pytest.mark.parametrize("tamper", ["context", "body", "prefix"])
def test_moved_or_altered_values_do_not_open(tamper: str) -> None:
    kek = KeyEncryptionKey.from_secret(SECRET)
    sealed = kek.seal(b"secret", "transport:sm2:1")
    context = "transport:sm2:1"
    if tamper == "context":
        context = "transport:sm2:2"
    elif tamper == "body":
        sealed = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    else:
        sealed = "kh9" + sealed[3:]
    with pytest.raises(SealedDataError):
        kek.open(sealed, context)


def test_short_secrets_are_refused_with_advice() -> None:
    with pytest.raises(SecretKeyError, match="at least 32 characters"):
        KeyEncryptionKey.from_secret("short")


def test_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "keyhall.key"
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: ensure_key_file(path), range(8)))
    assert sum(created for _, created in results) == 1
    assert len({kek.kid for kek, _ in results}) == 1
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["keyhall.key"]
    assert read_key_file(path).kid == results[0][0].kid


def test_missing_key_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(SecretKeyError, match="KEYHALL_SECRET_KEY or run `keyhall init`"):
        read_key_file(tmp_path / "absent.key")


def test_settings_pick_the_secret_then_the_file_beside_sqlite(tmp_path: Path) -> None:
    by_secret = Settings(secret_key=SECRET, database_url=f"sqlite:///{tmp_path / 'k.db'}")
    assert by_secret.key_encryption_key().kid == KeyEncryptionKey.from_secret(SECRET).kid
    by_file = Settings(database_url=f"sqlite:///{tmp_path / 'k.db'}")
    assert by_file.key_file_path == tmp_path / "keyhall.key"
    created = by_file.key_encryption_key(create=True)
    assert by_file.key_encryption_key().kid == created.kid
    assert Settings(database_url="postgresql://db/x").key_file_path == Path("keyhall.key")
    assert "correct horse" not in repr(by_secret)

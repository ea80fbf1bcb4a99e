"""The key-encryption key (KEK): how private keys stored in the database are encrypted at rest.

Transport private keys (RSA, SM2) and token signing keys live in the database so that every server
process on every host shares them. A copy of the database (a backup, a dump, a replica) must not hand
out those keys, so they are stored *sealed* with AES-256-GCM under a key that is not in the database:

* ``KEYHALL_SECRET_KEY`` (any string of at least 32 characters), the choice for several hosts, or
* a key file (``KEYHALL_SECRET_KEY_FILE``, default ``keyhall.key`` beside an SQLite database, else in
  the working directory) that ``keyhall init`` creates with mode 0600 when no secret key is given.

The AES key is derived from the secret with HKDF-SHA256, so any high-entropy string works. A sealed value
is ``kh1.<kid>.<base64url(nonce || ciphertext || tag)>``: ``kid`` names the KEK (a fingerprint, not the
key), so that a server started with the wrong secret fails with a message saying so instead of a bare
authentication error. Each value is bound to its place with associated data (e.g. ``transport:rsa:<id>``)
so that a sealed key cannot be swapped into another row.

Hand-written on top of ``cryptography``'s AESGCM and HKDF rather than Fernet: Fernet has no associated
data and uses AES-128-CBC + HMAC; this is the same idea with AEAD and a key id.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "MIN_SECRET_LENGTH",
    "KeyEncryptionKey",
    "SealedDataError",
    "SecretKeyError",
    "ensure_key_file",
    "read_key_file",
]

MIN_SECRET_LENGTH = 32
_PREFIX = "kh1"
_NONCE_BYTES = 12


class SecretKeyError(ValueError):
    """The secret key is missing, too short or unreadable; the message says what to do."""


class SealedDataError(ValueError):
    """A sealed value cannot be opened: another KEK sealed it, or it was altered or moved."""


def _derive(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


@dataclass(frozen=True)
class KeyEncryptionKey:
    """AES-256-GCM with a key derived from the server's secret key."""

    kid: str
    _aead: AESGCM = field(repr=False, compare=False)
    _mac_root: bytes = field(default=b"", repr=False, compare=False)

    @classmethod
    def from_secret(cls, secret: str) -> KeyEncryptionKey:
        if len(secret) < MIN_SECRET_LENGTH:
            raise SecretKeyError(
                f"the secret key must be at least {MIN_SECRET_LENGTH} characters "
                "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        raw = secret.encode("utf-8")
        kid = hashlib.sha256(_derive(raw, b"keyhall kek id v1")).hexdigest()[:16]
        return cls(
            kid=kid, _aead=AESGCM(_derive(raw, b"keyhall kek v1")), _mac_root=_derive(raw, b"keyhall mac v1")
        )

    def mac_key(self, purpose: str) -> bytes:
        """A 32-byte key for HMAC, derived from the secret for ``purpose`` (same on every host)."""
        return _derive(self._mac_root, f"keyhall mac:{purpose}".encode())

    def seal(self, plaintext: bytes, context: str) -> str:
        """``plaintext`` encrypted and bound to ``context`` (which must be given again to open it)."""
        nonce = os.urandom(_NONCE_BYTES)
        body = nonce + self._aead.encrypt(nonce, plaintext, self._aad(context))
        return f"{_PREFIX}.{self.kid}.{base64.urlsafe_b64encode(body).decode('ascii')}"

    def open(self, sealed: str, context: str) -> bytes:
        """The plaintext of a value made by :meth:`seal` with the same KEK and context."""
        prefix, _, rest = sealed.partition(".")
        kid, _, body = rest.partition(".")
        if prefix != _PREFIX or not kid or not body:
            raise SealedDataError(f"{context}: not a sealed value")
        if kid != self.kid:
            raise SealedDataError(
                f"{context} was sealed with another secret key (key id {kid}; this server's is {self.kid}): "
                "start the server with the KEYHALL_SECRET_KEY or key file the database was set up with"
            )
        try:
            raw = base64.urlsafe_b64decode(body.encode("ascii"))
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], self._aad(context))
        except (ValueError, InvalidTag):
            raise SealedDataError(f"{context}: the sealed value was altered or belongs elsewhere") from None

    @staticmethod
    def _aad(context: str) -> bytes:
        return f"keyhall:{context}".encode()


def read_key_file(path: Path) -> KeyEncryptionKey:
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise SecretKeyError(
            f"no secret key: set KEYHALL_SECRET_KEY or run `keyhall init` to create the key file {path}"
        ) from None
    except OSError as error:
        raise SecretKeyError(f"cannot read the key file {path}: {error.strerror}") from None
    return KeyEncryptionKey.from_secret(secret)


def ensure_key_file(path: Path) -> tuple[KeyEncryptionKey, bool]:
    """The KEK in ``path``, creating the file (mode 0600, new random secret) if missing.

    Returns the key and whether the file was created here. Safe when several processes start at once:
    the file is written under a temporary name and linked into place, so no one reads a half-written key.
    """
    if path.exists():
        return read_key_file(path), False
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(temporary, path)
            created = True
        except FileExistsError:
            created = False
    finally:
        temporary.unlink(missing_ok=True)
    return read_key_file(path), created

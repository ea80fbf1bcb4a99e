"""Password transport encryption on the server side (``options.passwordEncryptType``).

Clients may send a password in the clear (``none``), encrypted with RSAES-PKCS1-v1_5 (``rsa``,
base64) or with SM2 (``sm2``, hex C1C3C2, see ``keyhall._crypto.sm2``), under the public keys of the
application's user pool (``GET /api/v3/system``).

* :class:`RsaTransportKey`, :class:`Sm2TransportKey` -- one private key each: its public half as clients
  fetch it, and ``decrypt`` (sync, CPU-bound).
* :class:`KeyRing` -- the keys of one pool: per kind the current key, then older ones still accepted
  until the end of their grace period (set by ``keyhall keys rotate``).
* :class:`PasswordTransport` -- what flows call: ``plain_password(pool_id, type, value)``. It keeps each
  pool's ring in memory and reloads it from the database when it is older than the refresh interval, so
  that every process on every host picks a rotation up without a restart.
* :class:`TransportKeys` -- a fresh RSA + SM2 pair, for set-up and tests.

Every way decryption can fail is one error, ``PasswordDecryptFailed``. With OpenSSL's implicit
rejection a bad PKCS#1 v1.5 padding does not raise but yields pseudo-random bytes, so a plaintext
that is empty, not UTF-8 or holds a control character (category Cc) counts as a failure too. (UTF-8
here includes JSEncrypt's encoding of characters outside the BMP as surrogate pairs, CESU-8.) A
rare pseudo-random result can still pass these checks; it is then simply a wrong password.

Same answer, same time class: a ciphertext is tried with *every* key of its kind in the ring, even
after one has worked, and a value that cannot even be parsed is replaced by a stand-in that costs a
full private-key operation. How long a request takes then depends on the pool's number of keys, not on
what was sent or why it failed. Decryption costs about 0.2 ms per RSA key and 1.2 ms per SM2 key: it runs
in the bounded CPU pool.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keyhall._crypto import sm2
from keyhall.server.clock import Clock
from keyhall.server.crypto.cpu import CpuPool
from keyhall.server.errors import InvalidArgument, PasswordDecryptFailed

__all__ = [
    "KINDS",
    "MAX_ENCRYPTED_PASSWORD_LENGTH",
    "RSA_KEY_SIZE",
    "KeyRing",
    "PasswordTransport",
    "RingKey",
    "RsaTransportKey",
    "Sm2TransportKey",
    "TransportKey",
    "TransportKeys",
    "generate_key",
    "load_key",
]

log = structlog.get_logger("keyhall.server")

KINDS = ("rsa", "sm2")
RSA_KEY_SIZE = 2048
# Far above any real ciphertext (RSA-4096 is 684 base64 characters, SM2 of a 1 KiB password 2240
# hex characters); bounds the pure-Python SM3 work one request can cause.
MAX_ENCRYPTED_PASSWORD_LENGTH = 4096

_HEX = re.compile(r"[0-9a-fA-F]*")
_SM2_POINT_BYTES = 64
_SM2_HASH_BYTES = 32
# Stands in for an SM2 ciphertext that cannot be parsed: C1 is the generator (a point on the curve, so
# the full scalar multiplication runs), C3 is zeros (so it never verifies).
_SM2_STAND_IN = f"{sm2.SM2_P256.gx:064x}{sm2.SM2_P256.gy:064x}" + "00" * _SM2_HASH_BYTES + "5a" * 16


def _password_text(plaintext: bytes) -> str:
    """The decrypted bytes as a password, or ``ValueError`` if they cannot be one."""
    try:
        text = plaintext.decode("utf-8")  # strict: rejects invalid UTF-8 and encoded surrogates
    except UnicodeDecodeError:
        # JSEncrypt encodes each UTF-16 unit on its own, so a character outside the BMP (an emoji)
        # arrives as two encoded surrogates (CESU-8). Accept surrogates in valid pairs only: the UTF-16
        # round trip joins a pair and refuses a lone one.
        joined = plaintext.decode("utf-8", "surrogatepass").encode("utf-16-le", "surrogatepass")
        text = joined.decode("utf-16-le")
    if not text or any(unicodedata.category(char) == "Cc" for char in text):
        raise ValueError("decrypted password is empty or holds a control character")
    return text


# --- one key ------------------------------------------------------------------------------------


class TransportKey(Protocol):
    kind: str

    @property
    def public_key(self) -> str: ...

    def private_text(self) -> str: ...

    def decrypt(self, value: str) -> bytes: ...


class RsaTransportKey:
    """An RSA private key (PKCS#8 PEM); clients get the public half as SubjectPublicKeyInfo PEM."""

    kind = "rsa"

    def __init__(self, private_key_pem: str) -> None:
        key = serialization.load_pem_private_key(private_key_pem.encode("ascii"), password=None)
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < RSA_KEY_SIZE:
            raise ValueError(f"the transport RSA key must be an RSA key of at least {RSA_KEY_SIZE} bits")
        # Loading a PEM costs milliseconds: keep the key object.
        self._key = key
        self._size = (key.key_size + 7) // 8
        self._public_pem = (
            key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode("ascii")
        )
        # A value below the modulus, decrypted in place of a ciphertext that cannot be parsed.
        self._stand_in = b"\x00" + b"\x5a" * (self._size - 1)

    @classmethod
    def generate(cls) -> RsaTransportKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cls(pem.decode("ascii"))

    def __repr__(self) -> str:
        return f"RsaTransportKey({self._key.key_size} bits)"

    @property
    def public_key(self) -> str:
        return self._public_pem

    @property
    def key_size(self) -> int:
        return self._key.key_size

    def private_text(self) -> str:
        """The private key as PKCS#8 PEM, for sealing."""
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")

    def decrypt(self, value: str) -> bytes:
        """The plaintext of base64 ``value``; ``ValueError`` (after the same work) if there is none."""
        try:
            ciphertext = base64.b64decode(value, validate=True)
            if not 0 < len(ciphertext) <= self._size:
                raise ValueError("RSA ciphertext has the wrong length")
        except ValueError:
            self._key.decrypt(self._stand_in, padding.PKCS1v15())
            raise ValueError("RSA ciphertext is malformed") from None
        # JSEncrypt drops the leading zero bytes of a ciphertext whose integer is small: put them back.
        return self._key.decrypt(ciphertext.rjust(self._size, b"\x00"), padding.PKCS1v15())


class Sm2TransportKey:
    """An SM2 private key (64 hex characters); clients get the public key as hex ``04 || X || Y``."""

    kind = "sm2"

    def __init__(self, private_key: str, public_key: str | None = None) -> None:
        derived = sm2.derive_public_key(private_key)  # ValueError for a malformed key
        if public_key is not None and public_key != derived:
            raise ValueError("the SM2 public key must be lower-case hex 04 || X || Y of the private key")
        self._private = private_key
        self._public = derived

    @classmethod
    def generate(cls) -> Sm2TransportKey:
        private, public = sm2.generate_keypair()
        return cls(private, public)

    def __repr__(self) -> str:
        return f"Sm2TransportKey({self._public[:18]}...)"

    @property
    def public_key(self) -> str:
        return self._public

    def private_text(self) -> str:
        return self._private

    def decrypt(self, value: str) -> bytes:
        """The plaintext of hex ``value``; ``ValueError`` (after the same work) if there is none."""
        if not _sm2_well_formed(value):
            try:
                sm2.decrypt(self._private, _SM2_STAND_IN)
            except ValueError:
                pass
            raise ValueError("SM2 ciphertext is malformed")
        return sm2.decrypt(self._private, value)


def _sm2_well_formed(value: str) -> bool:
    """Hex of a C1 (with or without ``04``) that lies on the curve, followed by C3 and a non-empty C2."""
    if len(value) % 2 or not _HEX.fullmatch(value):
        return False
    data = bytes.fromhex(value)
    readings = [data[1:], data] if data[:1] == b"\x04" else [data]
    for reading in readings:
        if len(reading) > _SM2_POINT_BYTES + _SM2_HASH_BYTES:
            x = int.from_bytes(reading[:32], "big")
            y = int.from_bytes(reading[32:_SM2_POINT_BYTES], "big")
            if sm2.SM2_P256.on_curve(x, y):
                return True
    return False


def generate_key(kind: str) -> TransportKey:
    """A new private key of ``kind`` ("rsa" or "sm2")."""
    if kind == "rsa":
        return RsaTransportKey.generate()
    if kind == "sm2":
        return Sm2TransportKey.generate()
    raise ValueError(f"unknown transport key kind {kind!r}")


def load_key(kind: str, private_text: str) -> TransportKey:
    """The key of ``kind`` from its private text (PEM for RSA, hex for SM2)."""
    if kind == "rsa":
        return RsaTransportKey(private_text)
    if kind == "sm2":
        return Sm2TransportKey(private_text)
    raise ValueError(f"unknown transport key kind {kind!r}")


# --- a pool's keys ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RingKey:
    """One key of a ring: ``accept_until`` None for the current key of its kind, else its grace end."""

    key_id: str
    key: TransportKey
    accept_until: datetime | None = None

    def accepted_at(self, now: datetime) -> bool:
        return self.accept_until is None or now < _aware(self.accept_until)


@dataclass(frozen=True)
class KeyRing:
    """The transport keys of one pool: per kind the current key first, then older ones in their grace.

    Built from database rows by ``keyhall.server.flows.transport_keys``; holds no database handle.
    """

    pool_id: str
    keys: Sequence[RingKey]
    _by_kind: dict[str, list[RingKey]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_kind: dict[str, list[RingKey]] = {kind: [] for kind in KINDS}
        for entry in self.keys:
            by_kind[entry.key.kind].append(entry)
        for kind, entries in by_kind.items():
            current = [entry for entry in entries if entry.accept_until is None]
            if len(current) != 1:
                raise ValueError(f"pool {self.pool_id} must have exactly one current {kind} key")
            entries.sort(key=lambda entry: (entry.accept_until is not None, entry.key_id))
        object.__setattr__(self, "_by_kind", by_kind)

    def current(self, kind: str) -> RingKey:
        return self._by_kind[kind][0]

    def public_info(self) -> dict[str, dict[str, str]]:
        """The current public keys as clients fetch them: RSA as SubjectPublicKeyInfo PEM, SM2 as hex."""
        return {kind: {"publicKey": self.current(kind).key.public_key} for kind in KINDS}

    def decrypt_password(self, encrypt_type: str | None, value: str, now: datetime | None = None) -> str:
        """The password a client sent, decrypted as ``encrypt_type`` says (sync, CPU-bound).

        ``None``, ``""`` and ``"none"`` return ``value`` unchanged. Raises ``InvalidArgument`` for an
        unknown type and ``PasswordDecryptFailed`` for anything that does not decrypt to a password
        with the current key or a key still in its grace period at ``now`` (default: the system time).
        """
        if encrypt_type is None or encrypt_type in ("", "none"):
            return value
        if encrypt_type not in KINDS:
            raise InvalidArgument(field="options.passwordEncryptType", reason="must be one of none, rsa, sm2")
        moment = now or datetime.now(UTC)
        if len(value) > MAX_ENCRYPTED_PASSWORD_LENGTH:
            value = ""  # still goes through every key below, as a stand-in, so that it costs the same
        found: list[str] = []
        for entry in self._by_kind[encrypt_type]:  # every key, always: see the module docstring
            try:
                text = _password_text(entry.key.decrypt(value))
            except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors too
                continue
            if entry.accepted_at(moment):
                found.append(text)
        if not found:
            raise PasswordDecryptFailed()
        # Under RSA implicit rejection a ciphertext made for one key "decrypts" under another to random
        # bytes of random length, which pass as text about once in 500 tries, nearly always as one to
        # four characters. When two keys of a ring both give text, the longest is the real password.
        return max(found, key=len)


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes: they are UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- a fixed pair (set-up, tests) ---------------------------------------------------------------


@dataclass(frozen=True)
class TransportKeys:
    """One RSA and one SM2 key pair, current, as a ring of their own: what a new pool starts with."""

    rsa_private_key_pem: str = field(repr=False)
    sm2_private_key: str = field(repr=False)
    sm2_public_key: str
    _ring: KeyRing = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rsa_key = RsaTransportKey(self.rsa_private_key_pem)
        sm2_key = Sm2TransportKey(self.sm2_private_key, self.sm2_public_key)
        ring = KeyRing("", [RingKey("rsa", rsa_key), RingKey("sm2", sm2_key)])
        object.__setattr__(self, "_ring", ring)

    @classmethod
    def generate(cls) -> TransportKeys:
        """Fresh key pairs: RSA-2048 and SM2."""
        rsa_key = RsaTransportKey.generate()
        sm2_key = Sm2TransportKey.generate()
        return cls(rsa_key.private_text(), sm2_key.private_text(), sm2_key.public_key)

    @property
    def _rsa_key(self) -> rsa.RSAPrivateKey:
        key = self._ring.current("rsa").key
        assert isinstance(key, RsaTransportKey)
        return key._key

    def public_info(self) -> dict[str, dict[str, str]]:
        return self._ring.public_info()

    def decrypt_password(self, encrypt_type: str | None, value: str) -> str:
        return self._ring.decrypt_password(encrypt_type, value)


# --- what flows call ----------------------------------------------------------------------------

#: Loads a pool's ring from storage (None: the default pool), creating missing keys.
RingLoader = Callable[[str | None], Awaitable[KeyRing]]


@dataclass
class _Cached:
    ring: KeyRing
    loaded_at: float  # time.monotonic()


class PasswordTransport:
    """What every flow that takes a password calls: the plain password a client sent for a pool.

    Sign-up, sign-in and password changes all go through :meth:`plain_password`, so that which keys a
    pool has (and which older ones are still accepted) is decided in one place. Rings are kept in memory
    and reloaded when older than ``refresh_s`` (a reload reuses parsed keys: one SELECT).
    """

    def __init__(self, loader: RingLoader, cpu: CpuPool, clock: Clock, refresh_s: float = 30.0) -> None:
        self._loader = loader
        self._cpu = cpu
        self._clock = clock
        self._refresh_s = refresh_s
        self._rings: dict[str, _Cached] = {}
        self._default_pool_id: str | None = None
        self._locks: dict[str | None, asyncio.Lock] = {}

    async def start(self) -> None:
        """Load the default pool's ring now (fails at start-up, not in a request, on a wrong KEK)."""
        await self.ring(None)

    async def ring(self, pool_id: str | None) -> KeyRing:
        """The ring of ``pool_id`` (None: the default pool), reloaded if older than the refresh interval."""
        cached = self._cached(pool_id)
        if cached is not None and time.monotonic() - cached.loaded_at < self._refresh_s:
            return cached.ring
        lock = self._locks.setdefault(pool_id, asyncio.Lock())
        async with lock:
            cached = self._cached(pool_id)  # another request may have reloaded it meanwhile
            if cached is not None and time.monotonic() - cached.loaded_at < self._refresh_s:
                return cached.ring
            try:
                ring = await self._loader(pool_id)
            except Exception as exc:
                if cached is None:
                    raise
                # Keep answering with the keys we have; try the database again after the interval.
                log.warning(
                    "transport_keys_refresh_failed", pool_id=cached.ring.pool_id, error=type(exc).__name__
                )
                cached.loaded_at = time.monotonic()
                return cached.ring
            self._rings[ring.pool_id] = _Cached(ring, time.monotonic())
            if pool_id is None:
                self._default_pool_id = ring.pool_id
            return ring

    def public_info(self, pool_id: str | None) -> dict[str, dict[str, str]]:
        """The public keys a client of ``pool_id`` (None: the default pool) encrypts with.

        Answers from memory: ``await ring(pool_id)`` first to have them loaded and fresh.
        """
        cached = self._cached(pool_id)
        if cached is None:
            raise LookupError(f"the transport keys of pool {pool_id} are not loaded")
        return cached.ring.public_info()

    async def plain_password(self, pool_id: str, encrypt_type: str | None, value: str) -> str:
        """``value`` decrypted as ``encrypt_type`` says (``None``/``none``: as it is).

        Raises ``InvalidArgument`` for an unknown type and ``PasswordDecryptFailed`` for anything that
        does not decrypt to a password with one of the pool's accepted keys.
        """
        kind = (encrypt_type or "none").lower()
        if kind == "none":
            return value
        if kind not in KINDS:
            raise InvalidArgument(field="options.passwordEncryptType", reason="must be one of none, rsa, sm2")
        ring = await self.ring(pool_id)
        # RSA/SM2 decryption costs milliseconds of CPU: keep it off the event loop, in the bounded pool.
        return await self._cpu.run(ring.decrypt_password, kind, value, self._clock())

    def _cached(self, pool_id: str | None) -> _Cached | None:
        key = pool_id if pool_id is not None else self._default_pool_id
        return None if key is None else self._rings.get(key)

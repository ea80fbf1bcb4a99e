"""SM2 public-key encryption (GB/T 32918.4) in the sm-crypto ``cipherMode=1`` wire format.

Shared by the SDK and the server. A ciphertext is lower-case hex of ``C1 || C3 || C2``:

* ``C1`` -- the ephemeral point ``x1 || y1`` (64 bytes), *without* the ``04`` prefix;
* ``C3`` -- ``SM3(x2 || M || y2)`` (32 bytes);
* ``C2`` -- ``M`` XOR ``KDF(x2 || y2, len(M))``, KDF built on SM3 with a 32-bit big-endian counter
  starting at 1.

Public keys are hex ``04 || X || Y`` (130 characters), private keys 64 hex characters.

SM3, the KDF and the scalar multiplication come from ``gmssl``. Its ``CryptSM2.encrypt`` and
``CryptSM2.decrypt`` are deliberately *not* used: ``encrypt`` draws the nonce ``k`` from the
``random`` module (Mersenne Twister, predictable) and may yield ``k = 0`` or ``k >= n``; ``decrypt``
never checks ``C3`` nor that ``C1`` lies on the curve. This module assembles the scheme itself,
drawing ``k`` from ``secrets`` and verifying both.
"""

from __future__ import annotations

import hmac
import re
import secrets
from typing import NamedTuple

from gmssl import sm3
from gmssl.sm2 import CryptSM2, default_ecc_table

__all__ = ["decrypt", "derive_public_key", "encrypt", "generate_keypair"]

_P = int(default_ecc_table["p"], 16)
_A = int(default_ecc_table["a"], 16)
_B = int(default_ecc_table["b"], 16)
_N = int(default_ecc_table["n"], 16)
_G_HEX: str = default_ecc_table["g"].lower()

_COORD_BYTES = 32
_POINT_BYTES = 2 * _COORD_BYTES
_HASH_BYTES = 32
_MIN_CIPHERTEXT_BYTES = _POINT_BYTES + _HASH_BYTES + 1
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")

# Only gmssl's scalar multiplication (``_kg``, Jacobian double-and-add over hex strings) is used from
# this object; it reads nothing but the curve table, so one shared instance is thread-safe. ``_kg`` is
# a private method, hence the ``gmssl<4`` pin. It returns ``None`` for the point at infinity and is
# wrong for ``k = 0`` (it returns the input point), so callers pass ``1 <= k < n`` only.
_CURVE_OPS = CryptSM2(private_key="", public_key="", mode=1)


class _Point(NamedTuple):
    """An affine curve point as the 32-byte big-endian coordinates gmssl and the wire format use."""

    x: bytes
    y: bytes

    def raw(self) -> bytes:
        return self.x + self.y


def _sm3(data: bytes) -> bytes:
    """SM3 digest of ``data`` (gmssl's ``sm3_hash`` takes a list of ints, which it mutates)."""
    return bytes.fromhex(sm3.sm3_hash(list(data)))


def _kdf(shared: _Point, length: int) -> bytes:
    """``length`` bytes of KDF(x2 || y2): SM3 over the secret and a 32-bit counter from 1."""
    return bytes.fromhex(sm3.sm3_kdf(shared.raw().hex().encode("ascii"), length))


def _on_curve(x: int, y: int) -> bool:
    return x < _P and y < _P and (y * y - (x * x * x + _A * x + _B)) % _P == 0


def _parse_point(raw: bytes) -> _Point | None:
    """``raw`` (64 bytes ``x || y``) as a point, or ``None`` if it does not lie on the curve."""
    if len(raw) != _POINT_BYTES:
        return None
    x, y = raw[:_COORD_BYTES], raw[_COORD_BYTES:]
    if not _on_curve(int.from_bytes(x, "big"), int.from_bytes(y, "big")):
        return None
    return _Point(x, y)


def _multiply(k: int, point: _Point | None = None) -> _Point | None:
    """``k * point`` (the base point by default); ``None`` for the point at infinity."""
    base = _G_HEX if point is None else point.raw().hex()
    product = _CURVE_OPS._kg(k, base)
    if product is None:
        return None
    raw = bytes.fromhex(product)
    return _Point(raw[:_COORD_BYTES], raw[_COORD_BYTES:])


def _parse_private_key(private_key_hex: str) -> int:
    if len(private_key_hex) != 2 * _COORD_BYTES or not _HEX.fullmatch(private_key_hex):
        raise ValueError("SM2 private key must be 64 hex characters")
    d = int(private_key_hex, 16)
    if not 1 <= d <= _N - 2:
        raise ValueError("SM2 private key out of range")
    return d


def _parse_public_key(public_key_hex: str) -> _Point:
    text = public_key_hex
    if len(text) == 2 + 2 * _POINT_BYTES and text[:2] == "04":
        text = text[2:]
    if len(text) != 2 * _POINT_BYTES or not _HEX.fullmatch(text):
        raise ValueError("SM2 public key must be hex 04 || X || Y")
    point = _parse_point(bytes.fromhex(text))
    if point is None:
        raise ValueError("SM2 public key is not a point on the curve")
    return point


def generate_keypair() -> tuple[str, str]:
    """A new key pair: (private key as 64 hex characters, public key as hex ``04 || X || Y``)."""
    d = 1 + secrets.randbelow(_N - 2)  # 1 <= d <= n - 2, as GB/T 32918.1 requires
    public = _multiply(d)
    assert public is not None  # d is below the group order, so d*G is never infinity
    return f"{d:064x}", "04" + public.raw().hex()


def derive_public_key(private_key_hex: str) -> str:
    """The public key (hex ``04 || X || Y``) of a private key; ``ValueError`` if it is malformed."""
    public = _multiply(_parse_private_key(private_key_hex))
    assert public is not None
    return "04" + public.raw().hex()


def encrypt(public_key_hex: str, plaintext: bytes) -> str:
    """Encrypt non-empty ``plaintext`` to lower-case hex ``C1 || C3 || C2`` (C1 without ``04``)."""
    if not plaintext:
        raise ValueError("SM2 cannot encrypt an empty message")
    recipient = _parse_public_key(public_key_hex)
    while True:
        k = 1 + secrets.randbelow(_N - 1)  # 1 <= k <= n - 1, from a CSPRNG
        c1 = _multiply(k)
        shared = _multiply(k, recipient)
        if c1 is None or shared is None:  # unreachable for a point of prime order n; stay safe
            continue
        mask = _kdf(shared, len(plaintext))
        if any(mask):  # an all-zero key stream must be drawn again (GB/T 32918.4, step A5)
            break
    c2 = bytes(m ^ t for m, t in zip(plaintext, mask, strict=True))
    c3 = _sm3(shared.x + plaintext + shared.y)
    return (c1.raw() + c3 + c2).hex()


def _open(d: int, data: bytes) -> bytes | None:
    """The message of ``data`` (``C1`` without ``04``), trying C1C3C2 then C1C2C3, or ``None``."""
    if len(data) < _MIN_CIPHERTEXT_BYTES:
        return None
    c1 = _parse_point(data[:_POINT_BYTES])
    if c1 is None:  # also guards against invalid-curve attacks on the private key
        return None
    shared = _multiply(d, c1)
    if shared is None:
        return None
    body = data[_POINT_BYTES:]
    mask = _kdf(shared, len(body) - _HASH_BYTES)
    if not any(mask):
        return None
    layouts = (
        (body[:_HASH_BYTES], body[_HASH_BYTES:]),  # C1 C3 C2 (sm-crypto cipherMode=1)
        (body[-_HASH_BYTES:], body[:-_HASH_BYTES]),  # C1 C2 C3 (cipherMode=0), defensively
    )
    for c3, c2 in layouts:
        message = bytes(c ^ t for c, t in zip(c2, mask, strict=True))
        if hmac.compare_digest(_sm3(shared.x + message + shared.y), c3):
            return message
    return None


def decrypt(private_key_hex: str, ciphertext_hex: str) -> bytes:
    """Decrypt hex ``C1 || C3 || C2`` (``C1`` with or without ``04``; C1C2C3 also accepted).

    Raises ``ValueError`` for a malformed key or ciphertext, and whenever ``C3`` does not verify.
    """
    d = _parse_private_key(private_key_hex)
    if not _HEX.fullmatch(ciphertext_hex):
        raise ValueError("SM2 ciphertext is not hex")
    data = bytes.fromhex(ciphertext_hex)
    # sm-crypto omits the 04 point prefix, other encoders keep it. A C1 that starts with byte 04 by
    # chance cannot be told apart by length, so try both readings: the wrong one fails the on-curve
    # check at once, before any scalar multiplication.
    candidates = [data[1:], data] if data[:1] == b"\x04" else [data]
    for candidate in candidates:
        message = _open(d, candidate)
        if message is not None:
            return message
    raise ValueError("SM2 decryption failed")

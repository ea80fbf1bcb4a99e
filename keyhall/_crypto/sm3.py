"""SM3 (GB/T 32905-2016, GM/T 0004-2012) and the SM3-based key derivation function of SM2.

``sm3`` and ``kdf`` use OpenSSL's SM3 through ``hashlib`` when the OpenSSL that Python was built
against has it (``IMPLEMENTATION == "openssl"``), and the pure-Python implementation below otherwise
(``"python"``): some builds leave SM3 out (RHEL's and other FIPS-minded ones), and the SDK must work
everywhere. The pure-Python SM3 is hand-written because no maintained package offers one that is fast:
gmssl's works on lists of byte values and was the slowest part of an SM2 decryption after the scalar
multiplication. Here the
32-bit words are plain Python ints (16 per block from ``struct``), the rounds run in two loops (rounds
0-15 and 16-63, whose boolean functions differ, so there is no test per round) and the constants
``T_j <<< j`` are precomputed. A 64-byte block costs about 0.13 ms on this project's machine, about a
quarter of what gmssl needs.

``kdf`` is the key derivation function of GB/T 32918.4 section 5.4.3: ``SM3(Z || ct)`` for a 32-bit
big-endian counter ``ct`` from 1, concatenated and cut to the length asked for. The full 64-byte
blocks of ``Z`` (the 64 bytes ``x2 || y2`` of an SM2 shared point are exactly one) are compressed once
and the state reused for every counter value.

No branch and no table index depends on the data hashed (SM2 hashes its shared secret here), only on
its length; CPython's int operations may still take slightly longer for words of 2**30 and above.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable

__all__ = ["DIGEST_SIZE", "IMPLEMENTATION", "kdf", "python_kdf", "python_sm3", "sm3"]

DIGEST_SIZE = 32
_BLOCK = 64
_MASK = 0xFFFFFFFF
_IV = (0x7380166F, 0x4914B2B9, 0x172442D7, 0xDA8A0600, 0xA96F30BC, 0x163138AA, 0xE38DEE4D, 0xB0FB0E4E)
_WORDS = struct.Struct(">16I")
_DIGEST = struct.Struct(">8I")


def _rotl(x: int, n: int) -> int:
    n %= 32
    return ((x << n) | (x >> (32 - n))) & _MASK


# T_j rotated left by j bits (mod 32), as step SS1 of the compression function uses it.
_T = tuple(_rotl(0x79CC4519 if j < 16 else 0x7A879D8A, j) for j in range(64))

_State = tuple[int, int, int, int, int, int, int, int]


def _compress(state: _State, data: bytes) -> _State:
    """The state after compressing ``data`` (a whole number of 64-byte blocks)."""
    v0, v1, v2, v3, v4, v5, v6, v7 = state
    t = _T
    m = _MASK
    for offset in range(0, len(data), _BLOCK):
        w = list(_WORDS.unpack_from(data, offset))
        for j in range(16, 68):
            x = w[j - 16] ^ w[j - 9] ^ (((w[j - 3] << 15) | (w[j - 3] >> 17)) & m)
            x ^= (((x << 15) | (x >> 17)) ^ ((x << 23) | (x >> 9))) & m  # P1
            y = w[j - 13]
            w.append(x ^ (((y << 7) | (y >> 25)) & m) ^ w[j - 6])
        a, b, c, d, e, f, g, h = v0, v1, v2, v3, v4, v5, v6, v7
        for j in range(16):
            a12 = ((a << 12) | (a >> 20)) & m
            ss1 = (a12 + e + t[j]) & m
            ss1 = ((ss1 << 7) | (ss1 >> 25)) & m
            tt1 = ((a ^ b ^ c) + d + (ss1 ^ a12) + (w[j] ^ w[j + 4])) & m
            tt2 = ((e ^ f ^ g) + h + ss1 + w[j]) & m
            d = c
            c = ((b << 9) | (b >> 23)) & m
            b = a
            a = tt1
            h = g
            g = ((f << 19) | (f >> 13)) & m
            f = e
            e = tt2 ^ ((((tt2 << 9) | (tt2 >> 23)) ^ ((tt2 << 17) | (tt2 >> 15))) & m)  # P0
        for j in range(16, 64):
            a12 = ((a << 12) | (a >> 20)) & m
            ss1 = (a12 + e + t[j]) & m
            ss1 = ((ss1 << 7) | (ss1 >> 25)) & m
            tt1 = (((a & b) | (c & (a | b))) + d + (ss1 ^ a12) + (w[j] ^ w[j + 4])) & m
            tt2 = ((g ^ (e & (f ^ g))) + h + ss1 + w[j]) & m
            d = c
            c = ((b << 9) | (b >> 23)) & m
            b = a
            a = tt1
            h = g
            g = ((f << 19) | (f >> 13)) & m
            f = e
            e = tt2 ^ ((((tt2 << 9) | (tt2 >> 23)) ^ ((tt2 << 17) | (tt2 >> 15))) & m)  # P0
        v0 ^= a
        v1 ^= b
        v2 ^= c
        v3 ^= d
        v4 ^= e
        v5 ^= f
        v6 ^= g
        v7 ^= h
    return v0, v1, v2, v3, v4, v5, v6, v7


def _finish(state: _State, tail: bytes, total_length: int) -> bytes:
    """The digest, from the state after the full blocks, the bytes after them and the message length."""
    padding_length = (_BLOCK - 9 - len(tail)) % _BLOCK
    last = tail + b"\x80" + bytes(padding_length) + (8 * total_length).to_bytes(8, "big")
    return _DIGEST.pack(*_compress(state, last))


def python_sm3(data: bytes) -> bytes:
    """The 32-byte SM3 digest of ``data``, in pure Python."""
    full = len(data) - len(data) % _BLOCK
    return _finish(_compress(_IV, data[:full]), data[full:], len(data))


def python_kdf(z: bytes, length: int) -> bytes:
    """``length`` bytes of KDF(Z): ``SM3(Z || 1) || SM3(Z || 2) || ...``, counters as 4 bytes big-endian."""
    _check_length(length)
    full = len(z) - len(z) % _BLOCK
    state = _compress(_IV, z[:full])
    tail = z[full:]
    total = len(z) + 4
    blocks = -(-length // DIGEST_SIZE)
    stream = b"".join(_finish(state, tail + ct.to_bytes(4, "big"), total) for ct in range(1, blocks + 1))
    return stream[:length]


def _check_length(length: int) -> None:
    if length < 0:
        raise ValueError("KDF length must not be negative")


def _openssl_sm3(data: bytes) -> bytes:
    """The SM3 digest of ``data`` from OpenSSL."""
    return hashlib.new("sm3", data).digest()


def _openssl_kdf(z: bytes, length: int) -> bytes:
    """``python_kdf`` on OpenSSL's SM3: the state after ``Z`` is copied for each counter value."""
    _check_length(length)
    prefix = hashlib.new("sm3", z)
    parts = []
    for ct in range(1, -(-length // DIGEST_SIZE) + 1):
        block = prefix.copy()
        block.update(ct.to_bytes(4, "big"))
        parts.append(block.digest())
    return b"".join(parts)[:length]


def _has_openssl_sm3() -> bool:
    try:
        return hashlib.new("sm3", b"abc").digest() == python_sm3(b"abc")
    except ValueError:  # "unsupported hash type"
        return False


sm3: Callable[[bytes], bytes]
kdf: Callable[[bytes, int], bytes]
if _has_openssl_sm3():
    IMPLEMENTATION = "openssl"
    sm3, kdf = _openssl_sm3, _openssl_kdf
else:
    IMPLEMENTATION = "python"
    sm3, kdf = python_sm3, python_kdf

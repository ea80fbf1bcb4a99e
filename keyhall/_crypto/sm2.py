"""SM2 public-key encryption (GB/T 32918.4) in the sm-crypto ``cipherMode=1`` wire format.

Shared by the SDK and the server. A ciphertext is lower-case hex of ``C1 || C3 || C2``:

* ``C1`` -- the ephemeral point ``x1 || y1`` (64 bytes), *without* the ``04`` prefix;
* ``C3`` -- ``SM3(x2 || M || y2)`` (32 bytes);
* ``C2`` -- ``M`` XOR ``KDF(x2 || y2, len(M))``, KDF built on SM3 with a 32-bit big-endian counter
  starting at 1 (``keyhall._crypto.sm3``).

Public keys are hex ``04 || X || Y`` (130 characters), private keys 64 hex characters. ``decrypt``
also accepts ``C1`` with its ``04`` prefix and the older ``C1 || C2 || C3`` order; it checks that
``C1`` lies on the curve and that ``C3`` matches. Nonces come from ``secrets``.

Why hand-written: no maintained library with a wheel does SM2 encryption (``cryptography`` has no SM2
curve; gmssl is pure Python and several times slower, and its own ``encrypt``/``decrypt`` take the
nonce from ``random`` and check neither ``C3`` nor the point). This module is plain Python ints
(SM3 comes from OpenSSL when Python has it, see ``sm3``), made fast by its algorithms:

* Jacobian coordinates (no inversion per step; one ``pow(z, -1, p)`` at the end), with the cheaper
  doubling for ``a = -3`` that the SM2 curve allows, written out in the hot loop;
* for an arbitrary point (decryption, and ``k * P_B`` in encryption): width-5 w-NAF, the odd multiples
  ``P, 3P, ..., 15P`` made affine with one shared inversion so that every addition is a mixed one;
* for the generator (key generation, ``C1`` in encryption): a table of ``j * 16**i * G``
  (``j`` = 1..15, one row per 4-bit window), built once per process on first use (about 20 ms), so
  that ``k * G`` is at most 64 additions and no doubling.

The figures (ours against gmssl, and against one argon2id hash) are in docs/benchmarks.md. The curve
is a parameter (``Curve``) so that the worked example of GB/T 32918.4 appendix A, which uses its own
test curve, runs as a test.

Side channels -- what is and is not protected. The private key ``d`` is used only in ``decrypt``, as the
scalar of ``d * C1``. Each call splits it afresh into ``(d - s) mod n`` and ``s``, ``s`` drawn uniformly
from ``[1, n - 1]`` by ``secrets``, and computes ``(d - s) * C1 + s * C1`` with the digits of both parts
interleaved over one chain of doublings (additive scalar splitting). Each part on its own is uniformly
random, so the sequence of additions, and with it the running time, is drawn afresh on every call
instead of being a fixed function of ``d``: timing repeated decryptions from outside (simple timing
analysis by a remote client) no longer measures the digits of ``d``. It costs about a fifth more than an
unprotected multiplication (twice the additions, the same doublings); blinding as ``d + r*n`` would need
a long ``r``, because SM2's ``n`` has long runs of one bits that leave parts of ``d`` unmasked under a
short one. Not protected: CPython's int arithmetic is not constant time (its cost depends on the
operands' sizes), and the digit-dependent branches and table lookups of one execution are visible to an
attacker on the same machine (cache timing, power, EM), who could combine the two parts' traces; the
encryption nonce (client side, used once) and key generation (once, at set-up) are not protected.
Against a local attacker use a hardware-backed implementation. ``C3`` is compared in constant time and
every failure is the same ``ValueError``.
"""

from __future__ import annotations

import functools
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from keyhall._crypto.sm3 import kdf, sm3

__all__ = ["SM2_P256", "Curve", "decrypt", "derive_public_key", "encrypt", "generate_keypair"]

Affine = tuple[int, int]
"""A curve point ``(x, y)``; the point at infinity is ``None`` where it can occur."""
_Jacobian = tuple[int, int, int]
"""``(X, Y, Z)`` standing for ``(X / Z**2, Y / Z**3)``; ``Z == 0`` is the point at infinity."""

_WNAF_WIDTH = 5  # digits odd in [-15, 15]: 8 precomputed points, about one addition per 6 bits
_BASE_WINDOW = 4  # bits per row of the generator table: 15 points per row
_HASH_BYTES = 32
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")


@dataclass(frozen=True, eq=False)
class Curve:
    """A short Weierstrass curve ``y^2 = x^3 + a*x + b`` over the prime field ``p``, with generator
    ``(gx, gy)`` of prime order ``n`` and cofactor 1 (as the SM2 curves have)."""

    name: str
    p: int
    a: int
    b: int
    n: int
    gx: int
    gy: int

    def __post_init__(self) -> None:
        if not self.on_curve(self.gx, self.gy):
            raise ValueError(f"the generator of {self.name} is not on the curve")

    @property
    def size(self) -> int:
        """Bytes per coordinate (and per private key)."""
        return (self.p.bit_length() + 7) // 8

    @functools.cached_property
    def _a_is_minus_3(self) -> bool:
        return (self.a + 3) % self.p == 0

    def on_curve(self, x: int, y: int) -> bool:
        """Whether ``(x, y)``, coordinates reduced modulo ``p``, is a point of the curve."""
        p = self.p
        return 0 <= x < p and 0 <= y < p and (y * y - (x * x * x + self.a * x + self.b)) % p == 0

    # --- Jacobian arithmetic --------------------------------------------------------------------

    def _double(self, point: _Jacobian) -> _Jacobian:
        x, y, z = point
        p = self.p
        yy = y * y % p
        zz = z * z % p
        if self._a_is_minus_3:
            m = 3 * (x - zz) * (x + zz) % p
        else:
            m = (3 * x * x + self.a * zz * zz) % p
        s = 4 * x * yy % p
        x3 = (m * m - 2 * s) % p
        return x3, (m * (s - x3) - 8 * yy * yy) % p, 2 * y * z % p

    def _add_affine(self, point: _Jacobian, other: Affine) -> _Jacobian:
        """``point + other`` for an affine ``other`` (a mixed addition); any special case handled."""
        x1, y1, z1 = point
        if z1 == 0:
            return other[0], other[1], 1
        p = self.p
        z1z1 = z1 * z1 % p
        h = other[0] * z1z1 % p - x1
        r = other[1] * z1 * z1z1 % p - y1
        if h == 0:  # same x: the same point (double it) or its negative (the sum is infinity)
            return self._double(point) if r == 0 else (1, 1, 0)
        hh = h * h % p
        hhh = h * hh % p
        v = x1 * hh % p
        x3 = (r * r - hhh - 2 * v) % p
        return x3, (r * (v - x3) - y1 * hhh) % p, z1 * h % p

    def _to_affine(self, point: _Jacobian) -> Affine | None:
        x, y, z = point
        if z == 0:
            return None
        p = self.p
        z_inv = pow(z, -1, p)
        zz_inv = z_inv * z_inv % p
        return x * zz_inv % p, y * zz_inv * z_inv % p

    def _all_to_affine(self, points: list[_Jacobian]) -> list[Affine]:
        """Finite Jacobian points made affine with one inversion (Montgomery's trick)."""
        p = self.p
        prefix = [1]
        for _, _, z in points:
            prefix.append(prefix[-1] * z % p)
        inverse = pow(prefix[-1], -1, p)
        result: list[Affine] = [(0, 0)] * len(points)
        for i in range(len(points) - 1, -1, -1):
            x, y, z = points[i]
            z_inv = inverse * prefix[i] % p
            inverse = inverse * z % p
            zz_inv = z_inv * z_inv % p
            result[i] = (x * zz_inv % p, y * zz_inv * z_inv % p)
        return result

    # --- scalar multiplication ------------------------------------------------------------------

    def multiply(self, k: int, point: Affine) -> Affine | None:
        """``k * point`` for any ``k >= 0`` and any point of the curve; ``None`` for infinity."""
        return self.multiply_sum((k,), point)

    def multiply_sum(self, scalars: Sequence[int], point: Affine) -> Affine | None:
        """``(k1 + k2 + ...) * point``, the scalars' w-NAF digits interleaved over shared doublings.

        A secret scalar split into random parts is multiplied without its own digits ever steering
        the additions. ``None`` for the point at infinity.
        """
        if any(k < 0 for k in scalars):
            raise ValueError("scalars must not be negative")
        expansions = [_wnaf(k, _WNAF_WIDTH) for k in scalars if k]
        if not expansions:
            return None
        table = self._odd_multiples(point)
        length = max(map(len, expansions))
        for digits in expansions:
            digits.extend([0] * (length - len(digits)))
        if not self._a_is_minus_3:  # the general case, by the book
            acc: _Jacobian = (1, 1, 0)
            for i in range(length - 1, -1, -1):
                acc = self._double(acc)
                for digits in expansions:
                    if digits[i]:
                        acc = self._add_affine(acc, table[digits[i]])
            return self._to_affine(acc)
        # SM2's own curve (a = -3): the same loop with the doubling written out, as it runs 256 times
        # per multiplication and a call costs about a tenth of it.
        p, add = self.p, self._add_affine
        x, y, z = 1, 1, 0
        for i in range(length - 1, -1, -1):
            yy = y * y % p
            zz = z * z % p
            m = 3 * (x - zz) * (x + zz) % p
            s = 4 * x * yy % p
            x = (m * m - 2 * s) % p
            z = 2 * y * z % p
            y = (m * (s - x) - 8 * yy * yy) % p
            for digits in expansions:
                if digits[i]:
                    x, y, z = add((x, y, z), table[digits[i]])
        return self._to_affine((x, y, z))

    def _odd_multiples(self, point: Affine) -> list[Affine]:
        """``table[j] = j * point`` for the odd ``j`` of a w-NAF digit, negative ones as Python indexes."""
        doubled = self._to_affine(self._double((point[0], point[1], 1)))
        odd: list[_Jacobian] = [(point[0], point[1], 1)]
        if doubled is not None:
            for _ in range(1, 1 << (_WNAF_WIDTH - 2)):
                odd.append(self._add_affine(odd[-1], doubled))
        if doubled is None or any(z == 0 for _, _, z in odd):
            # Some j * point with j <= 16 is infinity: never so on a curve of prime order n > 16.
            raise ValueError("point of small order")
        table: list[Affine] = [(0, 0)] * (1 << _WNAF_WIDTH)
        for i, (x, y) in enumerate(self._all_to_affine(odd)):
            table[2 * i + 1] = (x, y)
            table[-(2 * i + 1)] = (x, (self.p - y) % self.p)
        return table

    @functools.cached_property
    def _generator_table(self) -> list[list[Affine]]:
        """Row ``i`` holds ``j * 16**i * G`` for ``j`` = 1..15, affine."""
        rows: list[list[Affine]] = []
        base: Affine = (self.gx, self.gy)
        for _ in range(-(-self.n.bit_length() // _BASE_WINDOW)):
            multiples: list[_Jacobian] = [(base[0], base[1], 1)]
            for _ in range(2, 1 << _BASE_WINDOW):
                multiples.append(self._add_affine(multiples[-1], base))
            row = self._all_to_affine(multiples)
            rows.append(row)
            following = self._to_affine(self._add_affine(multiples[-1], base))
            assert following is not None  # 16**(i + 1) * G is never infinity: n is an odd prime
            base = following
        return rows

    def multiply_base(self, k: int) -> Affine | None:
        """``k * G`` for ``0 <= k < n``, from the generator table; ``None`` for ``k = 0``."""
        if not 0 <= k < self.n:
            raise ValueError("scalar out of range")
        acc: _Jacobian = (1, 1, 0)
        mask = (1 << _BASE_WINDOW) - 1
        add = self._add_affine
        for row in self._generator_table:
            digit = k & mask
            if digit:
                acc = add(acc, row[digit - 1])
            k >>= _BASE_WINDOW
        return self._to_affine(acc)


def _wnaf(k: int, width: int) -> list[int]:
    """The width-``width`` non-adjacent form of ``k > 0``, least significant digit first."""
    digits: list[int] = []
    full, half = 1 << width, 1 << (width - 1)
    while k:
        if k & 1:
            digit = k & (full - 1)
            if digit >= half:
                digit -= full
            k -= digit
        else:
            digit = 0
        digits.append(digit)
        k >>= 1
    return digits


SM2_P256 = Curve(
    name="SM2 (GB/T 32918.5)",
    p=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF,
    a=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC,
    b=0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93,
    n=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123,
    gx=0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    gy=0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
)


# --- encoding ----------------------------------------------------------------------------------


def _point_bytes(curve: Curve, point: Affine) -> bytes:
    return point[0].to_bytes(curve.size, "big") + point[1].to_bytes(curve.size, "big")


def _parse_point(curve: Curve, raw: bytes) -> Affine | None:
    """``raw`` (``x || y``) as a point, or ``None`` if it does not lie on the curve."""
    if len(raw) != 2 * curve.size:
        return None
    x, y = int.from_bytes(raw[: curve.size], "big"), int.from_bytes(raw[curve.size :], "big")
    return (x, y) if curve.on_curve(x, y) else None


def _parse_private_key(curve: Curve, private_key_hex: str) -> int:
    if len(private_key_hex) != 2 * curve.size or not _HEX.fullmatch(private_key_hex):
        raise ValueError("SM2 private key must be 64 hex characters")
    d = int(private_key_hex, 16)
    if not 1 <= d <= curve.n - 2:
        raise ValueError("SM2 private key out of range")
    return d


def _parse_public_key(curve: Curve, public_key_hex: str) -> Affine:
    text = public_key_hex
    if len(text) == 2 + 4 * curve.size and text[:2] == "04":
        text = text[2:]
    if len(text) != 4 * curve.size or not _HEX.fullmatch(text):
        raise ValueError("SM2 public key must be hex 04 || X || Y")
    point = _parse_point(curve, bytes.fromhex(text))
    if point is None:
        raise ValueError("SM2 public key is not a point on the curve")
    return point


# --- the scheme --------------------------------------------------------------------------------


def _seal(curve: Curve, recipient: Affine, plaintext: bytes, k: int) -> bytes | None:
    """``C1 || C3 || C2`` (C1 without ``04``) for nonce ``k``; ``None`` if ``k`` must be drawn again."""
    c1 = curve.multiply_base(k)
    shared = curve.multiply(k, recipient)
    if c1 is None or shared is None:  # unreachable for 1 <= k < n and a point of prime order n
        return None
    x2, y2 = (c.to_bytes(curve.size, "big") for c in shared)
    mask = kdf(x2 + y2, len(plaintext))
    if not any(mask):  # an all-zero key stream must be drawn again (GB/T 32918.4, step A5)
        return None
    c2 = (int.from_bytes(plaintext, "big") ^ int.from_bytes(mask, "big")).to_bytes(len(plaintext), "big")
    return _point_bytes(curve, c1) + sm3(x2 + plaintext + y2) + c2


def _open(curve: Curve, d: int, data: bytes) -> bytes | None:
    """The message of ``data`` (``C1`` without ``04``), trying C1C3C2 then C1C2C3, or ``None``."""
    point_bytes = 2 * curve.size
    if len(data) < point_bytes + _HASH_BYTES + 1:
        return None
    c1 = _parse_point(curve, data[:point_bytes])
    if c1 is None:  # also guards against invalid-curve attacks on the private key
        return None
    # d as the sum of two parts, each uniformly random on its own, fresh on every call.
    share = 1 + secrets.randbelow(curve.n - 1)
    shared = curve.multiply_sum(((d - share) % curve.n, share), c1)
    if shared is None:
        return None
    x2, y2 = (c.to_bytes(curve.size, "big") for c in shared)
    body = data[point_bytes:]
    length = len(body) - _HASH_BYTES
    stream = int.from_bytes(kdf(x2 + y2, length), "big")
    if not stream:
        return None
    layouts = (
        (body[:_HASH_BYTES], body[_HASH_BYTES:]),  # C1 C3 C2 (sm-crypto cipherMode=1)
        (body[-_HASH_BYTES:], body[:-_HASH_BYTES]),  # C1 C2 C3 (cipherMode=0), defensively
    )
    for c3, c2 in layouts:
        message = (int.from_bytes(c2, "big") ^ stream).to_bytes(length, "big")
        if hmac.compare_digest(sm3(x2 + message + y2), c3):
            return message
    return None


def _decrypt(curve: Curve, d: int, data: bytes) -> bytes:
    # sm-crypto omits the 04 point prefix, other encoders keep it. A C1 that starts with byte 04 by
    # chance cannot be told apart by length, so try both readings: the wrong one fails the on-curve
    # check at once, before any scalar multiplication.
    candidates = [data[1:], data] if data[:1] == b"\x04" else [data]
    for candidate in candidates:
        message = _open(curve, d, candidate)
        if message is not None:
            return message
    raise ValueError("SM2 decryption failed")


def generate_keypair() -> tuple[str, str]:
    """A new key pair: (private key as 64 hex characters, public key as hex ``04 || X || Y``)."""
    d = 1 + secrets.randbelow(SM2_P256.n - 2)  # 1 <= d <= n - 2, as GB/T 32918.1 requires
    return f"{d:064x}", _public_hex(d)


def derive_public_key(private_key_hex: str) -> str:
    """The public key (hex ``04 || X || Y``) of a private key; ``ValueError`` if it is malformed."""
    return _public_hex(_parse_private_key(SM2_P256, private_key_hex))


def _public_hex(d: int) -> str:
    public = SM2_P256.multiply_base(d)
    assert public is not None  # d is below the group order, so d*G is never infinity
    return "04" + _point_bytes(SM2_P256, public).hex()


def encrypt(public_key_hex: str, plaintext: bytes) -> str:
    """Encrypt non-empty ``plaintext`` to lower-case hex ``C1 || C3 || C2`` (C1 without ``04``)."""
    if not plaintext:
        raise ValueError("SM2 cannot encrypt an empty message")
    recipient = _parse_public_key(SM2_P256, public_key_hex)
    while True:
        k = 1 + secrets.randbelow(SM2_P256.n - 1)  # 1 <= k <= n - 1, from a CSPRNG
        sealed = _seal(SM2_P256, recipient, plaintext, k)
        if sealed is not None:
            return sealed.hex()


def decrypt(private_key_hex: str, ciphertext_hex: str) -> bytes:
    """Decrypt hex ``C1 || C3 || C2`` (``C1`` with or without ``04``; C1C2C3 also accepted).

    Raises ``ValueError`` for a malformed key or ciphertext, and whenever ``C3`` does not verify.
    """
    d = _parse_private_key(SM2_P256, private_key_hex)
    if not _HEX.fullmatch(ciphertext_hex):
        raise ValueError("SM2 ciphertext is not hex")
    return _decrypt(SM2_P256, d, bytes.fromhex(ciphertext_hex))

"""keyhall._crypto.sm3 and the curve arithmetic of keyhall._crypto.sm2, against published vectors and gmssl.

The scheme-level behaviour (wire format, tampering, OpenSSL interop, the server's use) is pinned in
test_transport_crypto.py; this module checks the primitives underneath it.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from collections.abc import Callable

import pytest
from gmssl import sm3 as gmssl_sm3
from gmssl.sm2 import CryptSM2

from keyhall._crypto import sm2, sm3

SM2 = sm2.SM2_P256
G = (SM2.gx, SM2.gy)

# GB/T 32905-2016 (GM/T 0004-2012) appendix A: the two worked examples.
SM3_EXAMPLES = [
    (b"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"),
    (b"abcd" * 16, "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"),
]

# GB/T 32918.4-2016 (GM/T 0003.4-2012) appendix A.2: SM2 encryption on the Fp-256 test curve of the
# standard's examples (not the SM2 curve of part 5). The values were taken from the standard as
# reproduced in public test suites, e.g. Bouncy Castle's SM2EngineTest ("encryption standard",
# dB = 1649AB77..., k = 4C62EEFD...); the ciphertext there is 04 || C1 || C2 || C3.
EXAMPLE_CURVE = sm2.Curve(
    name="GB/T 32918 example Fp-256",
    p=0x8542D69E4C044F18E8B92435BF6FF7DE457283915C45517D722EDB8B08F1DFC3,
    a=0x787968B4FA32C3FD2417842E73BBFEFF2F3C848B6831D7E0EC65228B3937E498,
    b=0x63E4C6D3B23B0C849CF84241484BFE48F61D59A5B16BA06E6E12D1DA27C5249A,
    n=0x8542D69E4C044F18E8B92435BF6FF7DD297720630485628D5AE74EE7C32E79B7,
    gx=0x421DEBD61B62EAB6746434EBC3CC315E32220B3BADD50BDC4C4E6C147FEDD43D,
    gy=0x0680512BCBB42C07D47349D2153B70C4E5D7FDFCBFA36EA1A85841B9E46E09A2,
)
EXAMPLE_MESSAGE = b"encryption standard"
EXAMPLE_D = 0x1649AB77A00637BD5E2EFE283FBF353534AA7F7CB89463F208DDBC2920BB0DA0
EXAMPLE_PUBLIC = (
    0x435B39CCA8F3B508C1488AFC67BE491A0F7BA07E581A0E4849A5CF70628A7E0A,
    0x75DDBA78F15FEECB4C7895E2C1CDF5FE01DEBB2CDBADF45399CCF77BBA076A42,
)
EXAMPLE_K = 0x4C62EEFD6ECFC2B95B92FD6C3D9575148AFA17425546D49018E5388D49DD7B4F
EXAMPLE_C1 = (
    "245C26FB68B1DDDDB12C4B6BF9F2B6D5FE60A383B0D18D1C4144ABF17F6252E7"
    "76CB9264C2A7E88E52B19903FDC47378F605E36811F5C07423A24B84400F01B8"
)
EXAMPLE_C2 = "650053A89B41C418B0C3AAD00D886C00286467"
EXAMPLE_C3 = "9C3D7360C30156FAB7C80A0276712DA9D8094A634B766D3A285E07480653426D"


def _gmssl_point(k: int, point: tuple[int, int]) -> tuple[int, int] | None:
    """``k * point`` by gmssl's own scalar multiplication (valid for 1 <= k < n)."""
    product = CryptSM2(private_key="", public_key="", mode=1)._kg(k, f"{point[0]:064x}{point[1]:064x}")
    if product is None:
        return None
    return int(product[:64], 16), int(product[64:], 16)


def _gmssl(private_key: str, public_key: str, mode: int) -> CryptSM2:
    crypt = CryptSM2(private_key=private_key, public_key=public_key, mode=mode)
    crypt.public_key = public_key[2:]  # CryptSM2's lstrip("04") would eat leading 0/4 digits of X
    return crypt


Digest = Callable[[bytes], bytes]
Kdf = Callable[[bytes, int], bytes]


# --- SM3 ---------------------------------------------------------------------------------------

IMPLEMENTATIONS = [
    pytest.param(sm3.python_sm3, sm3.python_kdf, id="python"),
    pytest.param(sm3.sm3, sm3.kdf, id=f"selected-{sm3.IMPLEMENTATION}"),
]


@pytest.mark.parametrize(("digest_of", "kdf"), IMPLEMENTATIONS)
@pytest.mark.parametrize(("message", "digest"), SM3_EXAMPLES)
def test_sm3_standard_examples(digest_of: Digest, kdf: Kdf, message: bytes, digest: str) -> None:
    assert digest_of(message).hex() == digest


@pytest.mark.parametrize(("digest_of", "kdf"), IMPLEMENTATIONS)
def test_sm3_agrees_with_gmssl_on_random_inputs(digest_of: Digest, kdf: Kdf) -> None:
    rng = random.Random(32905)
    # Every length around the padding boundaries (55/56 bytes, 64, 119/120, 128), then longer ones.
    lengths = [*range(0, 140), 200, 1000, 4095, 4096, 10_000]
    for length in lengths:
        data = rng.randbytes(length)
        assert digest_of(data).hex() == gmssl_sm3.sm3_hash(list(data)), length


@pytest.mark.parametrize(("digest_of", "kdf"), IMPLEMENTATIONS)
def test_kdf_agrees_with_gmssl(digest_of: Digest, kdf: Kdf) -> None:
    rng = random.Random(329184)
    for z_length in (0, 1, 63, 64, 65, 100, 128):
        z = rng.randbytes(z_length)
        for length in (1, 19, 31, 32, 33, 64, 70, 100, 1000):
            expected = bytes.fromhex(gmssl_sm3.sm3_kdf(z.hex().encode("ascii"), length))
            assert kdf(z, length) == expected, (z_length, length)
        assert kdf(z, 0) == b""


def test_kdf_is_counter_mode_sm3() -> None:
    z = bytes(range(64))
    blocks = b"".join(sm3.python_sm3(z + i.to_bytes(4, "big")) for i in range(1, 4))
    assert sm3.python_kdf(z, 70) == blocks[:70]
    assert sm3.kdf(z, 70) == blocks[:70]


@pytest.mark.parametrize("kdf", [sm3.python_kdf, sm3.kdf])
def test_kdf_refuses_a_negative_length(kdf: Kdf) -> None:
    with pytest.raises(ValueError):
        kdf(b"z", -1)


def test_selected_sm3_is_openssl_when_hashlib_has_it() -> None:
    available = "sm3" in hashlib.algorithms_available
    assert sm3.IMPLEMENTATION == ("openssl" if available else "python")


# --- curve arithmetic --------------------------------------------------------------------------


def test_scalar_multiplication_agrees_with_gmssl() -> None:
    rng = random.Random(329181)
    n = SM2.n
    points = [G, *(SM2.multiply_base(rng.randrange(1, n)) for _ in range(5))]
    edges = [1, 2, 3, 15, 16, 17, 31, 32, 33, 2**128, n - 2, n - 1]
    scalars = edges + [rng.randrange(1, n) for _ in range(8)]
    for point in points:
        assert point is not None
        for k in scalars:
            expected = _gmssl_point(k, point)
            assert SM2.multiply(k, point) == expected, (k, point)
            if point == G:
                assert SM2.multiply_base(k) == expected, k


def test_scalar_multiplication_edges() -> None:
    n = SM2.n
    assert SM2.multiply(0, G) is None
    assert SM2.multiply(n, G) is None
    assert SM2.multiply_base(0) is None
    assert SM2.multiply(n + 5, G) == SM2.multiply(5, G)
    assert SM2.multiply(3 * n - 1, G) == (SM2.gx, SM2.p - SM2.gy)  # -G
    with pytest.raises(ValueError):
        SM2.multiply_base(n)
    with pytest.raises(ValueError):
        SM2.multiply_base(-1)
    with pytest.raises(ValueError):
        SM2.multiply(-1, G)


def test_split_scalars_give_the_product_of_their_sum() -> None:
    rng = random.Random(7)
    point = SM2.multiply_base(rng.randrange(1, SM2.n))
    assert point is not None
    for _ in range(5):
        d, share = rng.randrange(1, SM2.n), rng.randrange(1, SM2.n)
        expected = SM2.multiply(d, point)
        assert SM2.multiply_sum(((d - share) % SM2.n, share), point) == expected
        assert SM2.multiply_sum((d - share + SM2.n, share), point) == expected
    # Parts that cancel out, or meet at the same point along the way, must still add up.
    assert SM2.multiply_sum((5, SM2.n - 5), point) is None
    assert SM2.multiply_sum((2**200, 2**200), point) == SM2.multiply(2**201, point)
    assert SM2.multiply_sum((), point) is None


def test_every_product_is_on_the_curve() -> None:
    for _ in range(10):
        product = SM2.multiply(secrets.randbelow(SM2.n - 1) + 1, G)
        assert product is not None
        assert SM2.on_curve(*product)


def test_a_curve_whose_generator_is_off_the_curve_is_refused() -> None:
    with pytest.raises(ValueError):
        sm2.Curve("broken", SM2.p, SM2.a, SM2.b, SM2.n, SM2.gx, SM2.gy + 1)


def test_general_a_arithmetic_agrees_with_repeated_addition() -> None:
    """The example curve has a != -3, so it runs the by-the-book doubling; check it from scratch."""
    curve = EXAMPLE_CURVE
    p = curve.p

    def add(first: tuple[int, int] | None, second: tuple[int, int] | None) -> tuple[int, int] | None:
        if first is None:
            return second
        if second is None:
            return first
        (x1, y1), (x2, y2) = first, second
        if x1 == x2 and (y1 + y2) % p == 0:
            return None
        if first == second:
            slope = (3 * x1 * x1 + curve.a) * pow(2 * y1, -1, p) % p
        else:
            slope = (y2 - y1) * pow(x2 - x1, -1, p) % p
        x3 = (slope * slope - x1 - x2) % p
        return x3, (slope * (x1 - x3) - y1) % p

    generator = (curve.gx, curve.gy)
    running: tuple[int, int] | None = None
    for k in range(1, 40):
        running = add(running, generator)
        assert curve.multiply(k, generator) == running, k
        assert curve.multiply_base(k) == running, k


# --- GB/T 32918.4 appendix A -------------------------------------------------------------------


def test_example_public_key() -> None:
    assert EXAMPLE_CURVE.multiply_base(EXAMPLE_D) == EXAMPLE_PUBLIC
    assert EXAMPLE_CURVE.multiply(EXAMPLE_D, (EXAMPLE_CURVE.gx, EXAMPLE_CURVE.gy)) == EXAMPLE_PUBLIC


def test_example_encryption() -> None:
    sealed = sm2._seal(EXAMPLE_CURVE, EXAMPLE_PUBLIC, EXAMPLE_MESSAGE, EXAMPLE_K)
    assert sealed is not None
    assert sealed.hex().upper() == EXAMPLE_C1 + EXAMPLE_C3 + EXAMPLE_C2


@pytest.mark.parametrize(
    "layout",
    [
        "04" + EXAMPLE_C1 + EXAMPLE_C2 + EXAMPLE_C3,  # as the 2012 text prints it
        EXAMPLE_C1 + EXAMPLE_C3 + EXAMPLE_C2,  # our wire format
        "04" + EXAMPLE_C1 + EXAMPLE_C3 + EXAMPLE_C2,
    ],
)
def test_example_decryption(layout: str) -> None:
    assert sm2._decrypt(EXAMPLE_CURVE, EXAMPLE_D, bytes.fromhex(layout)) == EXAMPLE_MESSAGE


def test_example_decryption_with_the_wrong_key_fails() -> None:
    with pytest.raises(ValueError):
        sm2._decrypt(EXAMPLE_CURVE, EXAMPLE_D + 1, bytes.fromhex(EXAMPLE_C1 + EXAMPLE_C3 + EXAMPLE_C2))


# --- the scheme against gmssl, random keys and messages -------------------------------------------


def test_random_keys_and_messages_interoperate_with_gmssl() -> None:
    rng = random.Random(20261204)
    for round_ in range(12):
        private, public = sm2.generate_keypair()
        message = rng.randbytes(rng.randrange(1, 200))
        ours = sm2.encrypt(public, message)
        assert _gmssl(private, public, mode=1).decrypt(bytes.fromhex(ours)) == message, round_
        theirs = _gmssl(private, public, mode=1).encrypt(message).hex()
        assert sm2.decrypt(private, theirs) == message, round_
        theirs_c1c2c3 = _gmssl(private, public, mode=0).encrypt(message).hex()
        assert sm2.decrypt(private, theirs_c1c2c3) == message, round_


def test_generated_public_keys_agree_with_gmssl() -> None:
    for _ in range(5):
        private, public = sm2.generate_keypair()
        expected = _gmssl_point(int(private, 16), G)
        assert expected is not None
        assert public == f"04{expected[0]:064x}{expected[1]:064x}"

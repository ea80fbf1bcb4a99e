"""Password transport encryption: keyhall._crypto.sm2, the SDK encryptor and the server decryptor."""

from __future__ import annotations

import base64
import math
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from gmssl.sm2 import CryptSM2

from keyhall._crypto import sm2, sm3
from keyhall.sdk._encryption import encrypt_password
from keyhall.server.crypto.transport import MAX_ENCRYPTED_PASSWORD_LENGTH, TransportKeys
from keyhall.server.errors import InvalidArgument, PasswordDecryptFailed

PASSWORDS = ["correct horse battery staple", "Pässwörd-密码-🔑", "x"]
SM2_N = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)
SM2_P = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF", 16)


# --- helpers -----------------------------------------------------------------------------------


def _probable_prime(candidate: int, rng: random.Random) -> bool:
    if any(candidate % p == 0 for p in (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47)):
        return False
    d, s = candidate - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(20):
        x = pow(rng.randrange(2, candidate - 1), d, candidate)
        if x in (1, candidate - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, candidate)
            if x == candidate - 1:
                break
        else:
            return False
    return True


def _seeded_rsa_key(seed: int) -> rsa.RSAPrivateKey:
    """A fixed RSA-2048 key, so that tests relying on implicit rejection are deterministic.

    OpenSSL's implicit rejection turns a bad padding into a pseudo-random message that is a
    deterministic function of the key and the ciphertext. About 1 in 500 such messages is short and
    printable, i.e. passes as a password; with random keys those tests would fail that often.
    """
    rng = random.Random(seed)

    def prime() -> int:
        while True:
            candidate = rng.getrandbits(1024) | (3 << 1022) | 1
            if _probable_prime(candidate, rng):
                return candidate

    e = 65537
    while True:
        p, q = prime(), prime()
        if p != q and math.gcd(e, (p - 1) * (q - 1)) == 1:
            break
    d = pow(e, -1, math.lcm(p - 1, q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=rsa.rsa_crt_dmp1(d, p),
        dmq1=rsa.rsa_crt_dmq1(d, q),
        iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(e, p * q),
    )
    return numbers.private_key()


def _seeded_pkcs1_encrypt(public: rsa.RSAPublicNumbers, message: bytes, seed: int) -> bytes:
    """RSAES-PKCS1-v1_5 with padding bytes from a seeded generator: a reproducible ciphertext."""
    size = (public.n.bit_length() + 7) // 8
    rng = random.Random(seed)
    filler = bytes(rng.randrange(1, 256) for _ in range(size - 3 - len(message)))
    encoded = b"\x00\x02" + filler + b"\x00" + message
    return pow(int.from_bytes(encoded, "big"), public.e, public.n).to_bytes(size, "big")


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def _rsa_encrypt(keys: TransportKeys, plaintext: bytes) -> bytes:
    public = serialization.load_pem_public_key(keys.public_info()["rsa"]["publicKey"].encode())
    assert isinstance(public, rsa.RSAPublicKey)
    return public.encrypt(plaintext, padding.PKCS1v15())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _sm3(data: bytes) -> bytes:
    """SM3 from OpenSSL (via cryptography): an implementation independent of gmssl."""
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


def _gmssl(private_key: str, public_key: str, mode: int) -> CryptSM2:
    crypt = CryptSM2(private_key=private_key, public_key=public_key, mode=mode)
    # CryptSM2 strips the 04 prefix with str.lstrip("04"), which also eats any leading 0 or 4 digits
    # of X; set the bare X || Y ourselves.
    crypt.public_key = public_key[2:]
    return crypt


def _flip(ciphertext_hex: str, byte_index: int) -> str:
    data = bytearray(bytes.fromhex(ciphertext_hex))
    data[byte_index] ^= 0x01
    return data.hex()


needs_openssl_sm3 = pytest.mark.skipif(
    not default_backend().hash_supported(hashes.SM3()), reason="OpenSSL build without SM3"
)


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> TransportKeys:
    return TransportKeys.generate()


@pytest.fixture(scope="module")
def seeded_keys() -> TransportKeys:
    """Transport keys whose RSA half is fixed (see ``_seeded_rsa_key``)."""
    sm2_private, sm2_public = sm2.generate_keypair()
    return TransportKeys(_pem(_seeded_rsa_key(1)), sm2_private, sm2_public)


@pytest.fixture(scope="module")
def sm2_pair() -> tuple[str, str]:
    return sm2.generate_keypair()


# --- SM3 and KDF -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "digest"),
    [
        (b"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"),
        (b"abcd" * 16, "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"),
    ],
)
def test_sm3_known_answers(message: bytes, digest: str) -> None:
    assert sm3.sm3(message).hex() == digest
    assert sm3.python_sm3(message).hex() == digest


@needs_openssl_sm3
def test_kdf_is_sm3_with_a_32_bit_big_endian_counter_from_one() -> None:
    z = bytes(range(64))
    expected = _sm3(z + b"\x00\x00\x00\x01") + _sm3(z + b"\x00\x00\x00\x02") + _sm3(z + b"\x00\x00\x00\x03")
    assert sm3.kdf(z, 70) == expected[:70]
    assert sm3.python_kdf(z, 70) == expected[:70]


# --- SM2 ---------------------------------------------------------------------------------------


def test_sm2_keypair_format(sm2_pair: tuple[str, str]) -> None:
    private, public = sm2_pair
    assert re.fullmatch(r"[0-9a-f]{64}", private)
    assert 1 <= int(private, 16) <= SM2_N - 2
    assert re.fullmatch(r"04[0-9a-f]{128}", public)
    assert sm2.derive_public_key(private) == public


@needs_openssl_sm3
@pytest.mark.parametrize("password", [*PASSWORDS, "p" * 100])
def test_sm2_round_trip_and_c1c3c2_layout(sm2_pair: tuple[str, str], password: str) -> None:
    private, public = sm2_pair
    message = password.encode()
    ciphertext = sm2.encrypt(public, message)

    assert re.fullmatch(r"[0-9a-f]+", ciphertext)
    assert len(ciphertext) == 2 * (64 + 32 + len(message))
    assert sm2.decrypt(private, ciphertext) == message

    # Rebuild C3 and C2 from C1 with an independent SM3, so the layout is pinned, not just symmetric.
    data = bytes.fromhex(ciphertext)
    c1, c3, c2 = data[:64], data[64:96], data[96:]
    x1, y1 = int.from_bytes(c1[:32], "big"), int.from_bytes(c1[32:], "big")
    assert (y1 * y1 - (x1**3 - 3 * x1 + sm2.SM2_P256.b)) % SM2_P == 0
    shared = sm2.SM2_P256.multiply(int(private, 16), (x1, y1))
    assert shared is not None
    x2, y2 = (c.to_bytes(32, "big") for c in shared)
    stream = b"".join(_sm3(x2 + y2 + i.to_bytes(4, "big")) for i in range(1, 5))
    assert bytes(a ^ b for a, b in zip(c2, stream, strict=False)) == message
    assert c3 == _sm3(x2 + message + y2)


def test_sm2_nonce_comes_from_a_csprng(sm2_pair: tuple[str, str]) -> None:
    # gmssl's own encrypt draws k from the random module: reseeding it repeats the ciphertext.
    _, public = sm2_pair
    state = random.getstate()
    try:
        random.seed(7)
        first = sm2.encrypt(public, b"secret")
        random.seed(7)
        second = sm2.encrypt(public, b"secret")
    finally:
        random.setstate(state)
    assert first[:128] != second[:128]


def test_sm2_accepts_c1_with_04_prefix(sm2_pair: tuple[str, str]) -> None:
    private, public = sm2_pair
    ciphertext = sm2.encrypt(public, b"prefixed")
    assert sm2.decrypt(private, "04" + ciphertext) == b"prefixed"
    assert sm2.decrypt(private, ("04" + ciphertext).upper()) == b"prefixed"


def test_sm2_encrypt_accepts_bare_public_key(sm2_pair: tuple[str, str]) -> None:
    private, public = sm2_pair
    assert sm2.decrypt(private, sm2.encrypt(public[2:], b"bare")) == b"bare"


def test_sm2_accepts_c1c2c3_order(sm2_pair: tuple[str, str]) -> None:
    private, public = sm2_pair
    data = bytes.fromhex(sm2.encrypt(public, b"reordered"))
    c1c2c3 = data[:64] + data[96:] + data[64:96]
    assert sm2.decrypt(private, c1c2c3.hex()) == b"reordered"


@pytest.mark.parametrize(("part", "index"), [("C1", 10), ("C3", 64), ("C3", 95), ("C2", 96), ("C2", -1)])
def test_sm2_tampering_fails(sm2_pair: tuple[str, str], part: str, index: int) -> None:
    private, public = sm2_pair
    tampered = _flip(sm2.encrypt(public, b"tamper me"), index)
    with pytest.raises(ValueError):
        sm2.decrypt(private, tampered)


def test_sm2_wrong_private_key_fails(sm2_pair: tuple[str, str]) -> None:
    _, public = sm2_pair
    other_private, _ = sm2.generate_keypair()
    with pytest.raises(ValueError):
        sm2.decrypt(other_private, sm2.encrypt(public, b"not yours"))


@pytest.mark.parametrize(
    "ciphertext",
    ["", "0", "zz" * 120, "ab cd" * 60, "00" * 96, "00" * 200, "04" + "00" * 200, "ff" * 97],
)
def test_sm2_malformed_ciphertext_fails(sm2_pair: tuple[str, str], ciphertext: str) -> None:
    with pytest.raises(ValueError):
        sm2.decrypt(sm2_pair[0], ciphertext)


def test_sm2_truncated_ciphertext_fails(sm2_pair: tuple[str, str]) -> None:
    private, public = sm2_pair
    ciphertext = sm2.encrypt(public, b"truncate me")
    for cut in (2, 22, len(ciphertext) - 192, len(ciphertext) - 64):
        with pytest.raises(ValueError):
            sm2.decrypt(private, ciphertext[:-cut])


@pytest.mark.parametrize("public", ["", "04" + "00" * 64, "04" + "zz" * 64, "05" + "ab" * 64])
def test_sm2_encrypt_rejects_bad_public_key(public: str) -> None:
    with pytest.raises(ValueError):
        sm2.encrypt(public, b"x")


def test_sm2_encrypt_rejects_empty_message(sm2_pair: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        sm2.encrypt(sm2_pair[1], b"")


@pytest.mark.parametrize("private", ["", "00" * 32, f"{SM2_N - 1:064x}", "g" * 64, "ab" * 33])
def test_sm2_rejects_bad_private_key(sm2_pair: tuple[str, str], private: str) -> None:
    with pytest.raises(ValueError):
        sm2.decrypt(private, sm2.encrypt(sm2_pair[1], b"x"))


# --- SM2 interoperability with independent implementations ---------------------------------------


@pytest.mark.parametrize("message", [b"from gmssl", "密码🔑".encode(), b"m" * 80])
def test_sm2_gmssl_ciphertext_decrypts(sm2_pair: tuple[str, str], message: bytes) -> None:
    private, public = sm2_pair
    c1c3c2 = _gmssl(private, public, mode=1).encrypt(message)
    assert sm2.decrypt(private, c1c3c2.hex()) == message
    c1c2c3 = _gmssl(private, public, mode=0).encrypt(message)
    assert sm2.decrypt(private, c1c2c3.hex()) == message


@pytest.mark.parametrize("message", [b"to gmssl", "密码🔑".encode(), b"m" * 80])
def test_sm2_ciphertext_decrypts_with_gmssl(sm2_pair: tuple[str, str], message: bytes) -> None:
    private, public = sm2_pair
    ciphertext = bytes.fromhex(sm2.encrypt(public, message))
    assert _gmssl(private, public, mode=1).decrypt(ciphertext) == message


def _openssl_sm2_key(tmp_path: Path) -> tuple[Path, str, str] | None:
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    key_file = tmp_path / "sm2.pem"
    made = subprocess.run(
        [openssl, "genpkey", "-algorithm", "SM2", "-out", str(key_file)], capture_output=True, check=False
    )
    if made.returncode != 0:
        return None
    text = subprocess.run(
        [openssl, "pkey", "-in", str(key_file), "-text", "-noout"], capture_output=True, check=True, text=True
    ).stdout  # cryptography cannot load SM2 keys, so read OpenSSL's own dump of it
    found = re.search(r"priv:\s*([0-9a-f:\s]+?)\s*pub:\s*([0-9a-f:\s]+?)\s*ASN1 OID", text)
    assert found is not None, text
    private, public = (re.sub(r"[:\s]", "", part) for part in found.groups())
    return key_file, private.zfill(64), public


def _der(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = (length.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + length.to_bytes(size, "big") + content


def _der_read(data: bytes, offset: int) -> tuple[int, bytes, int]:
    tag, length, offset = data[offset], data[offset + 1], offset + 2
    if length & 0x80:
        size = length & 0x7F
        length, offset = int.from_bytes(data[offset : offset + size], "big"), offset + size
    return tag, data[offset : offset + length], offset + length


def test_sm2_interoperates_with_openssl_cli(tmp_path: Path) -> None:
    """OpenSSL's SM2 (GB/T 32918.4, ASN.1-wrapped) against ours, in both directions."""
    made = _openssl_sm2_key(tmp_path)
    if made is None:
        pytest.skip("openssl CLI with SM2 support not available")
    key_file, private, public = made
    openssl = shutil.which("openssl")
    assert openssl is not None
    message = "互操作 interop".encode()

    # OpenSSL -> us: SEQUENCE { INTEGER x, INTEGER y, OCTET STRING C3, OCTET STRING C2 }
    (tmp_path / "m.bin").write_bytes(message)
    subprocess.run(
        [
            openssl,
            "pkeyutl",
            "-encrypt",
            "-inkey",
            str(key_file),
            "-in",
            str(tmp_path / "m.bin"),
            "-out",
            str(tmp_path / "c.der"),
        ],
        check=True,
    )
    _, body, _ = _der_read((tmp_path / "c.der").read_bytes(), 0)
    parts, offset = [], 0
    while offset < len(body):
        _, value, offset = _der_read(body, offset)
        parts.append(value)
    x, y, c3, c2 = parts
    c1 = int.from_bytes(x, "big").to_bytes(32, "big") + int.from_bytes(y, "big").to_bytes(32, "big")
    assert sm2.decrypt(private, (c1 + c3 + c2).hex()) == message

    # us -> OpenSSL
    data = bytes.fromhex(sm2.encrypt(public, message))
    x_int, y_int = int.from_bytes(data[:32], "big"), int.from_bytes(data[32:64], "big")
    der = _der(
        0x30,
        _der(0x02, x_int.to_bytes(x_int.bit_length() // 8 + 1, "big"))
        + _der(0x02, y_int.to_bytes(y_int.bit_length() // 8 + 1, "big"))
        + _der(0x04, data[64:96])
        + _der(0x04, data[96:]),
    )
    (tmp_path / "ours.der").write_bytes(der)
    decrypted = subprocess.run(
        [openssl, "pkeyutl", "-decrypt", "-inkey", str(key_file), "-in", str(tmp_path / "ours.der")],
        capture_output=True,
        check=True,
    )
    assert decrypted.stdout == message


# --- server: TransportKeys ----------------------------------------------------------------------


def test_public_info_shape(keys: TransportKeys) -> None:
    info = keys.public_info()
    assert set(info) == {"rsa", "sm2"}
    pem = info["rsa"]["publicKey"]
    assert pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    public = serialization.load_pem_public_key(pem.encode())
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == 2048
    assert re.fullmatch(r"04[0-9a-f]{128}", info["sm2"]["publicKey"])
    assert info["sm2"]["publicKey"] == sm2.derive_public_key(keys.sm2_private_key)


def test_repr_hides_private_keys(keys: TransportKeys) -> None:
    text = repr(keys)
    assert "PRIVATE" not in text
    assert keys.sm2_private_key not in text


def test_transport_keys_refuse_a_mismatched_sm2_pair(keys: TransportKeys) -> None:
    _, other_public = sm2.generate_keypair()
    with pytest.raises(ValueError):
        TransportKeys(keys.rsa_private_key_pem, keys.sm2_private_key, other_public)


def test_transport_keys_refuse_a_non_rsa_key(keys: TransportKeys) -> None:
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError):
        TransportKeys(ec_pem.decode(), keys.sm2_private_key, keys.sm2_public_key)


@pytest.mark.parametrize("encrypt_type", [None, "", "none"])
@pytest.mark.parametrize("value", ["plain", "", "a\x00b", "not base64 !!"])
def test_no_encryption_passes_the_value_through(
    keys: TransportKeys, encrypt_type: str | None, value: str
) -> None:
    assert keys.decrypt_password(encrypt_type, value) == value


@pytest.mark.parametrize("encrypt_type", ["RSA", "aes", "sm4", " rsa"])
def test_unknown_encrypt_type_is_an_invalid_argument(keys: TransportKeys, encrypt_type: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        keys.decrypt_password(encrypt_type, "whatever")
    assert caught.value.params == {
        "field": "options.passwordEncryptType",
        "reason": "must be one of none, rsa, sm2",
    }


@pytest.mark.parametrize("encrypt_type", ["rsa", "sm2"])
@pytest.mark.parametrize("password", PASSWORDS)
def test_round_trip_through_sdk_and_server(keys: TransportKeys, encrypt_type: str, password: str) -> None:
    public_key = keys.public_info()[encrypt_type]["publicKey"]
    ciphertext = encrypt_password(password, encrypt_type, public_key)
    assert ciphertext != password
    assert keys.decrypt_password(encrypt_type, ciphertext) == password


def test_rsa_ciphertext_missing_its_leading_zero_byte_decrypts(keys: TransportKeys) -> None:
    # P(first byte is 0) >= 1/256 per try; 5000 tries miss with probability < 1e-8.
    for _ in range(5000):
        ciphertext = _rsa_encrypt(keys, b"zero-led")
        if ciphertext[0] == 0:
            break
    else:
        pytest.fail("no ciphertext with a leading zero byte in 5000 tries")
    shortened = ciphertext[1:]
    assert len(shortened) == 255
    assert keys.decrypt_password("rsa", _b64(shortened)) == "zero-led"


def test_sm2_with_04_prefix_through_server(keys: TransportKeys) -> None:
    ciphertext = encrypt_password("prefixed", "sm2", keys.public_info()["sm2"]["publicKey"])
    assert keys.decrypt_password("sm2", ciphertext) == "prefixed"
    assert keys.decrypt_password("sm2", "04" + ciphertext) == "prefixed"


def test_sm2_c3_tampering_through_server(keys: TransportKeys) -> None:
    ciphertext = sm2.encrypt(keys.sm2_public_key, b"tamper")
    with pytest.raises(PasswordDecryptFailed):
        keys.decrypt_password("sm2", _flip(ciphertext, 70))


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not base64!",
        "QUJD=",  # bad padding
        "QUJD\n",  # stray whitespace
        "ümlaut",
        _b64(b"\x01" * 257),  # longer than the modulus
        _b64(b"\xff" * 256),  # integer above the modulus
        "A" * (MAX_ENCRYPTED_PASSWORD_LENGTH + 4),
    ],
)
def test_rsa_garbage_fails(seeded_keys: TransportKeys, value: str) -> None:
    with pytest.raises(PasswordDecryptFailed):
        seeded_keys.decrypt_password("rsa", value)


def test_rsa_reproducible_garbage_fails(seeded_keys: TransportKeys) -> None:
    garbage = random.Random(3).randbytes(256)
    with pytest.raises(PasswordDecryptFailed):
        seeded_keys.decrypt_password("rsa", _b64(b"\x00" + garbage[1:]))


def test_rsa_truncated_ciphertext_fails(seeded_keys: TransportKeys) -> None:
    public = seeded_keys._rsa_key.public_key().public_numbers()
    ciphertext = _seeded_pkcs1_encrypt(public, b"truncate me", seed=4)
    assert seeded_keys.decrypt_password("rsa", _b64(ciphertext)) == "truncate me"
    for cut in (1, 4, 128):
        with pytest.raises(PasswordDecryptFailed):
            seeded_keys.decrypt_password("rsa", _b64(ciphertext[:-cut]))


def test_rsa_ciphertext_for_another_key_fails(seeded_keys: TransportKeys) -> None:
    """Implicit rejection: OpenSSL returns pseudo-random bytes, which must not pass as a password."""
    other = _seeded_rsa_key(2).public_key().public_numbers()
    for seed in range(3):
        ciphertext = _seeded_pkcs1_encrypt(other, b"for someone else", seed=seed)
        with pytest.raises(PasswordDecryptFailed):
            seeded_keys.decrypt_password("rsa", _b64(ciphertext))


@pytest.mark.parametrize(
    "plaintext",
    [
        b"ab\x00cd",
        b"\x00",
        b"pass\x00",
        b"pass\tword",
        b"line\nbreak",
        b"\x7fdel",
        "c1\u0085control".encode(),
        b"\xff\xfe\xfd",  # not UTF-8
        b"\xed\xa0\x80",  # an encoded surrogate
        b"",
    ],
)
def test_rsa_plaintext_that_is_not_a_password_is_refused(keys: TransportKeys, plaintext: bytes) -> None:
    with pytest.raises(PasswordDecryptFailed):
        keys.decrypt_password("rsa", _b64(_rsa_encrypt(keys, plaintext)))


@pytest.mark.parametrize("plaintext", [b"nul\x00", b"\x1b[0m", b"\xc3\x28"])
def test_sm2_plaintext_that_is_not_a_password_is_refused(keys: TransportKeys, plaintext: bytes) -> None:
    with pytest.raises(PasswordDecryptFailed):
        keys.decrypt_password("sm2", sm2.encrypt(keys.sm2_public_key, plaintext))


@pytest.mark.parametrize("value", ["", "zz", "04", "00" * 150, "A" * (MAX_ENCRYPTED_PASSWORD_LENGTH + 2)])
def test_sm2_garbage_fails(keys: TransportKeys, value: str) -> None:
    with pytest.raises(PasswordDecryptFailed):
        keys.decrypt_password("sm2", value)


def test_sm2_ciphertext_for_another_key_fails(keys: TransportKeys) -> None:
    _, other_public = sm2.generate_keypair()
    with pytest.raises(PasswordDecryptFailed):
        keys.decrypt_password("sm2", sm2.encrypt(other_public, b"for someone else"))


def test_sm2_ciphertext_for_rsa_fails(keys: TransportKeys) -> None:
    ciphertext = encrypt_password("crossed", "sm2", keys.sm2_public_key)
    with pytest.raises(PasswordDecryptFailed):
        keys.decrypt_password("rsa", ciphertext)


# --- SDK ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("encrypt_type", ["none", "", "RSA", "sm4"])
def test_sdk_unknown_type_is_a_value_error(keys: TransportKeys, encrypt_type: str) -> None:
    with pytest.raises(ValueError):
        encrypt_password("pw", encrypt_type, keys.public_info()["rsa"]["publicKey"])


def test_sdk_rsa_ciphertext_is_standard_base64(keys: TransportKeys) -> None:
    ciphertext = encrypt_password("pw", "rsa", keys.public_info()["rsa"]["publicKey"])
    assert len(base64.b64decode(ciphertext, validate=True)) == 256


def test_sdk_refuses_a_non_rsa_public_key() -> None:
    ec_public = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError):
        encrypt_password("pw", "rsa", ec_public.decode())

"""Password transport encryption on the server side (``options.passwordEncryptType``).

Clients may send a password in the clear (``none``), encrypted with RSAES-PKCS1-v1_5 (``rsa``,
base64) or with SM2 (``sm2``, hex C1C3C2, see ``keyhall._crypto.sm2``). ``TransportKeys`` holds the
server's key pairs, publishes the public halves and turns what a client sent back into the password.

Every way decryption can fail is one error, ``PasswordDecryptFailed``. With OpenSSL's implicit
rejection a bad PKCS#1 v1.5 padding does not raise but yields pseudo-random bytes, so a plaintext
that is empty, not UTF-8 or holds a control character (category Cc) counts as a failure too. A
rare pseudo-random result can still pass these checks; it is then simply a wrong password.

Decryption is CPU work (about 0.3 ms for RSA, 5 ms for SM2 in pure Python): call ``decrypt_password`` in a
worker thread.
"""

from __future__ import annotations

import base64
import unicodedata
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keyhall._crypto import sm2
from keyhall.server.crypto.cpu import CpuPool
from keyhall.server.errors import InvalidArgument, PasswordDecryptFailed

__all__ = ["MAX_ENCRYPTED_PASSWORD_LENGTH", "RSA_KEY_SIZE", "PasswordTransport", "TransportKeys"]

RSA_KEY_SIZE = 2048
# Far above any real ciphertext (RSA-4096 is 684 base64 characters, SM2 of a 1 KiB password 2240
# hex characters); bounds the pure-Python SM3 work one request can cause.
MAX_ENCRYPTED_PASSWORD_LENGTH = 4096


def _password_text(plaintext: bytes) -> str:
    """The decrypted bytes as a password, or ``ValueError`` if they cannot be one."""
    text = plaintext.decode("utf-8")  # strict: rejects invalid UTF-8 and encoded surrogates
    if not text or any(unicodedata.category(char) == "Cc" for char in text):
        raise ValueError("decrypted password is empty or holds a control character")
    return text


@dataclass(frozen=True)
class TransportKeys:
    """The server's transport key pairs: RSA (private key PEM) and SM2 (hex)."""

    rsa_private_key_pem: str = field(repr=False)
    sm2_private_key: str = field(repr=False)
    sm2_public_key: str
    _rsa_key: rsa.RSAPrivateKey = field(init=False, repr=False, compare=False)
    _rsa_public_key_pem: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = serialization.load_pem_private_key(self.rsa_private_key_pem.encode("ascii"), password=None)
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < RSA_KEY_SIZE:
            raise ValueError(f"the transport RSA key must be an RSA key of at least {RSA_KEY_SIZE} bits")
        if sm2.derive_public_key(self.sm2_private_key) != self.sm2_public_key:
            raise ValueError("the SM2 public key must be lower-case hex 04 || X || Y of the private key")
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # Loading a PEM costs milliseconds: keep the key object (frozen, hence object.__setattr__).
        object.__setattr__(self, "_rsa_key", key)
        object.__setattr__(self, "_rsa_public_key_pem", public_pem.decode("ascii"))

    @classmethod
    def generate(cls) -> TransportKeys:
        """Fresh key pairs: RSA-2048 and SM2."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        sm2_private, sm2_public = sm2.generate_keypair()
        return cls(rsa_private_key_pem=pem, sm2_private_key=sm2_private, sm2_public_key=sm2_public)

    def public_info(self) -> dict[str, dict[str, str]]:
        """The public keys as clients fetch them: RSA as SubjectPublicKeyInfo PEM, SM2 as hex."""
        return {
            "rsa": {"publicKey": self._rsa_public_key_pem},
            "sm2": {"publicKey": self.sm2_public_key},
        }

    def decrypt_password(self, encrypt_type: str | None, value: str) -> str:
        """The password a client sent, decrypted as ``encrypt_type`` says (sync, CPU-bound).

        ``None``, ``""`` and ``"none"`` return ``value`` unchanged. Raises ``InvalidArgument`` for an
        unknown type and ``PasswordDecryptFailed`` for anything that does not decrypt to a password.
        """
        if encrypt_type is None or encrypt_type in ("", "none"):
            return value
        if encrypt_type not in ("rsa", "sm2"):
            raise InvalidArgument(field="options.passwordEncryptType", reason="must be one of none, rsa, sm2")
        try:
            if len(value) > MAX_ENCRYPTED_PASSWORD_LENGTH:
                raise ValueError("encrypted password too long")
            if encrypt_type == "rsa":
                plaintext = self._decrypt_rsa(value)
            else:
                plaintext = sm2.decrypt(self.sm2_private_key, value)
            return _password_text(plaintext)
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors too
            raise PasswordDecryptFailed() from None

    def _decrypt_rsa(self, value: str) -> bytes:
        ciphertext = base64.b64decode(value, validate=True)
        size = (self._rsa_key.key_size + 7) // 8
        if not 0 < len(ciphertext) <= size:
            raise ValueError("RSA ciphertext has the wrong length")
        # JSEncrypt drops the leading zero bytes of a ciphertext whose integer is small: put them back.
        return self._rsa_key.decrypt(ciphertext.rjust(size, b"\x00"), padding.PKCS1v15())


class PasswordTransport:
    """What every flow that takes a password calls: the plain password a client sent for a pool.

    Sign-up, sign-in and password changes all go through :meth:`plain_password`, so that which keys a
    pool has (and which older ones are still accepted) is decided in one place.
    """

    def __init__(self, keys: TransportKeys, cpu: CpuPool) -> None:
        self._keys = keys
        self._cpu = cpu

    def public_info(self, pool_id: str | None) -> dict[str, dict[str, str]]:
        """The public keys a client of ``pool_id`` (None: the default pool) encrypts with."""
        return self._keys.public_info()

    async def plain_password(self, pool_id: str, encrypt_type: str | None, value: str) -> str:
        """``value`` decrypted as ``encrypt_type`` says (``None``/``none``: as it is).

        Raises ``InvalidArgument`` for an unknown type and ``PasswordDecryptFailed`` for anything that
        does not decrypt to a password with one of the pool's keys.
        """
        kind = (encrypt_type or "none").lower()
        if kind == "none":
            return value
        # RSA/SM2 decryption costs milliseconds of CPU: keep it off the event loop, in the bounded pool.
        return await self._cpu.run(self._keys.decrypt_password, kind, value)

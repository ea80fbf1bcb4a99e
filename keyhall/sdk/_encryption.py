"""Password transport encryption on the SDK side, as ``options.passwordEncryptType`` asks.

* ``rsa`` -- RSAES-PKCS1-v1_5 under the server's RSA public key (PEM), ciphertext in base64;
* ``sm2`` -- SM2 under the server's public key (hex ``04 || X || Y``), ciphertext hex C1C3C2.

``none`` is not handled here: the caller sends the password as it is.
"""

from __future__ import annotations

import base64
import functools

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keyhall._crypto import sm2

__all__ = ["encrypt_password"]


@functools.lru_cache(maxsize=8)
def _load_rsa_public_key(pem: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem.encode("ascii"))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the public key is not an RSA key")
    return key


def encrypt_password(password: str, encrypt_type: str, public_key: str) -> str:
    """``password`` encrypted for the wire; ``ValueError`` for an unknown type or an unusable key."""
    plaintext = password.encode("utf-8")
    if encrypt_type == "rsa":
        ciphertext = _load_rsa_public_key(public_key).encrypt(plaintext, padding.PKCS1v15())
        return base64.b64encode(ciphertext).decode("ascii")
    if encrypt_type == "sm2":
        return sm2.encrypt(public_key, plaintext)
    raise ValueError(f"unknown password encryption type {encrypt_type!r}; expected 'rsa' or 'sm2'")

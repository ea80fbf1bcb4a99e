"""Encrypted passwords as GenAuth's JavaScript SDKs send them, against real servers (SQLite, PostgreSQL).

Ciphertexts come from jsencrypt and sm-crypto run by Node (tests/js), under the keys that
``GET /api/v3/system`` publishes; junk of every kind must answer 499/2016 and store nothing.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keyhall._crypto import sm2
from keyhall.sdk._encryption import encrypt_password
from keyhall.server.clock import system_clock
from keyhall.server.crypto.transport import TransportKeys
from keyhall.server.flows.setup import create_app, create_pool
from keyhall.server.store.db import create_engine
from tests.support.js import ensure_node_modules, js_ciphertexts
from tests.support.servers import RunningServer

PASSWORDS = ["Correct-Horse-42-Battery", "密码强度足够高-Pässwörd-🔑🐉", "Ünïcode ✓ with spaces 9"]


@pytest.fixture(scope="session", autouse=True)
def node_packages() -> None:
    ensure_node_modules()


def system_info(server: RunningServer, app_id: str | None = None, header: str = "x-genauth-app-id") -> Any:
    headers = {header: app_id} if app_id is not None else {}
    answer = httpx.get(f"{server.base_url}/api/v3/system", headers=headers, timeout=30)
    assert answer.status_code == 200
    return answer.json()


def sign_up(client: httpx.Client, email: str, password: str, encrypt_type: str) -> Any:
    body = {
        "connection": "PASSWORD",
        "passwordPayload": {"email": email, "password": password},
        "options": {"passwordEncryptType": encrypt_type},
    }
    return client.post("/api/v3/signup", json=body).json()


def stored_hash(server: RunningServer, email: str) -> str:
    return str(server.sql("SELECT password_hash FROM users WHERE email_norm = :e", e=email)[0][0])


# --- /api/v3/system --------------------------------------------------------------------------------


def test_system_is_a_bare_object_with_the_app_pools_keys(server: RunningServer) -> None:
    by_genauth = system_info(server, server.app_id)
    by_authing = system_info(server, server.app_id, header="x-authing-app-id")
    default = system_info(server)
    assert by_genauth == by_authing == default
    assert set(by_genauth) == {"rsa", "sm2", "version", "publicIps"}
    assert by_genauth["rsa"]["publicKey"].startswith("-----BEGIN PUBLIC KEY-----\n")
    assert len(by_genauth["sm2"]["publicKey"]) == 130 and by_genauth["sm2"]["publicKey"].startswith("04")
    assert by_genauth["publicIps"] == []


@pytest.mark.parametrize("app_id", ["0123456789abcdef01234567", "not an id!"])
def test_system_with_an_unknown_app_id_is_404_1001(server: RunningServer, app_id: str) -> None:
    answer = httpx.get(f"{server.base_url}/api/v3/system", headers={"x-authing-app-id": app_id}).json()
    assert (answer["statusCode"], answer["apiCode"]) == (404, 1001)
    assert answer["requestId"] and "rsa" not in answer


# --- jsencrypt and sm-crypto round trips --------------------------------------------------------


@pytest.mark.parametrize("layout", ["rsa", "sm2", "sm2_c1c2c3"])
def test_js_sdk_ciphertexts_register_users(
    server: RunningServer, client: httpx.Client, unique: str, layout: str
) -> None:
    made = js_ciphertexts(system_info(server, server.app_id), PASSWORDS)
    for n, (password, ciphertexts) in enumerate(zip(PASSWORDS, made, strict=True)):
        email = f"js.{layout}.{n}.{unique}@example.com"
        answer = sign_up(client, email, ciphertexts[layout], layout[:3])
        assert answer["statusCode"] == 200, answer
        # The hash is of the exact password: a zh-CN/emoji password survives jsencrypt's encoding.
        assert PasswordHasher().verify(stored_hash(server, email), password)


def test_sm2_c1_with_04_prefix_registers(server: RunningServer, client: httpx.Client, unique: str) -> None:
    (ciphertexts,) = js_ciphertexts(system_info(server), [PASSWORDS[1]])
    email = f"js.sm2.prefixed.{unique}@example.com"
    answer = sign_up(client, email, "04" + ciphertexts["sm2"], "sm2")
    assert answer["statusCode"] == 200, answer
    assert PasswordHasher().verify(stored_hash(server, email), PASSWORDS[1])


# --- junk -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_pool_app() -> Iterator[dict[str, str]]:
    """Filled per server by ``_other_pool``: a second pool's app (its keys are made on first use)."""
    yield {}


def _other_pool(server: RunningServer, cache: dict[str, str]) -> str:
    if server.backend not in cache:

        async def make() -> str:
            engine = create_engine(server.database_url)
            try:
                pool_id = await create_pool(engine, "Other pool", system_clock)  # no KEK: keys on first use
                return (await create_app(engine, "Other app", system_clock, pool_id=pool_id)).app_id
            finally:
                await engine.dispose()

        cache[server.backend] = asyncio.run(make())
    return cache[server.backend]


def _flip(text: str, index: int) -> str:
    """``text`` with one bit of the character at ``index`` changed, staying in the same alphabet."""
    alphabet = "0123456789abcdef" if set(text) <= set("0123456789abcdef") else None
    char = text[index]
    if alphabet:
        replacement = alphabet[int(char, 16) ^ 1]
    else:
        replacement = "B" if char == "A" else "A"
    return text[:index] + replacement + text[index + 1 :]


def _junk(server: RunningServer, other_app_id: str) -> list[tuple[str, str, str]]:
    """(name, encrypt type, value) for every kind of ciphertext that must be refused."""
    ours = system_info(server, server.app_id)
    (made,) = js_ciphertexts(ours, ["Correct-Horse-42-Battery"])
    (theirs,) = js_ciphertexts(system_info(server, other_app_id), ["Correct-Horse-42-Battery"])
    stranger = TransportKeys.generate().public_info()
    rsa, sm2_hex = made["rsa"], made["sm2"]
    raw_rsa = base64.b64decode(rsa)
    return [
        ("rsa not base64", "rsa", "not base64 at all!"),
        ("rsa bad padding", "rsa", rsa[:-2] + "=" * 3),
        ("rsa truncated", "rsa", base64.b64encode(raw_rsa[:-8]).decode()),
        (
            "rsa bit flipped",
            "rsa",
            base64.b64encode(raw_rsa[:100] + bytes([raw_rsa[100] ^ 1]) + raw_rsa[101:]).decode(),
        ),
        ("rsa too long", "rsa", base64.b64encode(raw_rsa + b"\x00").decode()),
        (
            "rsa wrong key",
            "rsa",
            encrypt_password("Correct-Horse-42-Battery", "rsa", stranger["rsa"]["publicKey"]),
        ),
        ("rsa other pool", "rsa", theirs["rsa"]),
        ("rsa sent as sm2", "sm2", rsa),
        ("rsa whitespace", "rsa", "   "),
        ("rsa oversized", "rsa", "A" * 4096),  # the longest the DTO takes; no real ciphertext is
        ("sm2 not hex", "sm2", "zz" * 120),
        ("sm2 odd length", "sm2", sm2_hex[:-1]),
        ("sm2 truncated", "sm2", sm2_hex[:-40]),
        ("sm2 C1 only", "sm2", sm2_hex[:128]),
        ("sm2 bit flipped C1", "sm2", _flip(sm2_hex, 20)),
        ("sm2 bit flipped C3", "sm2", _flip(sm2_hex, 140)),
        ("sm2 bit flipped C2", "sm2", _flip(sm2_hex, len(sm2_hex) - 3)),
        ("sm2 wrong key", "sm2", sm2.encrypt(stranger["sm2"]["publicKey"], b"Correct-Horse-42-Battery")),
        ("sm2 other pool", "sm2", theirs["sm2"]),
        ("sm2 sent as rsa", "rsa", sm2_hex),
        ("sm2 oversized", "sm2", "ab" * 2048),
        # Well-formed ciphertexts under the pool's own keys whose plaintext is not a password: what a bad
        # PKCS#1 v1.5 padding decrypts to under OpenSSL's implicit rejection (random bytes, no error).
        ("rsa plaintext not UTF-8", "rsa", _rsa_encrypt(ours, b"\xff\xfe\xfd-Horse-42")),
        ("rsa plaintext with NUL", "rsa", _rsa_encrypt(ours, b"Correct\x00Horse-42")),
        ("rsa plaintext with ESC", "rsa", _rsa_encrypt(ours, b"\x1b[0mHorse-42")),
        ("rsa plaintext lone surrogate", "rsa", _rsa_encrypt(ours, b"Horse-42\xed\xa0\x80")),
        ("sm2 plaintext not UTF-8", "sm2", sm2.encrypt(ours["sm2"]["publicKey"], b"\xc3\x28-Horse-42")),
        ("sm2 plaintext with NUL", "sm2", sm2.encrypt(ours["sm2"]["publicKey"], b"Correct\x00Horse-42")),
    ]


def _rsa_encrypt(system: Any, plaintext: bytes) -> str:
    """``plaintext`` (any bytes) RSA PKCS#1 v1.5-encrypted under the RSA key of a /api/v3/system answer."""
    key = serialization.load_pem_public_key(system["rsa"]["publicKey"].encode("ascii"))
    assert isinstance(key, rsa.RSAPublicKey)
    return base64.b64encode(key.encrypt(plaintext, padding.PKCS1v15())).decode("ascii")


def test_junk_ciphertexts_are_499_2016_and_store_nothing(
    server: RunningServer, client: httpx.Client, unique: str, other_pool_app: dict[str, str]
) -> None:
    junk = _junk(server, _other_pool(server, other_pool_app))
    before = server.user_count()
    answers = set()
    for n, (name, encrypt_type, value) in enumerate(junk):
        answer = sign_up(client, f"junk.{n}.{unique}@example.com", value, encrypt_type)
        assert (answer["statusCode"], answer.get("apiCode")) == (499, 2016), (name, answer)
        assert answer["requestId"]
        answers.add((answer["statusCode"], answer["apiCode"], answer["message"]))
    assert server.user_count() == before
    assert len(answers) == 1, f"every kind of failure must get the same answer: {answers}"


def test_ciphertext_over_the_field_limit_is_400_naming_it(
    server: RunningServer, client: httpx.Client, unique: str
) -> None:
    before = server.user_count()
    answer = sign_up(client, f"huge.{unique}@example.com", "ab" * 3000, "sm2")
    assert answer["statusCode"] == 400 and "passwordPayload.password" in answer["message"]
    assert server.user_count() == before


def test_empty_encrypted_password_is_400_2032(
    server: RunningServer, client: httpx.Client, unique: str
) -> None:
    # PROTOCOL.md: a missing or empty password is 2032, whatever its encryption.
    before = server.user_count()
    answer = sign_up(client, f"empty.{unique}@example.com", "", "sm2")
    assert (answer["statusCode"], answer["apiCode"]) == (400, 2032)
    assert server.user_count() == before


def test_another_pool_gets_its_own_keys(server: RunningServer, other_pool_app: dict[str, str]) -> None:
    other_app = _other_pool(server, other_pool_app)
    ours, theirs = system_info(server, server.app_id), system_info(server, other_app)
    assert ours["rsa"] != theirs["rsa"] and ours["sm2"] != theirs["sm2"]
    assert system_info(server, other_app) == theirs  # made once, then served from the database
    rows = server.sql(
        "SELECT kind, private_key_sealed FROM transport_keys t JOIN applications a ON a.pool_id = t.pool_id "
        "WHERE a.id = :a",
        a=other_app,
    )
    assert sorted(row[0] for row in rows) == ["rsa", "sm2"]
    assert all(row[1].startswith("kh1.") and "PRIVATE KEY" not in row[1] for row in rows)


# --- the later endpoints that take a password: sign-in and update-password -------------------------


def sign_in(client: httpx.Client, email: str, password: str, encrypt_type: str | None = None) -> Any:
    body: dict[str, Any] = {
        "connection": "PASSWORD",
        "passwordPayload": {"email": email, "password": password},
    }
    if encrypt_type is not None:
        body["options"] = {"passwordEncryptType": encrypt_type}
    return client.post("/api/v3/signin", json=body).json()


def update_password(client: httpx.Client, access: str, new: str, old: str, encrypt_type: str) -> Any:
    body = {"newPassword": new, "oldPassword": old, "passwordEncryptType": encrypt_type}
    return client.post("/api/v3/update-password", json=body, headers={"authorization": access}).json()


@pytest.mark.parametrize("layout", ["rsa", "sm2", "sm2_c1c2c3"])
def test_js_sdk_ciphertexts_sign_in_and_change_the_password(
    server: RunningServer, client: httpx.Client, unique: str, layout: str
) -> None:
    old, new = PASSWORDS[0], PASSWORDS[1]
    email = f"js.signin.{layout}.{unique}@example.com"
    assert sign_up(client, email, old, "none")["statusCode"] == 200
    made = js_ciphertexts(system_info(server, server.app_id), [old, new, old])
    kind = layout[:3]
    answer = sign_in(client, email, made[0][layout], kind)
    assert answer["statusCode"] == 200, answer
    changed = update_password(client, answer["data"]["access_token"], made[1][layout], made[2][layout], kind)
    assert changed["statusCode"] == 200, changed
    # The stored hash is of the decrypted new password, not of its ciphertext.
    assert PasswordHasher().verify(stored_hash(server, email), new)
    assert sign_in(client, email, old)["apiCode"] == 2333


def test_junk_ciphertexts_on_sign_in_and_update_password_are_499_2016(
    server: RunningServer, client: httpx.Client, unique: str, other_pool_app: dict[str, str]
) -> None:
    junk = _junk(server, _other_pool(server, other_pool_app))
    email = f"js.junk.signin.{unique}@example.com"
    assert sign_up(client, email, PASSWORDS[0], "none")["statusCode"] == 200
    answers = set()
    for name, encrypt_type, value in junk:
        answer = sign_in(client, email, value, encrypt_type)
        assert (answer["statusCode"], answer.get("apiCode")) == (499, 2016), (name, answer)
        assert "data" not in answer
        answers.add((answer["statusCode"], answer["apiCode"], answer["message"]))
    assert len(answers) == 1, answers

    other = f"js.junk.update.{unique}@example.com"
    assert sign_up(client, other, PASSWORDS[0], "none")["statusCode"] == 200
    access = sign_in(client, other, PASSWORDS[0])["data"]["access_token"]
    (good,) = js_ciphertexts(system_info(server, server.app_id), [PASSWORDS[2]])
    hash_before = stored_hash(server, other)
    for name, encrypt_type, value in (junk[0], junk[3], junk[11], junk[15]):
        # junk as the new password, then junk as the old one next to a good new one
        for new, old in ((value, value), (good[encrypt_type], value)):
            answer = update_password(client, access, new, old, encrypt_type)
            assert (answer["statusCode"], answer.get("apiCode")) == (499, 2016), (name, answer)
    assert stored_hash(server, other) == hash_before, "a refused change stored nothing"

"""Every error the signup endpoint answers: a clean 4xx envelope, the right codes, nothing stored."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.http.test_signup import STRONG, email_body
from tests.support.servers import RunningServer


def post(client: httpx.Client, content: bytes | str, **headers: str) -> dict[str, Any]:
    response = client.post(
        "/api/v3/signup", content=content, headers={"content-type": "application/json", **headers}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) >= {"statusCode", "message", "requestId"}
    assert answer["requestId"]
    assert "data" not in answer
    assert 400 <= answer["statusCode"] < 500, answer
    return answer  # type: ignore[no-any-return]


def assert_error(answer: dict[str, Any], status: int, api_code: int | None, *words: str) -> None:
    assert answer["statusCode"] == status, answer
    assert answer.get("apiCode") == api_code, answer
    for word in words:
        assert word in answer["message"], (word, answer["message"])


# (name, body, statusCode, apiCode, words the message must contain)
CASES: list[tuple[str, Any, int, int | None, tuple[str, ...]]] = [
    ("seed sample phone as email", email_body("188xxxx8888", "passw0rd"), 400, 2003, ("email",)),
    ("email without domain", email_body("a@", STRONG), 400, 2003, ("passwordPayload.email",)),
    (
        "missing password",
        {"connection": "PASSWORD", "passwordPayload": {"email": "p@example.com"}},
        400,
        2032,
        (),
    ),
    ("empty password", email_body("p@example.com", ""), 400, 2032, ()),
    ("short password", email_body("p@example.com", "Ab1!x"), 400, 2029, ("at least 8",)),
    ("common password", email_body("p@example.com", "password123"), 400, 2029, ("common",)),
    ("password = email", email_body("lantern@example.com", "lantern@example.com"), 400, 2029, ("same",)),
    ("password too long", email_body("p@example.com", "x" * 129 + "Aa1"), 400, 2029, ("at most 128",)),
    ("password control char", email_body("p@example.com", "Blue\x07Harbor7"), 400, 2029, ("control",)),
    (
        "no identifier",
        {"connection": "PASSWORD", "passwordPayload": {"password": STRONG}},
        400,
        None,
        ("passwordPayload",),
    ),
    ("no payload", {"connection": "PASSWORD"}, 400, None, ("passwordPayload",)),
    (
        "no connection",
        {"passwordPayload": {"email": "p@example.com", "password": STRONG}},
        400,
        None,
        ("connection",),
    ),
    ("unknown connection", {"connection": "MAGIC"}, 400, None, ("connection",)),
    (
        "passcode without an address",
        {"connection": "PASSCODE", "passCodePayload": {"passCode": "1"}},
        400,
        None,
        ("passCodePayload.email", "passCodePayload.phone"),
    ),
    (
        "password as number",
        {"connection": "PASSWORD", "passwordPayload": {"email": "p@example.com", "password": 12345678}},
        400,
        None,
        ("passwordPayload.password",),
    ),
    ("profile as list", email_body("p@example.com", profile=[1]), 400, None, ("profile",)),
    (
        "nickname as object",
        email_body("p@example.com", profile={"nickname": {"a": 1}}),
        400,
        None,
        ("profile.nickname",),
    ),
    (
        "javascript photo",
        email_body("p@example.com", profile={"photo": "javascript:alert(1)"}),
        400,
        None,
        ("profile.photo",),
    ),
    (
        "data website",
        email_body("p@example.com", profile={"website": "data:text/html,x"}),
        400,
        None,
        ("profile.website",),
    ),
    ("bad gender", email_body("p@example.com", profile={"gender": "X"}), 400, None, ("profile.gender",)),
    (
        "bad birthdate",
        email_body("p@example.com", profile={"birthdate": "2020-02-30"}),
        400,
        None,
        ("profile.birthdate",),
    ),
    (
        "bad phone",
        email_body("p@example.com", profile={"phone": "188xxxx8888"}),
        400,
        None,
        ("profile.phone",),
    ),
    (
        "short phone",
        email_body("p@example.com", profile={"phone": "114114114"}),
        400,
        None,
        ("profile.phone",),
    ),
    (
        "bad country code",
        email_body("p@example.com", profile={"phone": "13812345678", "phoneCountryCode": "+x"}),
        400,
        None,
        ("phoneCountryCode",),
    ),
    (
        "null byte in nickname",
        email_body("p@example.com", profile={"nickname": "a\x00b"}),
        400,
        None,
        ("profile.nickname", "control"),
    ),
    (
        "null byte in customData",
        email_body("p@example.com", profile={"customData": {"k": "a\x00"}}),
        400,
        None,
        ("profile.customData",),
    ),
    (
        "deep customData",
        email_body("p@example.com", profile={"customData": {"a": {"b": {"c": {"d": {"e": {}}}}}}}),
        400,
        None,
        ("profile.customData", "5 levels"),
    ),
    (
        "deep context",
        email_body("p@example.com", options={"context": {"a": [[[[[1]]]]]}}),
        400,
        None,
        ("options.context",),
    ),
    (
        "huge customData",
        email_body("p@example.com", profile={"customData": {"k": "x" * 17000}}),
        400,
        None,
        ("16384 bytes",),
    ),
    (
        "long nickname",
        email_body("p@example.com", profile={"nickname": "n" * 256}),
        400,
        None,
        ("profile.nickname", "255"),
    ),
    (
        "username with space",
        {"connection": "PASSWORD", "passwordPayload": {"username": "a b", "password": STRONG}},
        400,
        None,
        ("passwordPayload.username",),
    ),
    (
        "profile email differs",
        email_body("p@example.com", profile={"email": "q@example.com"}),
        400,
        None,
        ("profile.email",),
    ),
    (
        "bad encrypt type",
        email_body("p@example.com", options={"passwordEncryptType": "aes"}),
        400,
        None,
        ("options.passwordEncryptType",),
    ),
    (
        "rsa garbage",
        email_body("p@example.com", "bm90IGEgY2lwaGVydGV4dA==", options={"passwordEncryptType": "rsa"}),
        499,
        2016,
        ("Decrypt",),
    ),
    (
        "sm2 garbage",
        email_body("p@example.com", "abcdef", options={"passwordEncryptType": "sm2"}),
        499,
        2016,
        (),
    ),
    (
        "email code never sent",
        email_body("p@example.com", options={"emailPassCodeForInformationCompletion": "1234"}),
        400,
        2001,
        ("verification code",),
    ),
    (
        "client ip not an address",
        email_body("p@example.com", client_id="x", client_secret="y"),
        401,
        None,
        (),
    ),
]


@pytest.mark.parametrize(("name", "body", "status", "api_code", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_signup_is_a_clean_error_and_stores_nothing(
    client: httpx.Client,
    server: RunningServer,
    name: str,
    body: Any,
    status: int,
    api_code: int | None,
    words: tuple[str, ...],
) -> None:
    before = server.user_count()
    answer = post(client, json.dumps(body))
    assert_error(answer, status, api_code, *words)
    assert server.user_count() == before


RAW_CASES: list[tuple[str, bytes, tuple[str, ...]]] = [
    ("malformed json", b'{"connection": "PASSWORD",', ("malformed JSON",)),
    ("empty body", b"", ("empty",)),
    ("array body", b"[1, 2]", ("list",)),
    ("string body", b'"hello"', ("str",)),
    ("invalid utf-8", b'{"connection": "\xff\xfe"}', ("UTF-8",)),
    ("NaN constant", b'{"connection": "PASSWORD", "profile": {"customData": {"x": NaN}}}', ("NaN",)),
    (
        "huge integer",
        b'{"connection": "PASSWORD", "profile": {"customData": {"x": ' + b"9" * 5000 + b"}}}",
        (),
    ),
    ("deep nesting", b"[" * 20000 + b"]" * 20000, ("deeply",)),
    (
        "lone surrogate",
        b'{"connection": "PASSWORD", "passwordPayload": {"email": "a\\ud800@example.com",'
        b' "password": "Blue-Harbor-7-Lantern"}}',
        ("passwordPayload.email",),
    ),
]


@pytest.mark.parametrize(("name", "raw", "words"), RAW_CASES, ids=[c[0] for c in RAW_CASES])
def test_unparseable_body_is_400(
    client: httpx.Client, server: RunningServer, name: str, raw: bytes, words: tuple[str, ...]
) -> None:
    before = server.user_count()
    assert_error(post(client, raw), 400, None, *words)
    assert server.user_count() == before


def test_body_over_64_kib_is_413(client: httpx.Client, server: RunningServer) -> None:
    before = server.user_count()
    body = json.dumps(email_body("big@example.com", profile={"nickname": "x" * (70 * 1024)}))
    assert_error(post(client, body), 413, None, "65536")
    assert server.user_count() == before


def test_streamed_body_over_the_limit_is_413_without_content_length(
    client: httpx.Client, server: RunningServer
) -> None:
    def chunks() -> Any:
        for _ in range(80):
            yield b" " * 1024

    response = client.post("/api/v3/signup", content=chunks(), headers={"content-type": "application/json"})
    answer = response.json()
    assert_error(answer, 413, None)
    assert answer["requestId"]


def test_unknown_app_is_404_1001(server: RunningServer) -> None:
    with httpx.Client(base_url=server.base_url) as http:
        for app_id in ("000000000000000000000000", "../../etc/passwd", "x" * 500, "a\tb"):
            answer = post(http, json.dumps(email_body("u@example.com")), **{"x-genauth-app-id": app_id})
            assert_error(answer, 404, 1001)
        missing = post(http, json.dumps(email_body("u@example.com")))
        assert_error(missing, 404, 1001, "x-genauth-app-id")


def test_duplicate_email_in_other_case_is_409_2026(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    first = post_ok(client, email_body(f"Dup.{unique}@Example.com"))
    before = server.user_count()
    again = post(client, json.dumps(email_body(f"  dup.{unique}@EXAMPLE.COM ")))
    assert_error(again, 409, 2026, "email")
    assert server.user_count() == before
    assert first["data"]["email"] == f"Dup.{unique}@Example.com"


def test_duplicate_username_in_other_case_is_409_2034(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    body = {"connection": "PASSWORD", "passwordPayload": {"username": f"Alice{unique}", "password": STRONG}}
    post_ok(client, body)
    body["passwordPayload"]["username"] = f"alice{unique.upper()}"
    assert_error(post(client, json.dumps(body)), 409, 2034, "username")


def test_duplicate_phone_is_409_2035(client: httpx.Client, unique: str) -> None:
    phone = "139" + str(int(unique, 16) % 10**8).zfill(8)
    post_ok(client, email_body(f"ph1.{unique}@example.com", profile={"phone": phone}))
    again = email_body(f"ph2.{unique}@example.com", profile={"phone": phone, "phoneCountryCode": "86"})
    assert_error(post(client, json.dumps(again)), 409, 2035)


def test_disabled_self_registration_is_403_2031(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    server.sql("UPDATE pools SET allow_self_registration = false WHERE id = :id", id=server.pool_id)
    try:
        before = server.user_count()
        answer = post(client, json.dumps(email_body(f"closed.{unique}@example.com")))
        assert_error(answer, 403, 2031, "disabled")
        assert server.user_count() == before
    finally:
        server.sql("UPDATE pools SET allow_self_registration = true WHERE id = :id", id=server.pool_id)


def test_pool_strength_level_is_enforced(client: httpx.Client, server: RunningServer, unique: str) -> None:
    server.sql("UPDATE pools SET password_strength = 3 WHERE id = :id", id=server.pool_id)
    try:
        answer = post(client, json.dumps(email_body(f"lvl.{unique}@example.com", "lantern harbor 42")))
        assert_error(answer, 400, 2029, "3 of")
        post_ok(client, email_body(f"lvl2.{unique}@example.com", "lantern-harbor-42"))
    finally:
        server.sql("UPDATE pools SET password_strength = 0 WHERE id = :id", id=server.pool_id)


def test_unknown_route_and_method_get_the_envelope(client: httpx.Client) -> None:
    missing = client.get("/api/v3/nothing-here").json()
    assert_error(missing, 404, None, "/api/v3/nothing-here")
    wrong_method = client.get("/api/v3/signup").json()
    assert_error(wrong_method, 405, None, "GET")


def post_ok(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post("/api/v3/signup", json=body).json()
    assert answer["statusCode"] == 200, answer
    return answer  # type: ignore[no-any-return]

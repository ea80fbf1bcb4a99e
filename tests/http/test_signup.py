"""POST /api/v3/signup on a real server, once on SQLite and once on PostgreSQL."""

from __future__ import annotations

import base64
import re
from typing import Any

import httpx

from keyhall.server.http.dto import UserDto
from tests.support.servers import RunningServer

STRONG = "Blue-Harbor-7-Lantern"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

FULL_PROFILE: dict[str, Any] = {
    "nickname": "Mike",
    "company": "GenAuth .Inc",
    "photo": "https://www.genauth.ai/demo.jpg",
    "device": "iOS",
    "browser": "Edge",
    "name": "Mike",
    "givenName": "Zhou",
    "familyName": "Jay",
    "middleName": "Jane",
    "profile": "this is my profile\nsecond line",
    "preferredUsername": "Mike",
    "website": "https://www.genauth.ai",
    "gender": "M",
    "birthdate": "2020.2.2",
    "zoneinfo": "HongKong",
    "locale": "EN-US",
    "address": "Hai Dian XX",
    "formatted": "Hai Dian XX, Beijing",
    "streetAddress": "Hai Dian Street 1",
    "locality": "BeiJing HaiDian",
    "region": "china",
    "postalCode": "3500000",
    "country": "china",
    "phone": "13812345678",
    "phoneCountryCode": "+86",
    "customData": {"name": "H", "nested": {"a": [1, 2]}},
}


def signup(client: httpx.Client, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    response = client.post("/api/v3/signup", json=body, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()  # type: ignore[no-any-return]


def email_body(email: str, password: str = STRONG, **extra: Any) -> dict[str, Any]:
    return {"connection": "PASSWORD", "passwordPayload": {"email": email, "password": password}, **extra}


def test_email_signup_returns_the_full_user_dto(client: httpx.Client, unique: str) -> None:
    answer = signup(client, email_body(f"Mike.{unique}@Example.com", profile=FULL_PROFILE))

    assert answer["statusCode"] == 200
    assert answer["message"] == "Operation successful"
    assert re.fullmatch(r"[0-9a-f-]{36}", answer["requestId"])
    user = answer["data"]
    assert set(UserDto.model_fields) <= set(user), "every documented UserDto field is present"
    UserDto.model_validate(user)
    assert re.fullmatch(r"[0-9a-f]{24}", user["userId"])
    assert user["email"] == f"Mike.{unique}@Example.com"
    for field, value in FULL_PROFILE.items():
        if field in ("birthdate", "phone", "customData"):
            continue
        assert user[field] == value, field
    assert user["birthdate"] == "2020-02-02"
    assert user["phone"] == "13812345678"
    assert user["phoneCountryCode"] == "+86"
    assert user["customData"] == {"name": "H", "nested": {"a": [1, 2]}}


def test_new_user_has_the_protocol_defaults(client: httpx.Client, server: RunningServer, unique: str) -> None:
    user = signup(client, email_body(f"defaults.{unique}@example.com"))["data"]

    assert user["status"] == "Activated"
    assert user["userSourceType"] == "register"
    assert user["userSourceId"] == server.app_id
    assert user["gender"] == "U"
    assert user["emailVerified"] is False
    assert user["phoneVerified"] is False
    assert user["loginsCount"] == 0
    assert user["lastLogin"] is None
    for stamp in ("createdAt", "updatedAt", "passwordLastSetAt", "statusChangedAt"):
        assert ISO_MS.match(user[stamp]), stamp
    assert user["passwordLastSetAt"] == user["createdAt"] == user["statusChangedAt"]
    assert user["identities"] == []
    assert user["customData"] == {}
    assert user["username"] is None


def test_password_security_level_follows_the_password(client: httpx.Client, unique: str) -> None:
    levels = {
        "correct horse battery staple": 1,
        "lantern harbor 42": 2,
        "Lantern-Harbor-42": 3,
    }
    for index, (password, level) in enumerate(levels.items()):
        user = signup(client, email_body(f"level{index}.{unique}@example.com", password))["data"]
        assert user["passwordSecurityLevel"] == level, password


def test_username_signup(client: httpx.Client, unique: str) -> None:
    body = {
        "connection": "PASSWORD",
        "passwordPayload": {"username": f"Bob_{unique}", "password": STRONG},
        "profile": {"email": f"bob.{unique}@example.com", "nickname": "Bobby"},
    }
    user = signup(client, body)["data"]
    assert user["username"] == f"Bob_{unique}"
    assert user["email"] == f"bob.{unique}@example.com"
    assert user["nickname"] == "Bobby"


def test_context_and_custom_data_land_in_custom_data(client: httpx.Client, unique: str) -> None:
    body = email_body(
        f"ctx.{unique}@example.com",
        profile={"customData": {"school": "xxx", "age": 22}},
        options={"context": {"phoneNumber": "188xxxx8888", "age": 1}},
    )
    user = signup(client, body)["data"]
    assert user["customData"] == {"school": "xxx", "age": 22, "phoneNumber": "188xxxx8888"}


def test_stored_user_matches_the_answer(client: httpx.Client, server: RunningServer, unique: str) -> None:
    user = signup(client, email_body(f"Stored.{unique}@Example.com", profile={"nickname": "n"}))["data"]
    rows = server.sql(
        "SELECT email, email_norm, nickname, password_hash FROM users WHERE id = :id", id=user["userId"]
    )
    assert len(rows) == 1
    email, email_norm, nickname, password_hash = rows[0]
    assert (email, email_norm, nickname) == (
        f"Stored.{unique}@Example.com",
        f"stored.{unique}@example.com",
        "n",
    )
    assert password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert STRONG not in password_hash


def test_authing_headers_work_too(server: RunningServer, unique: str) -> None:
    with httpx.Client(base_url=server.base_url, headers={"x-authing-app-id": server.app_id}) as http:
        answer = signup(http, email_body(f"authing.{unique}@example.com"))
    assert answer["statusCode"] == 200


def test_messages_follow_the_lang_header(client: httpx.Client) -> None:
    answer = signup(client, email_body("not-an-email", STRONG), headers={"x-genauth-lang": "zh-CN"})
    assert answer["apiCode"] == 2003
    assert "格式错误" in answer["message"]


def test_client_ip_is_honoured_only_with_the_app_secret(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    claimed = {"options": {"clientIp": "203.0.113.9"}}
    without = signup(client, email_body(f"ip1.{unique}@example.com", **claimed))["data"]
    assert without["lastIp"] == "127.0.0.1"

    basic = base64.b64encode(f"{server.app_id}:{server.app_secret}".encode()).decode()
    with_basic = signup(
        client,
        email_body(f"ip2.{unique}@example.com", **claimed),
        headers={"authorization": f"Basic {basic}"},
    )["data"]
    assert with_basic["lastIp"] == "203.0.113.9"

    in_body = email_body(
        f"ip3.{unique}@example.com", client_id=server.app_id, client_secret=server.app_secret, **claimed
    )
    assert signup(client, in_body)["data"]["lastIp"] == "203.0.113.9"

    spoofed = signup(client, email_body(f"ip4.{unique}@example.com"), headers={"x-real-ip": "198.51.100.1"})
    assert spoofed["data"]["lastIp"] == "127.0.0.1"


def test_wrong_app_secret_is_refused_and_stores_nothing(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    before = server.user_count()
    basic = base64.b64encode(f"{server.app_id}:wrong".encode()).decode()
    answer = signup(
        client, email_body(f"sec.{unique}@example.com"), headers={"authorization": f"Basic {basic}"}
    )
    assert answer["statusCode"] == 401
    assert "credentials" in answer["message"]
    assert server.user_count() == before


def test_every_answer_carries_a_request_id_that_is_logged(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    ok = client.post("/api/v3/signup", json=email_body(f"log.{unique}@example.com"))
    bad = client.post("/api/v3/signup", json=email_body("nope"))
    for response in (ok, bad):
        request_id = response.json()["requestId"]
        assert response.headers["x-request-id"] == request_id
    log = _wait_for(server, [ok.json()["requestId"], bad.json()["requestId"]])
    assert '"api_code": 2003' in log


def _wait_for(server: RunningServer, needles: list[str]) -> str:
    import time

    deadline = time.monotonic() + 5
    while True:
        log = server.log_text()
        if all(n in log for n in needles) or time.monotonic() > deadline:
            for needle in needles:
                assert needle in log
            return log
        time.sleep(0.05)


def test_openapi_documents_the_signup_dto(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    assert "/api/v3/signup" in schema["paths"]
    assert "SignUpProfileDto" in schema["components"]["schemas"]
    assert "customData" in schema["components"]["schemas"]["SignUpProfileDto"]["properties"]

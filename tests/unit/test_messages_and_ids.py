"""Ids (keyhall.server.identity.ids) and the message catalogue (keyhall.server.messages)."""

from __future__ import annotations

import re
import string
import time

import pytest

from keyhall.server import errors
from keyhall.server.errors import DomainError, PasswordRejected
from keyhall.server.identity.ids import new_id, new_secret
from keyhall.server.identity.password_policy import PasswordPolicy
from keyhall.server.messages import (
    CATALOGUE,
    DEFAULT_LANG,
    PASSWORD_RULES,
    message_for,
    normalise_lang,
    password_rule_text,
)

LANGS = ("en-US", "zh-CN")
CJK = re.compile(r"[\u4e00-\u9fff]")


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


# --- ids ---------------------------------------------------------------------------------------


def test_new_id_is_24_lower_case_hex() -> None:
    for _ in range(100):
        assert re.fullmatch(r"[0-9a-f]{24}", new_id())


def test_new_id_is_unique_over_10000_calls() -> None:
    assert len({new_id() for _ in range(10_000)}) == 10_000


def test_new_id_sorts_by_creation_time_across_milliseconds() -> None:
    first = new_id()
    time.sleep(0.002)
    second = new_id()
    assert first < second
    assert first[:12] < second[:12]  # the time prefix moved on


def test_new_id_starts_with_the_current_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    millis = int(new_id()[:12], 16)
    after = time.time_ns() // 1_000_000
    assert before <= millis <= after


def test_new_secret_is_64_hex_characters_and_unique() -> None:
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(re.fullmatch(r"[0-9a-f]{64}", secret) for secret in secrets)


# --- catalogue ---------------------------------------------------------------------------------


def test_the_error_classes_are_discovered() -> None:
    classes = _subclasses(DomainError)
    assert errors.AppIdMissing in classes  # a subclass of a subclass
    assert len(classes) >= 20


@pytest.mark.parametrize("cls", [DomainError, *_subclasses(DomainError)], ids=lambda cls: cls.__name__)
def test_every_error_message_id_has_english_and_chinese_text(cls: type[DomainError]) -> None:
    texts = CATALOGUE[cls.message_id]
    assert texts.get("en-US")
    assert texts.get("zh-CN")
    assert CJK.search(texts["zh-CN"])


@pytest.mark.parametrize("catalogue", [CATALOGUE, PASSWORD_RULES], ids=["catalogue", "password_rules"])
def test_every_text_has_both_languages_with_the_same_placeholders(
    catalogue: dict[str, dict[str, str]],
) -> None:
    for message_id, texts in catalogue.items():
        assert set(texts) == set(LANGS), message_id
        assert _placeholders(texts["en-US"]) == _placeholders(texts["zh-CN"]), message_id


def test_ok_message() -> None:
    assert message_for("ok") == "Operation successful"
    assert message_for("ok", "zh-CN") == "操作成功"


# --- normalise_lang ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["zh-CN", "zh", "ZH-cn", "zh-TW", " zh-Hans "])
def test_chinese_languages_map_to_zh_cn(value: str) -> None:
    assert normalise_lang(value) == "zh-CN"


@pytest.mark.parametrize("value", [None, "", "fr", "en-US", "en", "ja-JP", "xx-zh"])
def test_other_languages_map_to_en_us(value: str | None) -> None:
    assert normalise_lang(value) == "en-US" == DEFAULT_LANG


# --- message_for -------------------------------------------------------------------------------


def test_message_parameters_are_filled_in() -> None:
    assert message_for("invalid_argument", "en-US", field="profile.phone", reason="it is short") == (
        "Invalid parameter profile.phone: it is short"
    )
    assert message_for("throttled", "zh-CN", retry_after=3) == "请求过于频繁，请 3 秒后重试"


def test_missing_template_parameter_does_not_raise() -> None:
    assert message_for("invalid_argument", "en-US") == "Invalid parameter {field}: {reason}"
    assert message_for("invalid_argument", "zh-CN", field="x") == "参数 x 无效：{reason}"


def test_extra_parameters_are_ignored() -> None:
    assert message_for("server_error", "en-US", detail="secret") == (
        "Internal server error; quote the requestId when reporting it"
    )


def test_unknown_language_falls_back_to_english() -> None:
    assert message_for("ok", "fr-FR") == "Operation successful"


def test_unknown_message_id_falls_back_to_server_error() -> None:
    assert message_for("no_such_id") == CATALOGUE["server_error"]["en-US"]


def test_password_rejected_message_in_chinese_names_the_rule() -> None:
    text = message_for("password_rejected", "zh-CN", rule="min_length", min_length=8)
    assert text == "密码不符合密码安全策略：长度至少为 8 个字符"


def test_password_rejected_message_in_english_names_the_rule() -> None:
    text = message_for("password_rejected", "en-US", rule="character_classes", classes=3)
    assert text == (
        "The password does not meet the password policy: "
        "it must contain at least 3 of: letters, digits, symbols"
    )


def test_password_rejected_message_carries_the_custom_regex_message() -> None:
    text = message_for("password_rejected", "zh-CN", rule="custom_regex", custom_message="必须以大写字母开头")
    assert text == "密码不符合密码安全策略：必须以大写字母开头"


def test_password_rejected_without_its_rule_parameter_does_not_raise() -> None:
    assert message_for("password_rejected", "en-US", rule="min_length") == (
        "The password does not meet the password policy: it must be at least {min_length} characters long"
    )


def test_password_rejected_with_an_unknown_rule_keeps_the_reason_placeholder() -> None:
    assert message_for("password_rejected", "en-US", rule="nope") == (
        "The password does not meet the password policy: {reason}"
    )


@pytest.mark.parametrize(
    ("policy", "password", "identifiers"),
    [
        (PasswordPolicy(), "short1!", ()),
        (PasswordPolicy(), "x" * 129, ()),
        (PasswordPolicy(strength=3, nist=False), "abcdefgh", ()),
        (PasswordPolicy(strength=4, custom_regex="z+", custom_message="只能是 z", nist=False), "abcdef", ()),
        (PasswordPolicy(), "password1", ()),
        (PasswordPolicy(), "tangerine\x1bvoyage", ()),
    ],
)
def test_every_rejection_of_the_policy_renders_fully_in_chinese(
    policy: PasswordPolicy, password: str, identifiers: tuple[str, ...]
) -> None:
    with pytest.raises(PasswordRejected) as caught:
        policy.check(password, identifiers=identifiers)
    error = caught.value
    text = message_for(error.message_id, "zh-CN", **error.params)
    assert text.startswith("密码不符合密码安全策略：")
    assert "{" not in text
    assert text == "密码不符合密码安全策略：" + password_rule_text(
        error.params["rule"], "zh-CN", **{k: v for k, v in error.params.items() if k != "rule"}
    )


def test_equals_identifier_rejection_in_chinese_has_no_english_words() -> None:
    with pytest.raises(PasswordRejected) as caught:
        PasswordPolicy().check("Mightymouse77", identifiers=("mightymouse77",))
    text = message_for(caught.value.message_id, "zh-CN", **caught.value.params)
    assert not re.search(r"[A-Za-z]", text), text


def test_database_errors_never_carry_bound_parameters() -> None:
    import asyncio

    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from keyhall.server.store.db import create_engine

    async def fail() -> str:
        engine = create_engine("sqlite://")
        try:
            async with engine.connect() as conn:
                await conn.execute(
                    text("SELECT * FROM no_such_table WHERE x = :secret"), {"secret": "$argon2id$s3cr3t"}
                )
        except DBAPIError as error:
            return str(error)
        finally:
            await engine.dispose()
        return ""

    message = asyncio.run(fail())
    assert "no_such_table" in message
    assert "s3cr3t" not in message

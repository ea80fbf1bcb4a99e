"""The password policy of a pool (NIST SP 800-63B rules and GenAuth's strength levels) and the
``passwordSecurityLevel`` GenAuth reports: keyhall.server.identity.password_policy."""

from __future__ import annotations

import pytest

from keyhall.server.errors import PasswordMissing, PasswordRejected
from keyhall.server.identity.password_policy import (
    GENAUTH_MIN_LENGTH,
    NIST_MAX_LENGTH,
    NIST_MIN_LENGTH,
    PasswordPolicy,
    character_classes,
    common_passwords,
    normalise_password,
    password_security_level,
)
from keyhall.server.messages import PASSWORD_RULES

NIST = PasswordPolicy()
GOOD = "tangerine-Voyage-93"  # not common, three classes, 19 characters


def _rule_of(policy: PasswordPolicy, password: str, identifiers: tuple[str, ...] = ()) -> dict[str, object]:
    with pytest.raises(PasswordRejected) as caught:
        policy.check(password, identifiers=identifiers)
    return caught.value.params


# --- NIST defaults -----------------------------------------------------------------------------


def test_nist_is_on_by_default_with_8_to_128_characters() -> None:
    policy = PasswordPolicy()
    assert policy.nist is True
    assert policy.strength == 0
    assert (policy.min_length, policy.max_length) == (NIST_MIN_LENGTH, NIST_MAX_LENGTH) == (8, 128)


def test_a_good_password_is_returned_unchanged() -> None:
    assert NIST.check(GOOD) == GOOD


def test_seven_characters_are_too_short_and_eight_are_enough() -> None:
    assert _rule_of(NIST, "tq9#vLm") == {"rule": "min_length", "min_length": 8}
    assert NIST.check("tq9#vLmz") == "tq9#vLmz"


def test_length_counts_characters_not_bytes() -> None:
    seven_cjk = "紫藤花开满山坡"  # 7 characters, 21 bytes of UTF-8
    assert len(seven_cjk.encode()) > NIST_MIN_LENGTH
    assert _rule_of(NIST, seven_cjk)["rule"] == "min_length"
    assert NIST.check(seven_cjk + "下") == "紫藤花开满山坡下"


def test_128_characters_pass_and_129_are_too_long() -> None:
    base = ("Zq7-" * 40)[:128]
    assert NIST.check(base) == base
    assert _rule_of(NIST, base + "x") == {"rule": "max_length", "max_length": 128}


def test_128_multibyte_characters_pass_although_they_are_384_bytes() -> None:
    password = ("紫藤花开" * 32)[:128]
    assert len(password.encode()) == 384
    assert NIST.check(password) == password


def test_custom_length_bounds_are_honoured() -> None:
    policy = PasswordPolicy(min_length=12, max_length=16)
    assert _rule_of(policy, "Zq7-Zq7-Zq7")["min_length"] == 12
    assert _rule_of(policy, "Zq7-Zq7-Zq7-Zq7-Z")["max_length"] == 16
    assert policy.check("Zq7-Zq7-Zq7-") == "Zq7-Zq7-Zq7-"


# --- NFKC --------------------------------------------------------------------------------------


def test_full_width_password_is_returned_in_nfkc_form() -> None:
    assert NIST.check("ｔａｎｇｅｒｉｎｅ－Ｖｏｙａｇｅ－９３") == GOOD


def test_normalise_password_applies_nfkc() -> None:
    assert normalise_password("ｐａｓｓ①") == "pass1"
    assert normalise_password("e\u0301") == "é"


def test_password_common_only_after_nfkc_is_rejected() -> None:
    full_width = "ｐａｓｓｗｏｒｄ１"
    assert full_width.casefold() not in common_passwords()
    assert _rule_of(NIST, full_width) == {"rule": "common_password"}


def test_length_is_measured_after_nfkc() -> None:
    # U+FDFA is one character that NFKC expands to 18: it is long enough once normalised.
    assert len(normalise_password("\ufdfa")) == 18
    assert NIST.check("\ufdfa") == normalise_password("\ufdfa")


# --- common passwords --------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["password1", "qwertyuiop", "password123", "iloveyou1"])
def test_common_password_is_rejected(password: str) -> None:
    assert _rule_of(NIST, password) == {"rule": "common_password"}


def test_common_password_is_rejected_case_insensitively() -> None:
    assert _rule_of(NIST, "PaSsWoRd123") == {"rule": "common_password"}
    assert _rule_of(NIST, "QWERTYUIOP") == {"rule": "common_password"}


def test_common_password_list_is_large_and_case_folded() -> None:
    words = common_passwords()
    assert len(words) >= 10_000
    assert "password1" in words
    assert all(word == word.casefold() for word in words)
    assert common_passwords() is words  # loaded once per process


def test_common_passwords_are_allowed_when_nist_is_off() -> None:
    assert PasswordPolicy(nist=False).check("password1") == "password1"


# --- email and username --------------------------------------------------------------------------


def test_password_equal_to_the_email_is_rejected_case_insensitively() -> None:
    params = _rule_of(NIST, "Wonderland42@EXAMPLE.com", ("wonderland42@example.com",))
    assert params == {"rule": "equals_identifier"}


def test_password_equal_to_the_local_part_of_the_email_is_rejected() -> None:
    assert _rule_of(NIST, "Wonderland42", ("wonderland42@example.com",))["rule"] == "equals_identifier"


def test_password_equal_to_the_username_is_rejected() -> None:
    params = _rule_of(NIST, "MightyMouse77", ("wonderland42@example.com", "mightymouse77"))
    assert params["rule"] == "equals_identifier"


def test_password_that_only_contains_the_username_is_accepted() -> None:
    assert NIST.check("mightymouse77!", identifiers=("mightymouse77",)) == "mightymouse77!"


def test_empty_identifiers_are_ignored() -> None:
    assert NIST.check(GOOD, identifiers=("", "")) == GOOD


def test_password_equal_to_a_full_width_username_is_rejected() -> None:
    username = "ｍｉｇｈｔｙｍｏｕｓｅ７７"  # a valid username: usernames are only NFC-normalised
    assert _rule_of(NIST, username, (username,))["rule"] == "equals_identifier"


# --- control characters and empty --------------------------------------------------------------


@pytest.mark.parametrize("char", ["\x00", "\t", "\n", "\x7f", "\x85", "\ud800"])
def test_control_characters_and_lone_surrogates_are_rejected(char: str) -> None:
    assert _rule_of(NIST, f"tangerine{char}voyage93") == {"rule": "control_characters"}


def test_control_characters_are_rejected_even_when_nist_is_off() -> None:
    assert _rule_of(PasswordPolicy(nist=False), "abc\x00def")["rule"] == "control_characters"


def test_spaces_are_allowed() -> None:
    assert NIST.check("correct horse battery") == "correct horse battery"


@pytest.mark.parametrize("policy", [PasswordPolicy(), PasswordPolicy(nist=False, strength=0)])
def test_empty_password_is_missing_not_rejected(policy: PasswordPolicy) -> None:
    with pytest.raises(PasswordMissing) as caught:
        policy.check("")
    assert caught.value.api_code == 2032


# --- GenAuth strength levels -----------------------------------------------------------------------


def test_strength_0_without_nist_accepts_anything_non_empty() -> None:
    assert PasswordPolicy(nist=False).check("a") == "a"


def test_strength_1_requires_six_characters() -> None:
    policy = PasswordPolicy(strength=1, nist=False)
    assert _rule_of(policy, "abcde") == {"rule": "min_length", "min_length": GENAUTH_MIN_LENGTH}
    assert policy.check("abcdef") == "abcdef"


def test_strength_2_requires_two_character_classes() -> None:
    policy = PasswordPolicy(strength=2, nist=False)
    assert _rule_of(policy, "abcdefgh") == {"rule": "character_classes", "classes": 2}
    assert _rule_of(policy, "12345678")["rule"] == "character_classes"
    assert policy.check("abcdef1") == "abcdef1"
    assert policy.check("abcdef!") == "abcdef!"


def test_strength_2_still_requires_six_characters() -> None:
    assert _rule_of(PasswordPolicy(strength=2, nist=False), "ab1")["rule"] == "min_length"


def test_strength_3_requires_letters_digits_and_symbols() -> None:
    policy = PasswordPolicy(strength=3, nist=False)
    assert _rule_of(policy, "abcdefg1") == {"rule": "character_classes", "classes": 3}
    assert _rule_of(policy, "abcdefg!")["rule"] == "character_classes"
    assert policy.check("abcdefg1!") == "abcdefg1!"


def test_strength_4_uses_the_custom_regex_with_its_custom_message() -> None:
    policy = PasswordPolicy(
        strength=4,
        custom_regex=r"[A-Z][a-z]+\d{2}",
        custom_message="Capital, letters, two digits",
        nist=False,
    )
    params = _rule_of(policy, "pumpkin42")
    assert params == {"rule": "custom_regex", "custom_message": "Capital, letters, two digits"}
    assert policy.check("Pumpkin42") == "Pumpkin42"


def test_strength_4_regex_must_match_the_whole_password() -> None:
    policy = PasswordPolicy(strength=4, custom_regex=r"[a-z]+", nist=False)
    assert _rule_of(policy, "abc123")["rule"] == "custom_regex"


def test_strength_4_without_a_custom_message_names_the_pattern() -> None:
    policy = PasswordPolicy(strength=4, custom_regex=r"\d+", nist=False)
    assert _rule_of(policy, "abcdef")["custom_message"] == r"it must match the pattern \d+"


def test_strength_4_without_a_regex_only_keeps_the_six_character_minimum() -> None:
    policy = PasswordPolicy(strength=4, nist=False)
    assert policy.check("xxxxxx") == "xxxxxx"
    assert _rule_of(policy, "xxxxx")["rule"] == "min_length"


def test_strength_1_with_nist_applies_the_nist_minimum_first() -> None:
    assert _rule_of(PasswordPolicy(strength=1), "abc1234") == {"rule": "min_length", "min_length": 8}


def test_strength_2_with_nist_rejects_a_single_class_long_password() -> None:
    assert _rule_of(PasswordPolicy(strength=2), "tangerinevoyage")["rule"] == "character_classes"


def test_strength_3_with_nist_still_rejects_common_passwords() -> None:
    policy = PasswordPolicy(strength=3)
    assert "p@ssw0rd" in common_passwords()
    assert _rule_of(policy, "P@ssw0rd")["rule"] == "common_password"
    assert policy.check("Tangerine-93") == "Tangerine-93"


def test_strength_4_with_nist_checks_the_regex_then_the_common_list() -> None:
    policy = PasswordPolicy(strength=4, custom_regex=r".*\d.*", custom_message="Needs a digit")
    assert _rule_of(policy, "tangerinevoyage") == {"rule": "custom_regex", "custom_message": "Needs a digit"}
    assert _rule_of(policy, "password1")["rule"] == "common_password"
    assert _rule_of(policy, "abc1")["rule"] == "min_length"


# --- each rule names itself --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "password", "identifiers", "rule"),
    [
        (PasswordPolicy(), "short1!", (), "min_length"),
        (PasswordPolicy(), "x" * 129, (), "max_length"),
        (PasswordPolicy(strength=1, nist=False), "abc", (), "min_length"),
        (PasswordPolicy(strength=3, nist=False), "abcdefgh", (), "character_classes"),
        (PasswordPolicy(strength=4, custom_regex="z+", nist=False), "abcdef", (), "custom_regex"),
        (PasswordPolicy(), "password1", (), "common_password"),
        (PasswordPolicy(), "Mightymouse77", ("mightymouse77",), "equals_identifier"),
        (PasswordPolicy(), "tangerine\x1bvoyage", (), "control_characters"),
    ],
)
def test_the_failed_rule_is_named_in_the_error_params(
    policy: PasswordPolicy, password: str, identifiers: tuple[str, ...], rule: str
) -> None:
    with pytest.raises(PasswordRejected) as caught:
        policy.check(password, identifiers=identifiers)
    assert caught.value.params["rule"] == rule
    assert caught.value.api_code == 2029
    assert rule in PASSWORD_RULES  # every rule has a message text


# --- passwordSecurityLevel ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "level"),
    [
        ("Abcdefghij12", 3),  # 12 characters, lower, upper, digit
        ("Abcdefghi12", 2),  # 11 characters
        ("abcdefghij12", 2),  # no upper case
        ("ABCDEFGHIJ12", 2),  # no lower case
        ("Abcdefghijkl", 1),  # no digit: not even level 2
        ("abcdefg1", 2),  # 8 characters, letter and digit
        ("abcdef1", 1),  # 7 characters
        ("12345678", 1),  # no letter
        ("abcdefgh", 1),  # no digit
        ("", 1),
    ],
)
def test_password_security_level_boundaries(password: str, level: int) -> None:
    assert password_security_level(password) == level


# --- character classes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "classes"),
    [
        ("", 0),
        ("abc", 1),
        ("123", 1),
        ("!?#", 1),
        ("abc123", 2),
        ("abc!", 2),
        ("123!", 2),
        ("abc123!", 3),
        ("密码1", 2),  # CJK counts as letters
        ("abc def", 1),  # a space is not a symbol
    ],
)
def test_character_classes_counts_letters_digits_and_symbols(password: str, classes: int) -> None:
    assert character_classes(password) == classes

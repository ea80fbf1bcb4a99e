"""Canonical forms of email, username and phone: keyhall.server.identity.normalise."""

from __future__ import annotations

import socket
from typing import Any

import dns.resolver
import pytest

from keyhall.server.errors import InvalidArgument, InvalidEmail
from keyhall.server.identity.normalise import (
    DEFAULT_PHONE_COUNTRY_CODE,
    EMAIL_MAX,
    USERNAME_MAX,
    Email,
    Phone,
    normalise_email,
    normalise_phone,
    normalise_username,
)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any DNS look-up (through the socket module or dnspython) fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"unexpected DNS look-up {args!r}")

    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        monkeypatch.setattr(socket, name, refuse)
    monkeypatch.setattr(dns.resolver, "resolve", refuse)
    monkeypatch.setattr(dns.resolver.Resolver, "resolve", refuse)


def _email_error(raw: str, field: str = "email") -> InvalidEmail:
    with pytest.raises(InvalidEmail) as caught:
        normalise_email(raw, field)
    return caught.value


# --- email -------------------------------------------------------------------------------------


def test_email_key_is_lower_cased_and_trimmed_while_display_keeps_case() -> None:
    assert normalise_email("  Bob@Example.COM \n") == Email(
        display="Bob@Example.COM", normalised="bob@example.com"
    )


def test_email_key_and_display_are_nfc() -> None:
    decomposed = "A\u0308nne@example.com"  # A + combining diaeresis
    result = normalise_email(decomposed)
    assert result.display == "\u00c4nne@example.com"
    assert result.normalised == "\u00e4nne@example.com"


def test_differently_cased_addresses_share_one_key() -> None:
    assert normalise_email("ALICE@EXAMPLE.COM").normalised == normalise_email("alice@example.com").normalised


def test_internationalised_domain_is_kept_in_unicode_and_lower_cased() -> None:
    assert normalise_email("user@BÜCHER.example").normalised == "user@bücher.example"


@pytest.mark.parametrize("raw", ["188xxxx8888", "a@", "@b.c", "a b@c.d", "a@@b.com", "a@b..com", ""])
def test_invalid_email_is_refused_with_api_code_2003_and_the_field_name(raw: str) -> None:
    error = _email_error(raw, "passwordPayload.email")
    assert error.api_code == 2003
    assert error.message_id == "invalid_email"
    assert error.params["field"] == "passwordPayload.email"
    assert error.params["reason"]


def test_whitespace_only_email_is_refused_as_empty() -> None:
    assert _email_error("   ").params["reason"] == "it is empty"


def test_email_of_254_characters_is_accepted_and_255_refused() -> None:
    longest = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".com"
    assert len(longest) == EMAIL_MAX == 254
    assert normalise_email(longest).normalised == longest
    error = _email_error("a" + longest)
    assert error.params == {"field": "email", "reason": "it is longer than 254 characters"}


def test_email_length_is_checked_after_trimming() -> None:
    longest = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".com"
    assert normalise_email(f"  {longest}  ").display == longest


def test_email_is_validated_without_dns(no_network: None) -> None:
    # A syntactically valid address at a domain that does not exist is accepted: no MX/A look-up.
    assert (
        normalise_email("x@nonexistent-domain-keyhall.com").normalised == "x@nonexistent-domain-keyhall.com"
    )


@pytest.mark.parametrize("domain", ["nonexistent-domain-keyhall.invalid", "example.test", "printer.local"])
def test_special_use_domains_are_refused_without_dns(no_network: None, domain: str) -> None:
    # email-validator refuses the special-use names of RFC 6761 (.invalid, .test, .local, .localhost,
    # .onion, .arpa) as part of its *syntax* check, independent of check_deliverability: they can never
    # receive mail. Keyhall does not pass test_environment=True, so .test is refused as well. No DNS is
    # involved (the fixture would fail the test).
    error = _email_error(f"x@{domain}")
    assert "special-use or reserved name" in error.params["reason"]


def test_example_domains_are_accepted(no_network: None) -> None:
    # .example / example.com are reserved for documentation but not on email-validator's special-use list.
    assert normalise_email("x@mail.example").normalised == "x@mail.example"


def test_domain_without_a_dot_is_refused() -> None:
    assert "period" in _email_error("x@localhost").params["reason"]


def test_default_email_field_name_is_email() -> None:
    assert _email_error("nope").params["field"] == "email"


# --- username ----------------------------------------------------------------------------------


def test_username_is_trimmed_and_its_key_case_folded() -> None:
    assert normalise_username("  MightyMouse  ") == ("MightyMouse", "mightymouse")


def test_username_key_uses_casefold_not_lower() -> None:
    assert normalise_username("Straße")[1] == normalise_username("STRASSE")[1] == "strasse"


def test_username_is_nfc() -> None:
    display, key = normalise_username("Jose\u0301")
    assert display == "Jos\u00e9"
    assert key == "jos\u00e9"


def test_username_is_nfc_not_nfkc() -> None:
    # Full-width letters stay as typed: only canonical equivalence is folded.
    assert normalise_username("ＢＯＢ") == ("ＢＯＢ", "ｂｏｂ")


def test_username_of_64_characters_is_accepted_and_65_refused() -> None:
    assert USERNAME_MAX == 64
    assert normalise_username("u" * 64)[0] == "u" * 64
    with pytest.raises(InvalidArgument) as caught:
        normalise_username("u" * 65)
    assert caught.value.params["reason"] == "it is longer than 64 characters"


@pytest.mark.parametrize(
    "raw",
    ["bob smith", "bob\tsmith", "bob\x00", "bob\x1b[31m", "a\u200bb", "a\u00a0b", "a\u3000b", "a\ud800b"],
)
def test_username_with_spaces_or_control_characters_is_refused(raw: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        normalise_username(raw, "passwordPayload.username")
    assert caught.value.params == {
        "field": "passwordPayload.username",
        "reason": "it must not contain spaces or control characters",
    }


def test_username_with_an_at_sign_is_refused() -> None:
    with pytest.raises(InvalidArgument) as caught:
        normalise_username("bob@example.com")
    assert caught.value.params["field"] == "username"
    assert "'@'" in caught.value.params["reason"]


@pytest.mark.parametrize("raw", ["", "   ", "\n"])
def test_empty_username_is_refused(raw: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        normalise_username(raw)
    assert caught.value.params == {"field": "username", "reason": "it is empty"}


def test_username_may_be_non_latin() -> None:
    assert normalise_username("小明_2024") == ("小明_2024", "小明_2024")


# --- phone -------------------------------------------------------------------------------------


def test_phone_defaults_to_country_code_86() -> None:
    assert DEFAULT_PHONE_COUNTRY_CODE == "+86"
    expected = Phone(national="13800138000", country_code="+86", e164="+8613800138000")
    assert normalise_phone("13800138000", None) == expected
    assert normalise_phone("13800138000", "") == expected
    assert normalise_phone("13800138000", "  ") == expected


def test_singapore_number_with_plus_65() -> None:
    assert normalise_phone("81234567", "+65") == Phone(
        national="81234567", country_code="+65", e164="+6581234567"
    )


def test_country_code_without_plus_is_accepted() -> None:
    assert normalise_phone("81234567", "65").e164 == "+6581234567"
    assert normalise_phone("13800138000", " 86 ").e164 == "+8613800138000"


def test_phone_key_is_e164_whatever_the_punctuation() -> None:
    assert normalise_phone(" 138-0013 8000 ", None).e164 == "+8613800138000"
    assert normalise_phone("(138) 0013-8000", "+86").national == "13800138000"


def test_number_with_its_own_plus_prefix_wins_over_the_country_code() -> None:
    assert normalise_phone("+6581234567", "+86").country_code == "+65"


def test_a_number_valid_in_one_country_is_refused_in_another() -> None:
    with pytest.raises(InvalidArgument):
        normalise_phone("81234567", None)  # Singapore mobile, not a Chinese number
    with pytest.raises(InvalidArgument):
        normalise_phone("13800138000", "+65")


@pytest.mark.parametrize("raw", ["188xxxx8888", "123", "114114114", "abc", "+", "1380013800000000"])
def test_invalid_phone_is_refused_naming_the_field(raw: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        normalise_phone(raw, None, "profile.phone")
    assert caught.value.params["field"] == "profile.phone"
    assert repr(raw) in caught.value.params["reason"]


def test_default_phone_field_name_is_phone() -> None:
    with pytest.raises(InvalidArgument) as caught:
        normalise_phone("123", "+86")
    assert caught.value.params["field"] == "phone"


@pytest.mark.parametrize("code", ["abc", "+", "+12345", "8 6", "+8a"])
def test_malformed_country_code_is_refused_naming_phone_country_code(code: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        normalise_phone("13800138000", code)
    assert caught.value.params["field"] == "phoneCountryCode"


def test_malformed_country_code_is_named_beside_its_phone_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        normalise_phone("13800138000", "+x", "profile.phone")
    assert caught.value.params["field"] == "profile.phoneCountryCode"

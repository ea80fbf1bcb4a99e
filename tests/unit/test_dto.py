"""The signup wire DTOs and the rendering of UserDto: keyhall.server.http.dto."""

from __future__ import annotations

import json
import re
import types
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from keyhall.server.http.dto import (
    CUSTOM_DATA_MAX_BYTES,
    PROFILE_COLUMNS,
    PasswordPayload,
    SignUpDto,
    SignUpOptionsDto,
    SignUpProfileDto,
    UserDto,
    profile_columns,
    render_user,
)
from keyhall.server.store.tables import User


def _errors(model: type[Any], data: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return caught.value.errors()


def _locs(model: type[Any], data: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [error["loc"] for error in _errors(model, data)]


def _profile(**fields: Any) -> SignUpProfileDto:
    return SignUpProfileDto.model_validate(fields)


def _nested(depth: int, container: str = "dict") -> dict[str, Any]:
    """A customData object whose objects/arrays reach ``depth`` levels (the top-level object is 1)."""
    value: Any = "leaf"
    for _ in range(depth - 1):
        value = {"k": value} if container == "dict" else [value]
    return {"top": value}


# --- strict types ------------------------------------------------------------------------------


def test_int_password_is_refused_with_its_location() -> None:
    errors = _errors(SignUpDto, {"connection": "PASSWORD", "passwordPayload": {"password": 123456}})
    assert [(e["loc"], e["type"]) for e in errors] == [(("passwordPayload", "password"), "string_type")]


def test_int_nickname_is_refused_with_its_location() -> None:
    assert _locs(SignUpDto, {"connection": "PASSWORD", "profile": {"nickname": 7}}) == [
        ("profile", "nickname")
    ]


@pytest.mark.parametrize("value", [True, 1.5, ["x"], {"x": 1}])
def test_non_string_values_are_not_coerced(value: Any) -> None:
    assert _locs(SignUpProfileDto, {"company": value}) == [("company",)]


def test_customdata_must_be_an_object() -> None:
    assert _locs(SignUpProfileDto, {"customData": ["a"]}) == [("customData",)]


# --- connection and passwordEncryptType --------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"), [("PASSWORD", "PASSWORD"), ("password", "PASSWORD"), (" PassCode ", "PASSCODE")]
)
def test_connection_is_case_insensitive(raw: str, value: str) -> None:
    assert SignUpDto.model_validate({"connection": raw}).connection == value


@pytest.mark.parametrize("raw", ["SOCIAL", "", 1])
def test_unknown_connection_is_refused(raw: Any) -> None:
    assert _locs(SignUpDto, {"connection": raw}) == [("connection",)]


def test_connection_is_required() -> None:
    errors = _errors(SignUpDto, {})
    assert [(e["loc"], e["type"]) for e in errors] == [(("connection",), "missing")]


@pytest.mark.parametrize(
    ("raw", "value"), [("none", "none"), ("RSA", "rsa"), ("Sm2", "sm2"), (" rsa ", "rsa")]
)
def test_password_encrypt_type_is_case_insensitive(raw: str, value: str) -> None:
    assert SignUpOptionsDto.model_validate({"passwordEncryptType": raw}).passwordEncryptType == value


@pytest.mark.parametrize("raw", ["aes", "rsa2048", "", 0])
def test_password_encrypt_type_is_limited_to_none_rsa_sm2(raw: Any) -> None:
    assert _locs(SignUpOptionsDto, {"passwordEncryptType": raw}) == [("passwordEncryptType",)]


# --- tolerance: unknown keys and nulls ---------------------------------------------------------


def test_unknown_keys_are_ignored_at_every_level() -> None:
    dto = SignUpDto.model_validate(
        {
            "connection": "PASSWORD",
            "whatever": 1,
            "passwordPayload": {"password": "x", "legacy": True},
            "profile": {"nickname": "n", "favouriteColour": "blue"},
            "options": {"autoLogin": True},
        }
    )
    assert "whatever" not in dto.model_dump()
    assert "favouriteColour" not in dto.profile.model_dump()  # type: ignore[union-attr]


def test_nulls_mean_not_given() -> None:
    dto = SignUpDto.model_validate(
        {
            "connection": "PASSWORD",
            "passwordPayload": None,
            "profile": None,
            "options": None,
            "passCodePayload": None,
            "client_id": None,
            "client_secret": None,
        }
    )
    assert dto.profile is None
    assert profile_columns(dto.profile) == {}


def test_every_profile_field_accepts_null() -> None:
    profile = SignUpProfileDto.model_validate({name: None for name in SignUpProfileDto.model_fields})
    assert all(value is None for value in profile.model_dump().values())
    options = SignUpOptionsDto.model_validate({name: None for name in SignUpOptionsDto.model_fields})
    assert all(value is None for value in options.model_dump().values())


# --- gender and birthdate ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [("M", "M"), ("F", "F"), ("U", "U"), ("W", "F"), ("m", "M"), ("f", "F"), ("w", "F"), (" u ", "U")],
)
def test_gender_is_m_f_or_u_with_w_meaning_female(raw: str, value: str) -> None:
    assert _profile(gender=raw).gender == value


@pytest.mark.parametrize("raw", ["X", "male", "", "MF"])
def test_other_genders_are_refused(raw: str) -> None:
    assert _locs(SignUpProfileDto, {"gender": raw}) == [("gender",)]


@pytest.mark.parametrize("raw", ["2020-02-02", "2020.2.2", "2020/2/2", "2020-2-02", " 2020/02/02 "])
def test_birthdate_formats_are_rendered_as_iso(raw: str) -> None:
    assert _profile(birthdate=raw).birthdate == "2020-02-02"


def test_birthdate_on_a_leap_day_is_accepted() -> None:
    assert _profile(birthdate="2020.2.29").birthdate == "2020-02-29"


@pytest.mark.parametrize(
    "raw",
    [
        "2020-02-30",
        "2019-02-29",
        "2020-13-01",
        "0000-01-01",
        "yesterday",
        "20200202",
        "2020-02",
        "02/02/2020",
        "2020-02-02T00:00:00Z",
    ],
)
def test_impossible_or_unparsable_birthdates_are_refused(raw: str) -> None:
    assert _locs(SignUpProfileDto, {"birthdate": raw}) == [("birthdate",)]


# --- URLs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "https://cdn.example.com/a/b.png?x=1#y",
        "HTTPS://EXAMPLE.COM",
        "http://127.0.0.1:8080/",
    ],
)
@pytest.mark.parametrize("field", ["photo", "website"])
def test_http_and_https_urls_are_accepted(field: str, url: str) -> None:
    assert getattr(_profile(**{field: url}), field) == url


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "ftp://example.com/file",
        "file:///etc/passwd",
        "//example.com/x.png",
        "example.com/x.png",
        "http://",
        "https:///path-only",
        "http://exa mple.com/",
        "http://example.com/a b.png",
        "http://example.com/\t",
        "http://example.com/\u3000",
        "http://[::1",
        "",
    ],
)
@pytest.mark.parametrize("field", ["photo", "website"])
def test_non_http_urls_are_refused(field: str, url: str) -> None:
    assert _locs(SignUpProfileDto, {field: url}) == [(field,)]


def test_url_over_2048_characters_is_refused() -> None:
    url = "https://example.com/" + "a" * 2028
    assert len(url) == 2048
    assert _profile(photo=url).photo == url
    assert _locs(SignUpProfileDto, {"photo": url + "a"}) == [("photo",)]


@pytest.mark.parametrize("url", ["http://:80", "http://@/", "https://user@:443/x"])
def test_url_with_an_empty_host_is_refused(url: str) -> None:
    assert _locs(SignUpProfileDto, {"photo": url}) == [("photo",)]


# --- string lengths and characters -------------------------------------------------------------


def test_nickname_of_255_characters_is_accepted_and_256_refused() -> None:
    assert _profile(nickname="n" * 255).nickname == "n" * 255
    assert _locs(SignUpProfileDto, {"nickname": "n" * 256}) == [("nickname",)]


def test_lengths_count_characters_not_bytes() -> None:
    assert _profile(nickname="名" * 255).nickname == "名" * 255


def test_long_fields_allow_2048_characters() -> None:
    assert _profile(profile="p" * 2048).profile == "p" * 2048
    assert _locs(SignUpProfileDto, {"profile": "p" * 2049}) == [("profile",)]


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\n", "\r", "\t"])
@pytest.mark.parametrize("field", ["nickname", "name", "company", "givenName", "locality"])
def test_control_characters_are_refused_in_single_line_fields(field: str, char: str) -> None:
    assert _locs(SignUpProfileDto, {field: f"ab{char}cd"}) == [(field,)]


@pytest.mark.parametrize("field", ["profile", "address", "formatted", "streetAddress"])
def test_newlines_and_tabs_are_allowed_in_multi_line_fields(field: str) -> None:
    text = "Line one\r\nLine two\n\tindented"
    assert getattr(_profile(**{field: text}), field) == text


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b"])
@pytest.mark.parametrize("field", ["profile", "address"])
def test_other_control_characters_are_refused_in_multi_line_fields(field: str, char: str) -> None:
    assert _locs(SignUpProfileDto, {field: f"ab{char}cd"}) == [(field,)]


@pytest.mark.parametrize("field", ["nickname", "profile", "address"])
def test_lone_surrogates_are_refused(field: str) -> None:
    assert _locs(SignUpProfileDto, {field: "ab\ud800cd"}) == [(field,)]


def test_password_content_is_left_to_the_policy_and_only_its_length_capped() -> None:
    # A control character in the password is the password policy's to refuse (400/2029), not the DTO's.
    payload = SignUpDto.model_validate(
        {"connection": "PASSWORD", "passwordPayload": {"password": "pa\x00ss"}}
    )
    assert payload.passwordPayload.password == "pa\x00ss"  # type: ignore[union-attr]
    assert PasswordPayload.model_validate({"password": "p" * 4096}).password == "p" * 4096
    errors = _errors(SignUpDto, {"connection": "PASSWORD", "passwordPayload": {"password": "p" * 4097}})
    assert [(e["loc"], e["type"]) for e in errors] == [(("passwordPayload", "password"), "string_too_long")]


def test_nul_in_options_is_refused() -> None:
    assert _locs(SignUpOptionsDto, {"clientIp": "1.2.3.4\x00"}) == [("clientIp",)]


# --- customData --------------------------------------------------------------------------------


def test_custom_data_nested_exactly_five_levels_is_accepted() -> None:
    data = _nested(5)
    assert data == {"top": {"k": {"k": {"k": {"k": "leaf"}}}}}
    assert _profile(customData=data).customData == data


def test_custom_data_nested_six_levels_is_refused() -> None:
    assert _locs(SignUpProfileDto, {"customData": _nested(6)}) == [("customData",)]


def test_scalars_do_not_count_as_levels() -> None:
    data = {"a": {"b": {"c": {"d": {"n": 1, "s": "x", "t": True, "z": None, "f": 1.5}}}}}
    assert _profile(customData=data).customData == data


def test_arrays_count_as_levels() -> None:
    assert _profile(customData=_nested(5, "list")).customData == {"top": [[[["leaf"]]]]}
    assert _locs(SignUpProfileDto, {"customData": _nested(6, "list")}) == [("customData",)]
    mixed = {"a": [{"b": [{"c": 1}]}]}  # object, array, object, array, object: 5
    assert _profile(customData=mixed).customData == mixed
    assert _locs(SignUpProfileDto, {"customData": {"a": [{"b": [{"c": []}]}]}}) == [("customData",)]


def test_empty_containers_count_as_levels() -> None:
    assert _locs(SignUpProfileDto, {"customData": {"a": {"b": {"c": {"d": {"e": {}}}}}}}) == [("customData",)]


def test_options_context_has_the_same_depth_limit() -> None:
    assert SignUpOptionsDto.model_validate({"context": _nested(5)}).context == _nested(5)
    assert _locs(SignUpOptionsDto, {"context": _nested(6)}) == [("context",)]


def test_custom_data_up_to_16_kib_is_accepted_and_larger_refused() -> None:
    # The size is measured as compact JSON (no spaces), UTF-8 bytes: {"k":"..."} is 8 bytes plus the value.
    assert CUSTOM_DATA_MAX_BYTES == 16 * 1024
    fits = {"k": "x" * (CUSTOM_DATA_MAX_BYTES - 8)}
    assert len(json.dumps(fits, ensure_ascii=False, separators=(",", ":")).encode()) == CUSTOM_DATA_MAX_BYTES
    assert _profile(customData=fits).customData == fits
    assert _locs(SignUpProfileDto, {"customData": {"k": "x" * (CUSTOM_DATA_MAX_BYTES - 7)}}) == [
        ("customData",)
    ]


def test_custom_data_size_counts_utf8_bytes_not_characters() -> None:
    data = {"k": "é" * 8200}  # 8,209 characters, 16,409 bytes
    assert _locs(SignUpProfileDto, {"customData": data}) == [("customData",)]


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused_in_custom_data(number: float) -> None:
    assert _locs(SignUpProfileDto, {"customData": {"a": number}}) == [("customData",)]
    assert _locs(SignUpProfileDto, {"customData": {"a": [{"b": number}]}}) == [("customData",)]


@pytest.mark.parametrize(
    "data",
    [{"a\x00": 1}, {"a": "b\x00"}, {"a": ["\x00"]}, {"a": {"b\x00": 1}}, {"a": "\ud800"}, {"\udfff": 1}],
)
def test_nul_and_lone_surrogates_are_refused_in_custom_data_keys_and_values(data: dict[str, Any]) -> None:
    assert _locs(SignUpProfileDto, {"customData": data}) == [("customData",)]


def test_other_control_characters_are_allowed_in_custom_data() -> None:
    data = {"text": "line\nnext\ttab\x07"}
    assert _profile(customData=data).customData == data


def test_custom_data_from_json_text_is_checked_too() -> None:
    body = '{"connection": "PASSWORD", "profile": {"customData": {"a": "\\u0000"}}}'
    with pytest.raises(ValidationError) as caught:
        SignUpDto.model_validate_json(body)
    assert [e["loc"] for e in caught.value.errors()] == [("profile", "customData")]


# --- profile_columns ---------------------------------------------------------------------------


def test_profile_columns_maps_camel_case_fields_to_columns() -> None:
    profile = _profile(
        nickname="Nick",
        givenName="Ada",
        familyName="Lovelace",
        streetAddress="1 Road",
        postalCode="100000",
        birthdate="1815/12/10",
        gender="w",
        email="x@example.com",
        phone="13800138000",
        customData={"a": 1},
    )
    assert profile_columns(profile) == {
        "nickname": "Nick",
        "given_name": "Ada",
        "family_name": "Lovelace",
        "street_address": "1 Road",
        "postal_code": "100000",
        "birthdate": "1815-12-10",
        "gender": "F",
    }


def test_profile_columns_of_no_profile_is_empty() -> None:
    assert profile_columns(None) == {}
    assert profile_columns(SignUpProfileDto()) == {}


def test_every_profile_column_exists_on_the_users_table() -> None:
    columns = set(User.__table__.columns.keys())
    assert set(PROFILE_COLUMNS.values()) <= columns
    assert set(PROFILE_COLUMNS) == set(SignUpProfileDto.model_fields) - {
        "email",
        "phone",
        "phoneCountryCode",
        "customData",
    }


# --- render_user -------------------------------------------------------------------------------

CREATED = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"


def _row(**overrides: Any) -> types.SimpleNamespace:
    values: dict[str, Any] = {
        "id": "018f4b2c9a1e5d6f7a8b9c0d",
        "pool_id": "018f4b2c9a1e000000000001",
        "status": "Activated",
        "work_status": "Active",
        "external_id": None,
        "email": "Ada@Example.com",
        "email_norm": "ada@example.com",
        "email_verified": False,
        "phone": "13800138000",
        "phone_country_code": "+86",
        "phone_e164": "+8613800138000",
        "phone_verified": False,
        "username": "Ada",
        "username_norm": "ada",
        "password_hash": HASH,
        "password_security_level": 2,
        "password_last_set_at": CREATED,
        "reset_password_on_next_login": False,
        "name": "Ada Lovelace",
        "nickname": "ada",
        "given_name": "Ada",
        "family_name": "Lovelace",
        "middle_name": None,
        "preferred_username": None,
        "profile": "Analyst\nof engines",
        "photo": "https://example.com/ada.png",
        "website": None,
        "gender": "F",
        "birthdate": "1815-12-10",
        "zoneinfo": None,
        "locale": "en-GB",
        "company": None,
        "browser": None,
        "device": None,
        "country": "GB",
        "province": None,
        "city": None,
        "region": None,
        "locality": None,
        "address": None,
        "formatted": None,
        "street_address": None,
        "postal_code": None,
        "custom_data": {"team": "engines"},
        "user_source_type": "register",
        "user_source_id": None,
        "logins_count": 0,
        "last_login": None,
        "last_ip": None,
        "last_login_app": None,
        "last_mfa_time": None,
        "main_department_id": None,
        "signup_ip": "203.0.113.9",
        "status_changed_at": CREATED,
        "created_at": CREATED,
        "updated_at": CREATED + timedelta(seconds=1),
    }
    values.update(overrides)
    return types.SimpleNamespace(**values)


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for item in value.values() for k in _keys(item)}
    if isinstance(value, list):
        return {k for item in value for k in _keys(item)}
    return set()


def test_fake_row_has_every_column_of_the_users_table() -> None:
    assert set(vars(_row())) == set(User.__table__.columns.keys())


def test_render_user_has_exactly_the_user_dto_fields() -> None:
    rendered = render_user(_row())
    assert set(rendered) == set(UserDto.model_fields)
    UserDto.model_validate(rendered)


def test_render_user_never_contains_the_password_hash() -> None:
    rendered = render_user(_row())
    assert not any("password_hash" in key or "passwordHash" in key for key in _keys(rendered))
    assert HASH not in json.dumps(rendered)
    assert "$argon2" not in json.dumps(rendered)


def test_render_user_never_contains_internal_columns() -> None:
    text = json.dumps(render_user(_row()))
    for secret in ("ada@example.com", "+8613800138000", "203.0.113.9", "018f4b2c9a1e000000000001"):
        assert secret not in text


def test_render_user_maps_columns_to_camel_case() -> None:
    rendered = render_user(_row())
    assert rendered["userId"] == "018f4b2c9a1e5d6f7a8b9c0d"
    assert rendered["email"] == "Ada@Example.com"
    assert rendered["givenName"] == "Ada"
    assert rendered["familyName"] == "Lovelace"
    assert rendered["phoneCountryCode"] == "+86"
    assert rendered["passwordSecurityLevel"] == 2
    assert rendered["customData"] == {"team": "engines"}
    assert rendered["departmentIds"] == []
    assert rendered["identities"] == []


def test_render_user_times_are_iso_8601_with_milliseconds_and_z() -> None:
    rendered = render_user(_row())
    assert rendered["createdAt"] == "2024-05-06T07:08:09.123Z"
    assert rendered["updatedAt"] == "2024-05-06T07:08:10.123Z"
    assert rendered["passwordLastSetAt"] == "2024-05-06T07:08:09.123Z"
    assert rendered["statusChangedAt"] == "2024-05-06T07:08:09.123Z"
    assert rendered["lastLogin"] is None
    assert rendered["lastMfaTime"] is None
    pattern = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
    for key in ("createdAt", "updatedAt", "passwordLastSetAt", "statusChangedAt"):
        assert pattern.fullmatch(rendered[key])


def test_render_user_converts_other_time_zones_to_utc_and_reads_naive_times_as_utc() -> None:
    beijing = timezone(timedelta(hours=8))
    rendered = render_user(
        _row(
            last_login=datetime(2024, 1, 1, 8, 0, 0, 5000, tzinfo=beijing), last_mfa_time=datetime(2024, 1, 1)
        )
    )
    assert rendered["lastLogin"] == "2024-01-01T00:00:00.005Z"
    assert rendered["lastMfaTime"] == "2024-01-01T00:00:00.000Z"


def test_render_user_with_null_custom_data_gives_an_empty_object() -> None:
    assert render_user(_row(custom_data=None))["customData"] == {}


def test_render_user_passes_identities_through() -> None:
    identity = {
        "identityId": "i",
        "extIdpId": "e",
        "provider": "p",
        "type": "t",
        "userIdInIdp": "u",
        "originConnIds": [],
    }
    rendered = render_user(_row(), [identity])
    assert rendered["identities"] == [identity]
    UserDto.model_validate(rendered)

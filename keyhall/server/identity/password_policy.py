"""A pool's password policy, and the ``passwordSecurityLevel`` GenAuth reports for a password.

Two layers, both checked at registration:

* GenAuth's strength levels (``strength``): 0 none, 1 at least 6 characters, 2 two of
  {letters, digits, symbols}, 3 all three, 4 an administrator's regular expression.
* NIST SP 800-63B rules (``nist``, on by default): at least 8 and at most 128 characters, any Unicode
  (compared and hashed after NFKC), not on the bundled list of common/breached passwords, not the same
  as the user's email or username.

Each rule is a small function; the first one that fails names itself in :class:`PasswordRejected`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from keyhall.server.errors import PasswordMissing, PasswordRejected

NIST_MIN_LENGTH = 8
NIST_MAX_LENGTH = 128
GENAUTH_MIN_LENGTH = 6


@dataclass(frozen=True)
class PasswordPolicy:
    """The password rules of one user pool (stored on the pool)."""

    strength: int = 0
    custom_regex: str | None = None
    custom_message: str | None = None
    nist: bool = True
    min_length: int = NIST_MIN_LENGTH
    max_length: int = NIST_MAX_LENGTH

    def check(self, password: str, *, identifiers: tuple[str, ...] = ()) -> str:
        """Return the NFKC form of ``password`` (the one to hash) or raise the first failed rule.

        ``identifiers`` are the email and/or username the password must not equal.
        """
        if not password:
            raise PasswordMissing()
        normalised = normalise_password(password)
        for rule in self._rules():
            rule(normalised, identifiers)
        return normalised

    def _rules(self) -> Iterator[Callable[[str, tuple[str, ...]], None]]:
        yield _no_control_characters
        if self.nist:
            yield self._length
        if self.strength >= 1:
            yield _genauth_min_length
        if self.strength in (2, 3):
            yield _character_classes(self.strength)
        if self.strength == 4 and self.custom_regex:
            yield self._custom_regex
        if self.nist:
            yield _not_common
            yield _not_identifier

    def _length(self, password: str, _: tuple[str, ...]) -> None:
        if len(password) < self.min_length:
            raise PasswordRejected(rule="min_length", min_length=self.min_length)
        if len(password) > self.max_length:
            raise PasswordRejected(rule="max_length", max_length=self.max_length)

    def _custom_regex(self, password: str, _: tuple[str, ...]) -> None:
        assert self.custom_regex is not None
        if _compiled(self.custom_regex).fullmatch(password) is None:
            message = self.custom_message or f"it must match the pattern {self.custom_regex}"
            raise PasswordRejected(rule="custom_regex", custom_message=message)


def normalise_password(password: str) -> str:
    """NFKC, as NIST 800-63B asks, so that equivalent Unicode input verifies the same way."""
    return unicodedata.normalize("NFKC", password)


def password_security_level(password: str) -> int:
    """GenAuth's level: 3 if >= 12 characters with lower, upper and digit; 2 if >= 8 with letter and digit;
    else 1 (the rule of GenAuth's JS SDK)."""
    has_lower = any(c.islower() for c in password)
    has_upper = any(c.isupper() for c in password)
    has_digit = any(c.isdigit() for c in password)
    has_letter = any(c.isalpha() for c in password)
    if len(password) >= 12 and has_lower and has_upper and has_digit:
        return 3
    if len(password) >= 8 and has_letter and has_digit:
        return 2
    return 1


def character_classes(password: str) -> int:
    """How many of GenAuth's classes (letters, digits, symbols) the password uses."""
    letters = any(c.isalpha() for c in password)
    digits = any(c.isdigit() for c in password)
    symbols = any(not c.isalnum() and not c.isspace() for c in password)
    return letters + digits + symbols


def _no_control_characters(password: str, _: tuple[str, ...]) -> None:
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in password):
        raise PasswordRejected(rule="control_characters")


def _genauth_min_length(password: str, _: tuple[str, ...]) -> None:
    if len(password) < GENAUTH_MIN_LENGTH:
        raise PasswordRejected(rule="min_length", min_length=GENAUTH_MIN_LENGTH)


def _character_classes(required: int) -> Callable[[str, tuple[str, ...]], None]:
    def rule(password: str, _: tuple[str, ...]) -> None:
        if character_classes(password) < required:
            raise PasswordRejected(rule="character_classes", classes=required)

    return rule


def _not_common(password: str, _: tuple[str, ...]) -> None:
    if password.casefold() in common_passwords():
        raise PasswordRejected(rule="common_password")


def _not_identifier(password: str, identifiers: tuple[str, ...]) -> None:
    folded = password.casefold()
    for identifier in identifiers:
        if not identifier:
            continue
        candidate = normalise_password(identifier).casefold()
        if folded == candidate or ("@" in candidate and folded == candidate.split("@", 1)[0]):
            raise PasswordRejected(rule="equals_identifier")


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords of leaked data sets, as ranked by zxcvbn's frequency list.

    zxcvbn is maintained and ships the list as data; loading it takes about 30 ms, once per process.
    """
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(word.casefold() for word in FREQUENCY_LISTS["passwords"])


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)

"""The sign-in flow in-process against a real database with a hand-moved clock: the lockout ends when its
time is up, and failures spread wider than the window do not lock; signing-key rotation keeps old tokens
verifiable; PasswordHasher.verify and rehash."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import jwt
import pytest

from keyhall.server.crypto.cpu import CpuPool
from keyhall.server.crypto.passwords import Argon2Params, PasswordHasher
from keyhall.server.errors import AccountLocked, InvalidToken, SignInRefused
from keyhall.server.flows.signin import PasswordSignIn
from keyhall.server.tokens.keys import rotate_signing_key
from tests.support.flows import PASSWORD, Running, new_user


async def test_guesses_sent_at_once_get_no_more_checks_than_the_lockout_allows(
    running: Running,
) -> None:
    """Sixteen wrong passwords at once against one account: exactly max_failures (10) are checked and
    refused as wrong, the rest are refused as locked without a check, and the account is locked."""
    services, app, _clock = running
    email = await new_user(services, app, "parallel")
    checks = 0
    verify = services.hasher.verify

    async def counting_verify(*args: object, **kwargs: object) -> object:
        nonlocal checks
        checks += 1
        return await verify(*args, **kwargs)  # type: ignore[arg-type]

    services.hasher.verify = counting_verify  # type: ignore[method-assign]

    async def guess(n: int) -> str:
        try:
            await services.signin.sign_in_by_password(
                app, PasswordSignIn(password=f"{PASSWORD}-{n}", email=email, client_ip="192.0.2.9")
            )
        except (SignInRefused, AccountLocked) as refused:
            return type(refused).__name__
        return "signed in"

    answers = await asyncio.gather(*(guess(n) for n in range(16)))
    assert answers.count("SignInRefused") == app.lockout.max_failures == checks == 10, answers
    assert answers.count("AccountLocked") == 6
    with pytest.raises(AccountLocked):
        await services.signin.sign_in_by_password(app, PasswordSignIn(password=PASSWORD, email=email))


async def test_lockout_ends_when_its_time_is_up(running: Running) -> None:
    services, app, clock = running
    email = await new_user(services, app, "flow")
    wrong = PasswordSignIn(password=PASSWORD + "x", email=email, client_ip="192.0.2.7")
    for _ in range(app.lockout.max_failures):
        with pytest.raises(SignInRefused):
            await services.signin.sign_in_by_password(app, wrong)
    right = PasswordSignIn(password=PASSWORD, email=email.upper(), client_ip="192.0.2.7")
    with pytest.raises(AccountLocked):
        await services.signin.sign_in_by_password(app, right)
    clock.now += timedelta(seconds=app.lockout.lock_s - 5)
    with pytest.raises(AccountLocked):
        await services.signin.sign_in_by_password(app, right)
    clock.now += timedelta(seconds=10)
    signed_in = await services.signin.sign_in_by_password(app, right)
    assert signed_in.user.email == email
    assert signed_in.user.logins_count == 1


async def test_failures_spread_over_more_than_the_window_do_not_lock(
    running: Running,
) -> None:
    services, app, clock = running
    email = await new_user(services, app, "slow")
    wrong = PasswordSignIn(password=PASSWORD + "x", email=email)
    for _ in range(app.lockout.max_failures - 1):
        with pytest.raises(SignInRefused):
            await services.signin.sign_in_by_password(app, wrong)
    clock.now += timedelta(seconds=app.lockout.window_s)
    with pytest.raises(SignInRefused):
        await services.signin.sign_in_by_password(app, wrong)  # the first failure of a new window
    signed_in = await services.signin.sign_in_by_password(app, PasswordSignIn(password=PASSWORD, email=email))
    assert signed_in.tokens.access_token


async def test_rotated_signing_key_still_verifies_old_tokens(
    running: Running,
) -> None:
    services, app, clock = running
    email = await new_user(services, app, "rotate")
    before = await services.signin.sign_in_by_password(app, PasswordSignIn(password=PASSWORD, email=email))
    old_kids = {k["kid"] for k in (await services.signing_keys.jwks())["keys"]}
    new_kid, retired = await rotate_signing_key(services.engine, services.kek, clock)
    assert set(retired) <= old_kids and new_kid not in old_kids
    jwks = {k["kid"] for k in (await services.signing_keys.jwks())["keys"]}
    assert jwks == old_kids | {new_kid}
    after = await services.signin.sign_in_by_password(app, PasswordSignIn(password=PASSWORD, email=email))
    assert jwt.get_unverified_header(after.tokens.access_token)["kid"] == new_kid
    assert jwt.get_unverified_header(before.tokens.access_token)["kid"] in old_kids
    for token in (before.tokens.access_token, after.tokens.access_token):
        claims = await services.tokens.verify_access(token, app.id)
        assert claims["sub"] == before.user.id
    # once every token the old key signed has expired, the old key leaves the JWKS
    clock.now += timedelta(seconds=app.refresh_token_ttl_s + app.access_token_ttl_s + 60)
    await services.signing_keys.reload()
    assert {k["kid"] for k in (await services.signing_keys.jwks())["keys"]} == {new_kid}


async def test_a_remembered_token_still_expires_and_dies_with_its_key(
    running: Running,
) -> None:
    """Tokens._decode remembers verified tokens; expiry and the signing key are checked on every use."""
    services, app, clock = running
    email = await new_user(services, app, "remembered")
    signed = await services.signin.sign_in_by_password(app, PasswordSignIn(password=PASSWORD, email=email))
    token = signed.tokens.access_token
    claims = await services.tokens.verify_access(token, app.id)  # verified, now remembered
    claims["sub"] = "tampered"  # callers get a copy: the remembered claims stay as verified
    assert (await services.tokens.verify_access(token, app.id))["sub"] == signed.user.id
    with pytest.raises(InvalidToken, match="another application"):
        await services.tokens.verify_access(token, "0" * 24)  # remembered per audience
    clock.now += timedelta(seconds=app.access_token_ttl_s + 1)
    with pytest.raises(InvalidToken, match="expired"):
        await services.tokens.verify_access(token, app.id)
    clock.now -= timedelta(seconds=app.access_token_ttl_s + 1)
    assert (await services.tokens.verify_access(token, app.id))["sub"] == signed.user.id
    # the key is rotated out and then deleted: the remembered token goes with it
    await rotate_signing_key(services.engine, services.kek, clock)
    clock.now += timedelta(seconds=app.refresh_token_ttl_s + app.access_token_ttl_s + 60)
    await rotate_signing_key(services.engine, services.kek, clock)
    await services.signing_keys.reload()
    clock.now -= timedelta(seconds=app.refresh_token_ttl_s + app.access_token_ttl_s + 60)
    with pytest.raises(InvalidToken, match="current key"):
        await services.tokens.verify_access(token, app.id)


async def test_password_hasher_verify_and_rehash() -> None:
    hasher = PasswordHasher(CpuPool(1))
    low = Argon2Params(time_cost=1, memory_kib=8192, parallelism=1)
    high = Argon2Params(time_cost=2, memory_kib=8192, parallelism=1)
    stored = await hasher.hash(PASSWORD, low)
    assert (await hasher.verify(stored, PASSWORD, low)).matches
    assert not (await hasher.verify(stored, PASSWORD, low)).needs_rehash
    assert not (await hasher.verify(stored, PASSWORD + "x", low)).matches
    changed = await hasher.verify(stored, PASSWORD, high)
    assert changed.matches and changed.needs_rehash
    assert not (await hasher.verify("not a hash", PASSWORD, low)).matches
    assert not (await hasher.verify_unknown(PASSWORD, low)).matches


class _WatchedPool(CpuPool):
    """A real CPU pool that also notes what it ran (the function's name and its arguments)."""

    def __init__(self) -> None:
        super().__init__(1)
        self.runs: list[tuple[str, tuple[object, ...]]] = []

    async def run(self, function, *args):  # type: ignore[no-untyped-def,override]
        self.runs.append((function.__name__, args))
        return await super().run(function, *args)


async def test_an_unknown_account_costs_one_argon2_verification_at_the_pool_parameters() -> None:
    # Same time class without timing anything: the unknown account's check is the same work, one
    # argon2id verification against a hash made at the pool's parameters, as a wrong password's.
    pool = _WatchedPool()
    hasher = PasswordHasher(pool)
    params = Argon2Params(time_cost=1, memory_kib=8192, parallelism=1)
    stored = await hasher.hash(PASSWORD, params)
    await hasher.verify_unknown(PASSWORD, params)  # the first call also makes the dummy hash
    pool.runs.clear()
    assert not (await hasher.verify(stored, PASSWORD + "x", params)).matches
    assert not (await hasher.verify_unknown(PASSWORD, params)).matches
    assert [name for name, _ in pool.runs] == ["_verify", "_verify"]
    wrong_hash, dummy_hash = (str(args[1]) for _, args in pool.runs)
    assert wrong_hash == stored and dummy_hash != stored
    assert wrong_hash.split("$")[2:4] == dummy_hash.split("$")[2:4]  # v=19 and m=8192,t=1,p=1

"""The courier's parts in-process: SMTP URLs, templates, the retry schedule, and the outbox state machine."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keyhall.server.courier.message import DeliveryError, Message, PermanentDeliveryError
from keyhall.server.courier.outbox import Outbox, RetryPolicy, list_messages
from keyhall.server.courier.sms import sign
from keyhall.server.courier.smtp import SmtpTransport, SmtpUrlError
from keyhall.server.courier.templates import EMAIL_CHANNELS, SMS_CHANNELS, render_code_message
from keyhall.server.crypto.kek import KeyEncryptionKey
from keyhall.server.flows.setup import initialise
from keyhall.server.store.db import create_engine, write_transaction

KEK = KeyEncryptionKey.from_secret("unit-test-secret-key-0123456789abcdef")


def test_smtp_url_forms() -> None:
    plain = SmtpTransport.from_url("smtp://mail.example.com", "a@b.c")
    assert (plain.port, plain.use_tls, plain.start_tls, plain.username) == (25, False, None, None)
    submission = SmtpTransport.from_url("smtp://us%40er:p%3Ass@mail.example.com?starttls=true", "a@b.c")
    assert (submission.port, submission.start_tls, submission.username, submission.password) == (
        587,
        True,
        "us@er",
        "p:ss",
    )
    tls = SmtpTransport.from_url("smtps://u:p@mail.example.com", "a@b.c")
    assert (tls.port, tls.use_tls, tls.start_tls) == (465, True, False)
    assert "p:ss" not in repr(submission)


@pytest.mark.parametrize(
    "url", ["http://mail.example.com", "smtp://", "smtp://h?starttls=maybe", "smtps://h?starttls=true"]
)
def test_bad_smtp_urls_are_refused_without_echoing_secrets(url: str) -> None:
    with pytest.raises(SmtpUrlError) as caught:
        SmtpTransport.from_url(url.replace("h", "user:hunter2@h", 1) if "//h" in url else url, "a@b.c")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("lang", ["en-US", "zh-CN"])
def test_every_channel_has_a_text_and_html_template(lang: str) -> None:
    for channel in EMAIL_CHANNELS:
        message = render_code_message("email", channel, "a@b.c", "012345", 300, lang)
        assert "012345" in message.text and "012345" in (message.html or "") and message.subject
        assert "5" in message.text and message.lang == lang
    for channel in SMS_CHANNELS:
        sms = render_code_message("sms", channel, "+8613800000000", "012345", 300, lang)
        assert "012345" in sms.text and sms.html is None


def test_retry_delays_double_up_to_the_cap() -> None:
    policy = RetryPolicy(base_s=2, cap_s=20)
    assert [policy.delay(n) for n in range(1, 7)] == [2, 4, 8, 16, 20, 20]


def test_webhook_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(b"k", b"123.{}", hashlib.sha256).hexdigest()
    assert sign(b"k", "123", b"{}") == f"sha256={expected}"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.fail_with: Exception | None = None
        self.block: asyncio.Event | None = None

    async def send(self, message: Message) -> None:
        if self.block is not None:
            await self.block.wait()
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(message)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Outbox, Recorder, Clock, str]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'k.db'}")
    clock = Clock()
    pool_id = (await initialise(engine, clock)).pool_id
    recorder = Recorder()
    outbox = Outbox(engine, KEK, {"email": recorder, "sms": None}, RetryPolicy(3, 2, 60, 30, 1), clock)
    yield outbox, recorder, clock, pool_id
    await engine.dispose()


async def _queue(outbox: Outbox, pool_id: str, to: str) -> None:
    async with write_transaction(outbox._engine) as conn:
        await outbox.enqueue(
            conn, pool_id, render_code_message("email", "CHANNEL_LOGIN", to, "111111", 60, "en-US")
        )


async def test_failures_back_off_then_fail_for_good(setup: tuple[Outbox, Recorder, Clock, str]) -> None:
    outbox, recorder, clock, pool_id = setup
    await _queue(outbox, pool_id, "a@b.c")
    recorder.fail_with = DeliveryError("down")
    assert await outbox.deliver_due() == 1
    assert await outbox.deliver_due() == 0, "not due before its backoff"
    clock.now += timedelta(seconds=2)
    assert await outbox.deliver_due() == 1
    clock.now += timedelta(seconds=3)
    assert await outbox.deliver_due() == 0, "the second delay is 4 s"
    clock.now += timedelta(seconds=1)
    assert await outbox.deliver_due() == 1
    [row] = await list_messages(outbox._engine, KEK)
    assert row["state"] == "failed" and row["attempts"] == 3 and "text" not in row
    assert row["lastError"] == "down"


async def test_permanent_failure_is_not_retried(setup: tuple[Outbox, Recorder, Clock, str]) -> None:
    outbox, recorder, clock, pool_id = setup
    await _queue(outbox, pool_id, "a@b.c")
    recorder.fail_with = PermanentDeliveryError("refused")
    await outbox.deliver_due()
    clock.now += timedelta(hours=1)
    assert await outbox.deliver_due() == 0
    assert (await list_messages(outbox._engine, KEK))[0]["state"] == "failed"


async def test_a_claimed_message_is_not_claimed_again_until_its_lease_ends(
    setup: tuple[Outbox, Recorder, Clock, str],
) -> None:
    outbox, recorder, clock, pool_id = setup
    await _queue(outbox, pool_id, "a@b.c")
    recorder.block = asyncio.Event()
    stuck = asyncio.create_task(outbox.deliver_due())  # a worker that hangs mid-send
    await asyncio.sleep(0.2)
    assert await outbox.deliver_due() == 0, "a live claim is not taken over"
    clock.now += timedelta(seconds=31)  # the lease (30 s) ran out: the first worker counts as dead
    recorder.block = None
    assert await outbox.deliver_due() == 1
    assert len(recorder.sent) == 1
    stuck.cancel()
    [row] = await list_messages(outbox._engine, KEK)
    assert row["state"] == "sent" and row["attempts"] == 2

"""Prometheus metrics: the counters, histograms and gauges of a Keyhall process, and their rendering.

Call the small functions below from the code that knows the event (``record_signup`` where a user was
created, ``record_signin_failure`` where a sign-in was refused, ``set_courier_queue_depth`` where the
outbox was counted); ``render`` gives ``GET /metrics`` its body.

Several workers: ``keyhall serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before any worker
starts (and removes it when the server stops). prometheus-client then keeps each process's values in
memory-mapped files there, and ``render`` adds them up, so one scrape sees the whole server whichever
worker answers it. Without that variable (an app built in-process) the values are this process's only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter(
    "keyhall_requests",
    "Requests answered, by route template, method and outcome (the envelope's statusCode, else HTTP status)",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "keyhall_request_duration_seconds",
    "Time from the first byte of the request to the end of the answer, by route template",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
IN_FLIGHT = Gauge(
    "keyhall_requests_in_flight",
    "Requests being handled now",
    multiprocess_mode="livesum",
)
SIGNUPS = Counter("keyhall_signups", "Users created, by connection (PASSWORD, PASSCODE)", ["connection"])
SIGNIN_FAILURES = Counter(
    "keyhall_signin_failures",
    "Refused sign-ins, by reason (e.g. wrong_password, unknown_account, locked, suspended, wrong_code)",
    ["reason"],
)
HASH_SECONDS = Histogram(
    "keyhall_password_hash_seconds",
    "Time to hash one password with argon2id (in the CPU pool, queueing excluded)",
    buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5),
)
CPU_QUEUE_REJECTIONS = Counter(
    "keyhall_cpu_queue_rejections",
    "Requests answered 503 because the queue for password hashing/decryption was full",
)
COURIER_QUEUE_DEPTH = Gauge(
    "keyhall_courier_queue_depth",
    "Messages waiting in the outbox for delivery (the latest count any process made)",
    multiprocess_mode="mostrecent",
)


def record_signup(connection: str) -> None:
    """A user was created through ``connection`` (PASSWORD or PASSCODE)."""
    SIGNUPS.labels(connection=connection).inc()


def record_signin_failure(reason: str) -> None:
    """A sign-in was refused; ``reason`` is a short fixed word, never user input."""
    SIGNIN_FAILURES.labels(reason=reason).inc()


def set_courier_queue_depth(depth: int) -> None:
    """How many outbox messages wait for delivery, as last counted."""
    COURIER_QUEUE_DEPTH.set(depth)


@contextmanager
def time_hash() -> Iterator[None]:
    """Observe the duration of the block in the argon2 hash-time histogram."""
    started = time.perf_counter()
    try:
        yield
    finally:
        HASH_SECONDS.observe(time.perf_counter() - started)


def render() -> tuple[bytes, str]:
    """The exposition text of every metric (all workers' when in multiprocess mode) and its media type."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def process_exiting() -> None:
    """Drop this process's live gauges (in-flight requests) from the shared files; call at shutdown."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

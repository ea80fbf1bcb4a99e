"""/healthz, /readyz, /metrics and the request log line, on the session servers (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import re

import httpx

from tests.support.servers import LOG_MARKER_PASSWORD, SECRET_PATTERNS, RunningServer


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 when there are none)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        sample, _, value = line.rpartition(" ")
        if all(f'{key}="{val}"' in sample for key, val in labels.items()):
            total += float(value)
    return total


def log_records(server: RunningServer) -> list[dict[str, object]]:
    records = []
    for line in server.log_text().splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def test_healthz_and_readyz_answer_envelopes(client: httpx.Client) -> None:
    alive = client.get("/healthz")
    assert alive.status_code == 200
    assert alive.json()["statusCode"] == 200 and alive.json()["data"] == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["data"] == {"status": "ready"} and ready.json()["requestId"]


def test_metrics_count_signups_signin_failures_requests_and_hash_time(
    client: httpx.Client, unique: str
) -> None:
    before = client.get("/metrics").text
    body = {
        "connection": "PASSWORD",
        "passwordPayload": {"email": f"m.{unique}@example.com", "password": LOG_MARKER_PASSWORD},
    }
    for _ in range(2):  # one sign-up per worker at least is likely; both are counted whichever answers
        answer = client.post("/api/v3/signup", json=body).json()
        body["passwordPayload"]["email"] = f"m2.{unique}@example.com"  # type: ignore[index]
        assert answer["statusCode"] == 200, answer
    after = client.get("/metrics")
    assert after.status_code == 200 and after.headers["content-type"].startswith("text/plain")
    text = after.text
    assert (
        metric_value(text, "keyhall_signups_total", connection="PASSWORD")
        - metric_value(before, "keyhall_signups_total", connection="PASSWORD")
        == 2
    )
    assert (
        metric_value(text, "keyhall_password_hash_seconds_count")
        - metric_value(before, "keyhall_password_hash_seconds_count")
        >= 2
    )
    assert metric_value(text, "keyhall_requests_total", route="/api/v3/signup", status="200") >= 2
    assert "keyhall_courier_queue_depth" in text

    refused = {
        "connection": "PASSWORD",
        "passwordPayload": {"email": f"m.{unique}@example.com", "password": "not-the-password"},
    }
    for _ in range(2):
        answer = client.post("/api/v3/signin", json=refused).json()
        assert (answer["statusCode"], answer["apiCode"]) == (403, 2333), answer
    failures = client.get("/metrics").text
    assert (
        metric_value(failures, "keyhall_signin_failures_total", reason="signin_refused")
        - metric_value(text, "keyhall_signin_failures_total", reason="signin_refused")
        == 2
    )
    # Route templates only: never a raw path, so an unknown URL does not make a new series.
    client.get(f"/no/such/{unique}")
    assert unique not in client.get("/metrics").text


def test_each_request_logs_one_json_line_with_route_status_api_code_latency(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    answer = client.post("/api/v3/signup", json={"connection": "PASSWORD", "passwordPayload": {"email": "x"}})
    request_id = answer.json()["requestId"]
    assert answer.json()["statusCode"] == 400
    client.get("/healthz")  # the line is written after the answer: one more request lets it land
    lines = [record for record in log_records(server) if record.get("request_id") == request_id]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line["event"] == "request" and line["route"] == "/api/v3/signup"
    assert line["status_code"] == 400 and isinstance(line["api_code"], int)
    assert isinstance(line["duration_ms"], int | float) and line["duration_ms"] >= 0
    assert re.match(r"^\d{4}-\d\d-\d\dT", str(line["timestamp"]))


def test_marker_password_never_reaches_the_log(
    client: httpx.Client, server: RunningServer, unique: str
) -> None:
    """Sign-ups, a duplicate, bad input and sign-ins with the marker; the session hook in tests/conftest.py
    scans every server log of the whole suite for it again once all servers have stopped."""
    email = f"marker.{unique}@example.com"
    good = {"connection": "PASSWORD", "passwordPayload": {"email": email, "password": LOG_MARKER_PASSWORD}}
    assert client.post("/api/v3/signup", json=good).json()["statusCode"] == 200
    assert client.post("/api/v3/signup", json=good).json()["statusCode"] != 200  # duplicate
    bad = {
        "connection": "PASSWORD",
        "passwordPayload": {"email": "not-an-email", "password": LOG_MARKER_PASSWORD},
    }
    assert client.post("/api/v3/signup", json=bad).json()["statusCode"] == 400
    client.post("/api/v3/signup", content=b'{"password": "' + LOG_MARKER_PASSWORD.encode() + b'", broken')
    wrong = {
        "connection": "PASSWORD",
        "passwordPayload": {"email": email, "password": LOG_MARKER_PASSWORD + "x"},
    }
    client.post("/api/v3/signin", json=wrong)
    client.post("/api/v3/signin", json=good)
    # Refresh tokens are opaque (no JWT header to match): add the ones issued here to the patterns the
    # session hook scans every log for, after using one at the token endpoint and reusing it (refused).
    offline = {**good, "options": {"scope": "openid profile offline_access"}}
    signed_in = client.post("/api/v3/signin", json=offline).json()
    refresh = signed_in["data"]["refresh_token"]
    assert refresh and not refresh.startswith("eyJ"), signed_in
    SECRET_PATTERNS.append(refresh)
    grant = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": server.app_id}
    rotated = client.post("/oidc/token", data=grant).json()
    assert rotated["refresh_token"], rotated
    SECRET_PATTERNS.append(rotated["refresh_token"])
    assert client.post("/oidc/token", data=grant).status_code == 400  # a used refresh token: refused
    client.get("/healthz")
    text = server.log_text()
    for pattern in SECRET_PATTERNS:
        assert pattern not in text, f"{pattern!r} found in {server.log_path}"


def test_uvicorn_lines_are_json_records_too(server: RunningServer) -> None:
    """uvicorn's own lines (start-up, shutdown, its errors) are JSON like the server's, not 'INFO: ...'."""
    text = server.log_text()
    assert not [line for line in text.splitlines() if line.startswith(("INFO:", "WARNING:", "ERROR:"))]
    started = [
        record
        for record in log_records(server)
        if record.get("logger") == "uvicorn.error" and record.get("event") == "Application startup complete."
    ]
    assert len(started) == 2  # one per worker of the shared test servers
    assert all(record["level"] == "info" and record.get("timestamp") for record in started)

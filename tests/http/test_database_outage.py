"""When the database goes away, answers are 503 envelopes, not 500s, and nothing leaks."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.http.test_signup import STRONG, email_body
from tests.support.servers import create_postgres_database, drop_postgres_database, start_server


def test_dropped_database_gives_503_envelopes(tmp_path: Path) -> None:
    url = create_postgres_database()
    server = start_server("postgres", url, tmp_path / "server.log", workers=1)
    try:
        with httpx.Client(base_url=server.base_url, headers={"x-genauth-app-id": server.app_id}) as http:
            assert (
                http.post("/api/v3/signup", json=email_body("before@example.com")).json()["statusCode"] == 200
            )
            drop_postgres_database(url)
            for _ in range(3):
                answer = http.post("/api/v3/signup", json=email_body("after@example.com", STRONG)).json()
                assert answer["statusCode"] == 503, answer
                assert "database" in answer["message"]
                assert answer["requestId"] in server.log_text()
    finally:
        server.stop()
        drop_postgres_database(url)
    assert STRONG not in server.log_text()

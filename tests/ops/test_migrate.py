"""`keyhall migrate`: several at once against one fresh PostgreSQL database, and `serve --no-migrate`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from keyhall.server.store.migrate import code_heads
from keyhall.server.store.tables import Base
from tests.support.servers import (
    TEST_KEY_ENV,
    create_postgres_database,
    drop_postgres_database,
    free_port,
    keyhall,
    register_log,
    run_sql,
)

RUNS = 6


def test_concurrent_migrate_processes_all_succeed_and_build_the_schema_once() -> None:
    url = create_postgres_database()
    try:
        env = {**os.environ, **TEST_KEY_ENV}
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "keyhall", "migrate", "--database-url", url],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(RUNS)
        ]
        results = [(process.wait(timeout=120), *process.communicate()) for process in processes]
        for code, out, err in results:
            assert code == 0, err
            assert "Database schema is at" in out
        heads = {row[0] for row in run_sql(url, "SELECT version_num FROM alembic_version")}
        assert heads == code_heads()
        tables = {
            row[0] for row in run_sql(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        assert tables == set(Base.metadata.tables) | {"alembic_version"}
        # Running it again changes nothing and still succeeds.
        again = keyhall("migrate", "--database-url", url)
        assert "Database schema is at" in again.stdout
    finally:
        drop_postgres_database(url)


def test_serve_no_migrate_refuses_an_empty_database_and_serves_a_migrated_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keyhall.db'}"
    refused = keyhall("serve", "--no-migrate", "--port", str(free_port()), "--database-url", url, check=False)
    assert refused.returncode == 1
    assert "keyhall migrate" in refused.stderr
    keyhall("migrate", "--database-url", url)
    keyhall("app", "create", "--name", "ops", "--database-url", url)  # what init would have created
    port = free_port()
    log_path = register_log(tmp_path / "serve.log")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "keyhall",
                "serve",
                "--no-migrate",
                "--port",
                str(port),
                "--database-url",
                url,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **TEST_KEY_ENV, "KEYHALL_LOG_JSON": "true"},
        )
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        assert "Created the default" not in log_path.read_text()  # --no-migrate ran no init
    finally:
        process.terminate()
        process.wait(timeout=30)

"""Real Keyhall servers for the tests: `keyhall serve` in a subprocess against a real database."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url

from keyhall.server.store.db import create_engine

# Servers started by the tests keep their key-encryption key file here, not in the working directory.
TEST_KEY_ENV = {
    "KEYHALL_SECRET_KEY_FILE": str(Path(tempfile.mkdtemp(prefix="keyhall-test-keys-")) / "keyhall.key")
}
POSTGRES_URL = os.environ.get("KEYHALL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
# Every log file a test server wrote during this session; tests/conftest.py scans them all at the end for
# SECRET_PATTERNS (see tests/ops/test_observability.py, which signs up and in with LOG_MARKER_PASSWORD). A
# test that starts a server without start_server adds its log file here with register_log.
SERVER_LOGS: list[Path] = []
LOG_MARKER_PASSWORD = "Marker-pw-9d41c7e2-never-logged"
# The marker password, an argon2 hash, a JWT (every token keyhall signs starts with this header), a PEM
# private key; start_server adds each server's app secret.
SECRET_PATTERNS: list[str] = [LOG_MARKER_PASSWORD, "$argon2id$", "eyJhbGciOi", "PRIVATE KEY-----"]


def register_log(path: Path) -> Path:
    SERVER_LOGS.append(path)
    return path


@dataclass
class RunningServer:
    """A `keyhall serve` process, its database and the default app it was initialised with."""

    backend: str
    database_url: str
    base_url: str
    app_id: str
    app_secret: str
    pool_id: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def sql(self, statement: str, **params: Any) -> list[Any]:
        """Run one SQL statement against the server's database; rows for a SELECT."""
        return run_sql(self.database_url, statement, **params)

    def user_count(self) -> int:
        return int(self.sql("SELECT count(*) FROM users")[0][0])

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run_sql(database_url: str, statement: str, **params: Any) -> list[Any]:
    async def _run() -> list[Any]:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(statement), params)
                return list(result) if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(_run())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_postgres_database() -> str:
    """A fresh database on the test PostgreSQL server; returns its URL."""
    name = f"keyhall_test_{uuid.uuid4().hex[:12]}"
    admin = make_url(POSTGRES_URL)
    _postgres_admin(admin, f'CREATE DATABASE "{name}"')
    return admin.set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    target = make_url(url)
    _postgres_admin(make_url(POSTGRES_URL), f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')


def _postgres_admin(admin: Any, statement: str) -> None:
    import asyncpg

    async def _run() -> None:
        conn = await asyncpg.connect(
            host=admin.host or "127.0.0.1",
            port=admin.port or 5432,
            user=admin.username or "postgres",
            password=admin.password,
            database=admin.database or "postgres",
        )
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    # In a thread of its own, so that fixtures running inside an event loop can call it too.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, _run()).result()


def keyhall(
    *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the `keyhall` command (as `python -m keyhall`)."""
    return subprocess.run(
        [sys.executable, "-m", "keyhall", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
        env={**os.environ, **TEST_KEY_ENV, **(env or {})},
    )


# uvicorn's line (a JSON record, see keyhall.server.logs) when a worker has finished its start-up.
_WORKER_STARTED = '"event": "Application startup complete."'


def start_server(
    backend: str,
    database_url: str,
    log_path: Path,
    workers: int = 2,
    env: dict[str, str] | None = None,
    new_session: bool = False,
) -> RunningServer:
    """Init and serve; ``env`` adds KEYHALL_* settings (e.g. KEYHALL_SMTP_URL) for this server only.

    ``new_session``: the server and its workers get a process group of their own, so that a test can
    kill them all at once (``os.killpg``).
    """
    init = keyhall("init", "--database-url", database_url, "--json")
    record = json.loads(init.stdout.strip().splitlines()[-1])
    if record["app_secret"]:
        SECRET_PATTERNS.append(record["app_secret"])
    port = free_port()
    register_log(log_path)
    with log_path.open("wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "keyhall",
                "serve",
                "--port",
                str(port),
                "--database-url",
                database_url,
                "--workers",
                str(workers),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **TEST_KEY_ENV, "KEYHALL_LOG_JSON": "true", **(env or {})},
            start_new_session=new_session,
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"keyhall serve exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            # Every worker, not just the first: a test that stops the database right after start-up must
            # not catch a worker still starting (its start-up would fail and stop the whole server).
            answered = httpx.get(f"{base_url}/health", timeout=1).status_code == 200
            if answered and log_path.read_text(errors="replace").count(_WORKER_STARTED) >= workers:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(f"keyhall serve did not answer in 60 s:\n{log_path.read_text()}")
        time.sleep(0.1)
    return RunningServer(
        backend=backend,
        database_url=database_url,
        base_url=base_url,
        app_id=record["app_id"],
        app_secret=record["app_secret"],
        pool_id=record["pool_id"],
        log_path=log_path,
        process=process,
    )

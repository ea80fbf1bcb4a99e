"""Shared fixtures: a real Keyhall server on SQLite and one on PostgreSQL, for the whole session.

PostgreSQL is not optional: when the server at KEYHALL_TEST_POSTGRES_URL
(default postgresql://postgres@127.0.0.1:5432/test) cannot be reached the PostgreSQL tests fail, they
do not skip.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support.servers import (
    SECRET_PATTERNS,
    SERVER_LOGS,
    RunningServer,
    create_postgres_database,
    drop_postgres_database,
    start_server,
)

# Tests change a pool's settings with SQL (as an operator would) and expect the next request to follow
# them: the shared servers read the app and its pool on every request. The cache itself is tested in
# tests/store/test_app_cache.py.
SHARED_SERVER_ENV = {"KEYHALL_APP_CACHE_TTL_S": "0"}


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("sqlite")
    server = start_server(
        "sqlite", f"sqlite:///{folder / 'keyhall.db'}", folder / "server.log", env=SHARED_SERVER_ENV
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("postgres")
    url = create_postgres_database()
    server = start_server("postgres", url, folder / "server.log", env=SHARED_SERVER_ENV)
    yield server
    server.stop()
    drop_postgres_database(url)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest) -> RunningServer:
    """Each test that takes ``server`` runs once per database."""
    return request.getfixturevalue(f"{request.param}_server")  # type: ignore[no-any-return]


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    """An HTTP client for the server, sending the default app id."""
    with httpx.Client(
        base_url=server.base_url, headers={"x-genauth-app-id": server.app_id}, timeout=30
    ) as http:
        yield http


@pytest.fixture
def unique() -> str:
    """A short unique token for emails and usernames, so tests never collide on one database."""
    return uuid.uuid4().hex[:10]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After every server of the session has stopped: no log line of any of them holds a secret.

    tests/ops/test_observability.py signs users up and in with LOG_MARKER_PASSWORD; other tests put their
    own passwords, tokens and app secrets through the same code. A hit fails the run (exit status 1) and
    names the file and line.
    """
    leaks = []
    for path in SERVER_LOGS:
        if not path.exists():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if any(pattern in line for pattern in SECRET_PATTERNS):
                leaks.append(f"{path}:{number}")
    if leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = "secret in server logs (password, hash, token, key, app secret): " + ", ".join(leaks[:20])
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(text, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

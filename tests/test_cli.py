"""The keyhall command: init (twice), app create, users list, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import create_postgres_database, drop_postgres_database, keyhall, run_sql


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cli.db'}"
        return
    url = create_postgres_database()
    yield url
    drop_postgres_database(url)


def last_json(output: str) -> dict[str, object]:
    return json.loads(output.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_init_creates_an_app_once_and_shows_its_secret_once(database_url: str) -> None:
    first = last_json(keyhall("init", "--database-url", database_url, "--json").stdout)
    assert isinstance(first["app_secret"], str) and len(first["app_secret"]) == 64
    assert first["app_host"] == "http://127.0.0.1:3000"
    again = last_json(keyhall("init", "--json", env={"KEYHALL_DATABASE_URL": database_url}).stdout)
    assert again == {**first, "app_secret": None}
    stored = run_sql(database_url, "SELECT secret_sha256 FROM applications")
    assert len(stored) == 1 and stored[0][0] != first["app_secret"]


def test_app_create_and_users_list(database_url: str) -> None:
    keyhall("init", "--database-url", database_url)
    created = last_json(
        keyhall("app", "create", "--name", "Shop", "--database-url", database_url, "--json").stdout
    )
    assert created["name"] == "Shop" and len(str(created["app_secret"])) == 64
    assert run_sql(database_url, "SELECT count(*) FROM applications")[0][0] == 2

    listed = keyhall("users", "list", "--database-url", database_url, "--json")
    assert json.loads(listed.stdout) == []
    assert "No users yet" in keyhall("users", "list", "--database-url", database_url).stdout


def test_bad_database_url_is_a_clear_error(tmp_path: Path) -> None:
    done = keyhall("init", "--database-url", "mysql://root@localhost/x", check=False)
    assert done.returncode == 2
    assert "unsupported database" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_keeps_the_secret_out_of_non_terminal_output(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    from tests.support.servers import free_port

    url = f"sqlite:///{tmp_path / 'serve.db'}"
    out = tmp_path / "serve.out"
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "keyhall", "serve", "--port", str(free_port()), "--database-url", url],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while "Created the default" not in out.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            process.terminate()
            process.wait(timeout=15)
    text = out.read_text()
    assert "Created the default user pool and application." in text
    assert "app secret: not shown" in text
    assert re.search(r"\b[0-9a-f]{64}\b", text) is None, "no 64-hex secret in the output"


def test_init_without_a_secret_creates_the_key_file_with_mode_0600(tmp_path: Path) -> None:
    import os
    import stat
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYHALL_")}
    url = f"sqlite:///{tmp_path / 'k.db'}"

    def init() -> None:
        subprocess.run(
            [sys.executable, "-m", "keyhall", "init", "--database-url", url, "--json"],
            env=env,
            capture_output=True,
            check=True,
            timeout=120,
        )

    init()
    key_file = tmp_path / "keyhall.key"  # beside the SQLite file
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    secret = key_file.read_bytes()
    rows = run_sql(url, "SELECT kind, private_key_sealed FROM transport_keys")
    assert sorted(kind for kind, _ in rows) == ["rsa", "sm2"]  # the default pool's keys, made by init
    assert all(sealed.startswith("kh1.") and "PRIVATE KEY" not in sealed for _, sealed in rows)
    init()
    assert key_file.read_bytes() == secret, "a second init keeps the key file"

"""The peer server: bench/peer/app.py (FastAPI-Users) under uvicorn, in the virtualenv bench.sh made.

``peer_server(backend, workdir)`` gives a fresh database (an SQLite file, or a new PostgreSQL database
on the test server), creates the peer's tables, starts ``uvicorn app:app --workers 2`` on a free port
and stops it (and drops the database) when the block ends. The object it yields has the attributes the
scenarios read from a Keyhall server: ``backend``, ``database_url``, ``base_url``, ``log_path``,
``process`` and ``user_count()``.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from tests.support.servers import create_postgres_database, drop_postgres_database, free_port, run_sql

ROOT = Path(__file__).resolve().parent.parent
PEER_APP_DIR = ROOT / "bench" / "peer"
PEER_VENV = Path(os.environ.get("BENCH_PEER_VENV", ROOT / ".bench-venvs" / "peer"))
PEER_USERS_TABLE = '"user"'  # FastAPI-Users' SQLAlchemyBaseUserTableUUID


@dataclass
class PeerServer:
    backend: str
    database_url: str  # the URL keyhall's tools (and CpuWatch) read; the peer gets the driver's form
    base_url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def user_count(self) -> int:
        return int(run_sql(self.database_url, f"SELECT count(*) FROM {PEER_USERS_TABLE}")[0][0])

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def peer_python() -> Path:
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        raise RuntimeError(
            f"the peer's virtualenv is missing ({python}); scripts/bench.sh creates it "
            "(pip install -r bench/peer/requirements.txt into .bench-venvs/peer)"
        )
    return python


def peer_versions() -> dict[str, str]:
    """Versions of the peer's main packages, as its virtualenv has them (for the report's header)."""
    try:
        python = peer_python()
    except RuntimeError:
        return {}
    script = (
        "from importlib import metadata\n"
        "for name in ('fastapi-users', 'fastapi-users-db-sqlalchemy', 'pwdlib', 'argon2-cffi', 'fastapi', "
        "'uvicorn', 'sqlalchemy', 'aiosqlite', 'asyncpg'):\n"
        "    print(name, metadata.version(name))\n"
    )
    done = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=60)
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)


@contextmanager
def peer_server(backend: str, workdir: Path, workers: int) -> Iterator[PeerServer]:
    folder = workdir / f"peer-{backend}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    if backend == "sqlite":
        path = folder / "peer.db"
        with _serving(backend, f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}", folder, workers) as s:
            yield s
        return
    url = create_postgres_database()
    try:
        driver_url = make_url(url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
        with _serving(backend, url, driver_url, folder, workers) as server:
            yield server
    finally:
        drop_postgres_database(url)


@contextmanager
def _serving(backend: str, url: str, driver_url: str, folder: Path, workers: int) -> Iterator[PeerServer]:
    python = str(peer_python())
    env = {**os.environ, "PEER_DATABASE_URL": driver_url}
    for name in ("VIRTUAL_ENV", "PYTHONPATH"):  # nothing of keyhall's environment leaks in
        env.pop(name, None)
    subprocess.run(
        [python, str(PEER_APP_DIR / "app.py"), "create-tables"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    log_path = folder / "peer.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                python,
                "-m",
                "uvicorn",
                "app:app",
                "--app-dir",
                str(PEER_APP_DIR),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=folder,
        )
    server = PeerServer(backend, url, f"http://127.0.0.1:{port}", log_path, process)
    try:
        _wait_ready(server, workers)
        yield server
    finally:
        server.stop()


def _wait_ready(server: PeerServer, workers: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"the peer exited with {server.process.returncode}:\n{server.log_text()}")
        try:
            # Both workers must be up before a load starts: wait for each to log its start-up.
            if httpx.get(f"{server.base_url}/health", timeout=1).status_code == 200 and (
                server.log_text().count("Application startup complete") >= workers
            ):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the peer did not answer in 60 s:\n{server.log_text()}")
        time.sleep(0.1)

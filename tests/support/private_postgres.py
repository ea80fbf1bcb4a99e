"""A private PostgreSQL cluster for tests that must stop and start the database server.

The shared server at 127.0.0.1:5432 belongs to everyone and is never stopped; a test that needs an outage
makes its own cluster with ``initdb`` in a folder of its own, on a free port, listening on 127.0.0.1 only
(no Unix socket), trust authentication, and drives it with ``pg_ctl``.

PostgreSQL refuses to run as root, and the tests run as root (in CI too): then ``initdb`` and ``pg_ctl``
run as the ``postgres`` OS user (``runuser``), the cluster's folder belongs to that user, and the folders
above it get the search bit for others (``o+x``: enter, not list) so that user can reach it. pytest puts
its own root folder back to 0700 whenever a session starts, and other sessions start at any time, so the
search bit is set again right before every ``pg_ctl`` call rather than once.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import stat
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from tests.support.servers import free_port

PG_ROOT = Path("/usr/lib/postgresql")
OS_USER = "postgres"


def postgres_bin_dir() -> Path:
    """The bin folder of the newest PostgreSQL under /usr/lib/postgresql (Debian/Ubuntu layout)."""
    versions = sorted(
        (path for path in PG_ROOT.glob("*") if (path / "bin" / "pg_ctl").exists()),
        key=lambda path: [int(part) for part in path.name.split(".") if part.isdigit()],
    )
    if not versions:
        raise RuntimeError(f"no PostgreSQL server under {PG_ROOT} (initdb/pg_ctl are needed)")
    return versions[-1] / "bin"


class PrivatePostgres:
    """One cluster: :meth:`start`, :meth:`stop` (immediate by default: a crash), :meth:`start` again."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.log_path = folder / "postgres.log"
        self.port = port or free_port()
        self.bin = postgres_bin_dir()
        self._as_root = os.geteuid() == 0

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            account = pwd.getpwnam(OS_USER)
            os.chown(self.folder, account.pw_uid, account.pw_gid)
        self._pg(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        # An immediate stop is a crash of the server processes, not of the machine: what a commit wrote
        # is in the OS page cache and survives it, so fsync buys nothing here but time.
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = ''\n"
                "fsync = off\nmax_connections = 100\n"
            )

    def start(self) -> None:
        """Start and wait until it accepts connections (pg_ctl -w)."""
        self._pg("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log_path), "-w", "-t", "60")

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: every server process quits at once, no checkpoint (recovery runs at next start)."""
        self._pg("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60")

    def freeze(self) -> None:
        """SIGSTOP every process of the cluster: connections stay open, connects are accepted by the
        kernel, and nothing answers (as in a network partition or a hung host). :meth:`thaw` resumes."""
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._pids():
            os.kill(pid, signal.SIGCONT)

    def _pids(self) -> list[int]:
        """The postmaster (from postmaster.pid) and its children: this cluster's processes, no others."""
        try:
            postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return []  # not running
        pids = [postmaster]
        for stat_file in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat_file.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process ended meanwhile
            if int(fields[1]) == postmaster:  # fields[1] is the parent pid
                pids.append(int(stat_file.parent.name))
        return pids

    def is_running(self) -> bool:
        self._make_reachable()
        return (
            subprocess.run(
                [*self._prefix(), str(self.bin / "pg_ctl"), "status", "-D", str(self.data)],
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )

    def create_database(self, name: str) -> str:
        """CREATE DATABASE on this cluster; its URL."""
        import asyncpg

        async def _run() -> None:
            conn = await asyncpg.connect(
                host="127.0.0.1", port=self.port, user="postgres", database="postgres"
            )
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        with ThreadPoolExecutor(1) as thread:  # callable from inside a running event loop too
            thread.submit(asyncio.run, _run()).result()
        return self.url(name)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def _prefix(self) -> list[str]:
        return ["runuser", "-u", OS_USER, "--"] if self._as_root else []

    def _pg(self, program: str, *args: str) -> None:
        self._make_reachable()
        done = subprocess.run(
            [*self._prefix(), str(self.bin / program), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n"
                f"{self.log_text()[-4000:]}"
            )

    def _make_reachable(self) -> None:
        if not self._as_root:
            return
        for parent in self.folder.parents:
            mode = parent.stat().st_mode
            if mode & stat.S_IXOTH:
                continue
            os.chmod(parent, stat.S_IMODE(mode) | stat.S_IXOTH)


@contextmanager
def private_postgres(folder: Path) -> Iterator[PrivatePostgres]:
    """A started cluster in ``folder``; stopped (fast) and removed afterwards."""
    cluster = PrivatePostgres(folder)
    cluster.init()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.thaw()  # a test that failed while the cluster was frozen leaves it stopped otherwise
        if cluster.is_running():
            cluster.stop("fast")
        shutil.rmtree(cluster.data, ignore_errors=True)

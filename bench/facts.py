"""Facts about the machine and the software a benchmark ran on, for the report's header."""

from __future__ import annotations

import os
import platform
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata

PACKAGES = ("keyhall", "argon2-cffi", "fastapi", "uvicorn", "sqlalchemy", "aiosqlite", "asyncpg", "httpx")


@dataclass(frozen=True)
class Facts:
    date: str
    command: str
    cores: int
    platform: str
    cpu_model: str
    memory: str
    load_average: str
    python: str
    sqlite: str
    postgres: str
    packages: dict[str, str]


def gather(command: str) -> Facts:
    return Facts(
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=command,
        cores=cores(),
        platform=platform.platform(),
        cpu_model=_cpu_model(),
        memory=_memory(),
        load_average=_load_average(),
        python=f"{platform.python_implementation()} {platform.python_version()}",
        sqlite=sqlite3.sqlite_version,
        postgres=_postgres_version(),
        packages={name: _version(name) for name in PACKAGES},
    )


def cores() -> int:
    """What ``nproc`` says (the cores this process may use), else ``os.cpu_count()``."""
    nproc = shutil.which("nproc")
    if nproc:
        try:
            return int(subprocess.run([nproc], capture_output=True, text=True, check=True).stdout.strip())
        except (subprocess.CalledProcessError, ValueError):
            pass
    return os.cpu_count() or 1


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def _load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _postgres_version() -> str:
    try:
        from tests.support.servers import POSTGRES_URL, run_sql

        return str(run_sql(POSTGRES_URL, "SHOW server_version")[0][0])
    except Exception as exc:  # the report says PostgreSQL was not reachable rather than failing
        return f"not reachable ({type(exc).__name__}: {str(exc)[:120]})"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"

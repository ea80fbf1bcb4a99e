"""CPU time of the processes a benchmark run involves, read from ``/proc`` (Linux only).

The server is ``keyhall serve`` and every process under it (the uvicorn supervisor and its workers);
on PostgreSQL also the backends serving the run's database. Only reads ``/proc``: nothing is signalled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
DATABASE = "PostgreSQL backends"


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds over a span: the server's processes by role, and the database's backends."""

    server: dict[str, float]
    database_s: float | None

    @property
    def server_s(self) -> float:
        return sum(self.server.values())

    def workers(self) -> dict[str, float]:
        return {role: s for role, s in self.server.items() if role.startswith("worker")}


class CpuWatch:
    """Snapshot the CPU time of a server's process tree (and its database's backends), then diff."""

    def __init__(self, root: int, database: str | None = None) -> None:
        self.root = root
        self.database = database
        self._before: dict[int, tuple[str, int]] | None = None

    def start(self) -> None:
        self._before = self._snapshot()

    def stop(self) -> CpuUse | None:
        if self._before is None:
            return None
        after = self._snapshot()
        if not after:
            return None
        server: dict[str, float] = {}
        database = 0.0
        for pid, (role, ticks) in after.items():
            _, earlier = self._before.get(pid, (role, 0))  # a process born in between counts whole
            seconds = (ticks - earlier) / TICKS
            if role == DATABASE:
                database += seconds
            else:
                server[role] = server.get(role, 0.0) + seconds
        ordered = dict(sorted(server.items(), key=lambda item: (not item[0].startswith("worker"), item[0])))
        return CpuUse(ordered, database if self.database else None)

    def _snapshot(self) -> dict[int, tuple[str, int]]:
        stats = _all_stats()
        tree = descendants(self.root, {pid: int(fields[1]) for pid, fields in stats.items()})
        found: dict[int, tuple[str, int]] = {}
        for pid, fields in stats.items():
            role = self._role(pid, tree)
            if role is not None:
                found[pid] = (role, int(fields[11]) + int(fields[12]))  # utime + stime
        return found

    def _role(self, pid: int, tree: set[int]) -> str | None:
        if pid == self.root:
            return "supervisor"
        if pid in tree:
            title = cmdline(pid)
            if b"resource_tracker" in title:
                return "resource tracker"
            if b"keyhall.server.crypto.hash_pool" in title:
                return f"hashing pid {pid}"  # the argon2 processes of keyhall/server/crypto/hash_pool.py
            return f"worker pid {pid}"
        if self.database:
            title = cmdline(pid)
            if title.startswith(b"postgres:") and f" {self.database} ".encode() in title:
                return DATABASE
        return None


def descendants(root: int, parents: dict[int, int] | None = None) -> set[int]:
    """``root`` and every process under it."""
    if parents is None:
        parents = {pid: int(fields[1]) for pid, fields in _all_stats().items()}
    found = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ")
    except OSError:
        return b""


def _all_stats() -> dict[int, list[str]]:
    try:
        entries = os.listdir("/proc")
    except OSError:
        return {}
    stats: dict[int, list[str]] = {}
    for entry in entries:
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None:
                stats[int(entry)] = fields
    return stats


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: [state, ppid, ..., utime at 11, stime at 12]."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as file:
            text = file.read()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()

"""Which server process holds each of the load generator's connections, read from ``/proc`` (Linux).

uvicorn's workers accept from one shared listening socket, and when both are idle the same one tends
to win every accept: a load's connections then all land on one worker, however slowly they are opened.
The load generator therefore opens more connections than it needs, asks this module which worker
accepted each (the server side of a loopback connection is a socket whose peer port is the client's
local port; ``/proc/PID/fd`` names the socket inodes a process holds and ``/proc/net/tcp`` maps inodes
to ports) and keeps an even share per worker. Only reads ``/proc``; nothing is signalled.
"""

from __future__ import annotations

import os
from collections.abc import Iterable


def peer_port_owners(pids: Iterable[int]) -> dict[int, int]:
    """``{client port: pid}`` for every TCP socket the given processes hold, keyed by the peer's port."""
    inode_owner: dict[str, int] = {}
    for pid in pids:
        folder = f"/proc/{pid}/fd"
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for entry in entries:
            try:
                target = os.readlink(f"{folder}/{entry}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inode_owner[target[8:-1]] = pid
    owners: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as file:
                next(file, None)  # the header line
                for line in file:
                    fields = line.split()
                    if len(fields) > 9 and fields[9] in inode_owner:
                        owners[int(fields[2].rsplit(":", 1)[1], 16)] = inode_owner[fields[9]]
        except OSError:
            continue
    return owners

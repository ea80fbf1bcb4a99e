"""``keyhall outbox``: print the outbox's newest messages, and with ``--follow`` the new ones as they come.

This is where a developer reads the codes when no SMTP server or SMS provider is configured; the server
never writes them to its log. Messages already sent by a real transport show without their content (it
is erased once delivered).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from keyhall.server.clock import iso
from keyhall.server.courier.outbox import list_messages
from keyhall.server.settings import Settings
from keyhall.server.store.db import create_engine
from keyhall.server.store.migrate import migrate

FOLLOW_POLL_S = 1.0


async def show_outbox(
    settings: Settings, *, limit: int, follow: bool, json_output: bool, echo: Callable[[str], Any]
) -> None:
    kek = settings.key_encryption_key()
    engine = create_engine(settings.database_url)
    seen: set[str] = set()
    try:
        await migrate(engine)
        while True:
            for message in await list_messages(engine, kek, limit=limit):
                if message["id"] in seen:
                    continue
                seen.add(message["id"])
                echo(_render(message, json_output))
            if not follow:
                if not seen and not json_output:
                    echo("The outbox is empty.")
                return
            await asyncio.sleep(FOLLOW_POLL_S)
    finally:
        await engine.dispose()


def _render(message: dict[str, Any], json_output: bool) -> str:
    created = iso(message["createdAt"])
    if json_output:
        return json.dumps({**message, "createdAt": created}, ensure_ascii=False)
    head = f"--- {created}  {message['kind']} to {message.get('to', '?')}  [{message['state']}]"
    if message.get("lastError"):
        head += f"  last error: {message['lastError']}"
    lines = [head]
    if message.get("subject"):
        lines.append(f"Subject: {message['subject']}")
    if message.get("text"):
        lines.append(message["text"].rstrip())
    return "\n".join(lines)

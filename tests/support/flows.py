"""In-process flow tests' helpers: a clock the test moves by hand, and a registered user."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from keyhall.server.flows.registration import PasswordSignUp
from keyhall.server.identity.app import App
from keyhall.server.services import Services

PASSWORD = "Correct-Horse-Battery-7"


class ManualClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


Running = tuple[Services, App, ManualClock]  # the store tests' ``running`` fixture


async def new_user(services: Services, app: App, prefix: str) -> str:
    """Register a user with PASSWORD under a fresh email starting with ``prefix``; returns the email."""
    email = f"{prefix}.{uuid.uuid4().hex[:10]}@example.com"
    await services.registration.register_by_password(app, PasswordSignUp(password=PASSWORD, email=email))
    return email

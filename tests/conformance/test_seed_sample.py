"""The seed page's sample code, run as a script against a real server with three SDKs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import RunningServer

SAMPLE = (Path(__file__).parent / "seed_sample.py").read_text()
IMPORTS = {
    "authing": "from authing import AuthenticationClient",
    "genauth": "from genauth import AuthenticationClient",
    "keyhall": "from keyhall import AuthenticationClient",
}


def run_sample(server: RunningServer, sdk: str, email: str | None = None, password: str | None = None) -> Any:
    code = SAMPLE.replace("from authing import AuthenticationClient", IMPORTS[sdk])
    code = (
        code.replace("GEN_AUTH_APP_ID", server.app_id)
        .replace("GEN_AUTH_APP_SECRET", server.app_secret)
        .replace("GEN_AUTH_APP_HOST", server.base_url)
        .replace("GEN_AUTH_APP_REDIRECT_URI", f"{server.base_url}/callback")
    )
    if email:
        code = code.replace('email="188xxxx8888"', f'email="{email}"')
    if password:
        code = code.replace('password="passw0rd"', f'password="{password}"')
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return ast.literal_eval(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("sdk", sorted(IMPORTS))
def test_seed_sample_as_written_is_400_2003_and_stores_nothing(server: RunningServer, sdk: str) -> None:
    before = server.user_count()
    answer = run_sample(server, sdk)
    assert answer["statusCode"] == 400
    assert answer["apiCode"] == 2003
    assert "email" in answer["message"]
    assert answer["requestId"]
    assert server.user_count() == before


@pytest.mark.parametrize("sdk", sorted(IMPORTS))
def test_seed_sample_with_a_real_email_registers(server: RunningServer, sdk: str, unique: str) -> None:
    email = f"seed.{sdk}.{unique}@example.com"
    answer = run_sample(server, sdk, email=email, password="Seed-Sample-Pass-42")
    assert answer["statusCode"] == 200, answer
    assert answer["message"] == "Operation successful"
    user = answer["data"]
    assert user["email"] == email
    assert user["userSourceType"] == "register"
    assert user["passwordSecurityLevel"] == 3
    assert server.sql("SELECT count(*) FROM users WHERE email_norm = :e", e=email)[0][0] == 1

"""`keyhall keys rotate-signing` against a running server: old tokens keep verifying, the JWKS holds both
keys, new tokens are signed with the new key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import genauth
import httpx
import jwt
import pytest

from tests.http.test_signin_http import sign_in, sign_up
from tests.support.servers import RunningServer, keyhall, start_server


@pytest.fixture(scope="module")
def eager_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server that reloads its signing keys on every use, so a rotation shows at once."""
    folder = tmp_path_factory.mktemp("rotation")
    server = start_server(
        "sqlite",
        f"sqlite:///{folder / 'keyhall.db'}",
        folder / "server.log",
        env={"KEYHALL_SIGNING_KEY_REFRESH_S": "0"},
    )
    yield server
    server.stop()


def test_rotating_the_signing_key_keeps_old_tokens_valid(eager_server: RunningServer, unique: str) -> None:
    server = eager_server
    official = genauth.AuthenticationClient(
        app_id=server.app_id, app_secret=server.app_secret, app_host=server.base_url
    )
    with httpx.Client(base_url=server.base_url, headers={"x-genauth-app-id": server.app_id}) as client:
        email = f"rotation.{unique}@example.com"
        user_id = sign_up(client, email)
        old = sign_in(client, email)["data"]["access_token"]
        old_kid = jwt.get_unverified_header(old)["kid"]

        rotated = keyhall("keys", "rotate-signing", "--database-url", server.database_url, "--json")
        record = json.loads(rotated.stdout.strip().splitlines()[-1])
        assert record["retired"] == [old_kid] and record["kid"] != old_kid

        kids = [key["kid"] for key in client.get("/oidc/.well-known/jwks.json").json()["keys"]]
        assert kids == [record["kid"], old_kid]
        new = sign_in(client, email)["data"]["access_token"]
        assert jwt.get_unverified_header(new)["kid"] == record["kid"]
        for token in (old, new):
            assert official.introspect_token_offline(token)["sub"] == user_id
            profile = client.get("/api/v3/get-profile", headers={"authorization": token}).json()
            assert profile["data"]["userId"] == user_id
        # The private key is stored sealed: no PEM in the table.
        stored = server.sql("SELECT private_key FROM signing_keys")
        assert stored and all("PRIVATE KEY" not in row[0] for row in stored)


def test_rotation_output_for_people(eager_server: RunningServer, tmp_path: Path) -> None:
    rotated = keyhall("keys", "rotate-signing", "--database-url", eager_server.database_url)
    assert rotated.stdout.startswith("New signing key ")
    assert "retired" in rotated.stdout

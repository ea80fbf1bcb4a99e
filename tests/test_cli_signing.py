"""`keyhall keys rotate-signing`: a new signing key, the old one retired but still listed for verifying."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.servers import keyhall, run_sql


def test_rotate_signing_twice_keeps_the_retired_key_verifiable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    keyhall("init", "--database-url", url)
    first = json.loads(keyhall("keys", "rotate-signing", "--database-url", url, "--json").stdout)
    second = json.loads(keyhall("keys", "rotate-signing", "--database-url", url, "--json").stdout)
    assert first["kid"] != second["kid"] and second["retired"] == [first["kid"]]
    rows = run_sql(url, "SELECT kid, retired_at, verify_until, private_key FROM signing_keys")
    by_kid = {row[0]: row for row in rows}
    assert by_kid[second["kid"]][1] is None
    assert by_kid[first["kid"]][1] is not None and by_kid[first["kid"]][2] is not None
    assert all("PRIVATE KEY" not in row[3] for row in rows), "private keys are sealed at rest"
    human = keyhall("keys", "rotate-signing", "--database-url", url).stdout
    assert "New signing key" in human and second["kid"] in human

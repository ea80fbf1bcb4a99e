"""Ciphertexts made by the npm packages GenAuth's JavaScript SDKs use: jsencrypt (RSA) and sm-crypto (SM2).

``tests/js`` pins them (package.json and package-lock.json); :func:`ensure_node_modules` runs ``npm ci``
there when ``node_modules`` is missing. Node and npm are required: without them the tests fail, they do
not skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

JS_DIR = Path(__file__).resolve().parent.parent / "js"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"`{name}` is not on PATH: the transport encryption tests run jsencrypt and sm-crypto "
            "through Node; install Node.js 18+ with npm"
        )
    return path


def ensure_node_modules() -> None:
    """Install tests/js's pinned packages (``npm ci``) unless they are already there."""
    _tool("node")
    if (JS_DIR / "node_modules" / "jsencrypt").is_dir() and (JS_DIR / "node_modules" / "sm-crypto").is_dir():
        return
    done = subprocess.run(
        [_tool("npm"), "ci", "--no-audit", "--no-fund"],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"`npm ci` in {JS_DIR} failed:\n{done.stdout}\n{done.stderr}")


def js_ciphertexts(system_info: dict[str, Any], passwords: list[str]) -> list[dict[str, str]]:
    """For each password, ``{"rsa", "sm2", "sm2_c1c2c3"}`` made by Node from a /api/v3/system answer."""
    request = {
        "rsa": system_info["rsa"]["publicKey"],
        "sm2": system_info["sm2"]["publicKey"],
        "passwords": passwords,
    }
    done = subprocess.run(
        [_tool("node"), str(JS_DIR / "encrypt.js")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"node encrypt.js failed:\n{done.stderr}")
    results: list[dict[str, str]] = json.loads(done.stdout)
    return results

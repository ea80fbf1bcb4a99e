#!/usr/bin/env bash
# Sets up what the tests need on a fresh machine (virtualenv, packages, PostgreSQL), then runs
# lint, type checks and the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/venv.sh
ensure_venv "server,test"

scripts/services.sh

.venv/bin/ruff check keyhall tests bench
.venv/bin/ruff format --check keyhall tests bench
.venv/bin/mypy
exec .venv/bin/pytest -p no:cacheprovider "$@"

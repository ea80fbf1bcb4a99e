#!/usr/bin/env bash
# Sets up what the tests need on a fresh machine (virtualenv, packages, PostgreSQL), then runs
# lint, type checks and the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[server,test]"

scripts/services.sh

.venv/bin/ruff check keyhall tests bench
.venv/bin/ruff format --check keyhall tests bench
.venv/bin/mypy
exec .venv/bin/pytest -p no:cacheprovider "$@"

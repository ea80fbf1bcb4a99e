#!/usr/bin/env bash
# Runs the benchmark suite (bench/) and writes its figures to docs/benchmarks.md.
# Sets up the virtualenv first when it is missing, as scripts/test.sh does. Needs PostgreSQL on
# 127.0.0.1:5432 (user postgres, trust auth, database test), which scripts/services.sh sets up.
# Extra arguments go to `python -m bench` (e.g. --quick, --only signup-sqlite, --output PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! .venv/bin/python -c "import keyhall.server.app, tests.support.servers" 2>/dev/null; then
  . scripts/venv.sh
  ensure_venv "server,test"
fi

scripts/services.sh

export BENCH_COMMAND="scripts/bench.sh${*:+ $*}"
exec .venv/bin/python -m bench "$@"

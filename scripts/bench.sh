#!/usr/bin/env bash
# Runs the benchmark suite (bench/) and writes its figures to docs/benchmarks.md and the chart
# docs/benchmarks-throughput.png. Installs what it needs: the project's virtualenv with the "bench"
# extra (matplotlib), and the peer's virtualenv .bench-venvs/peer (FastAPI-Users, pinned in
# bench/peer/requirements.txt), each only when missing or out of date. Needs PostgreSQL on
# 127.0.0.1:5432 (user postgres, trust auth, database test), which scripts/services.sh sets up.
# Extra arguments go to `python -m bench` (e.g. --quick, --only signup-sqlite, --output PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! .venv/bin/python -c "import keyhall.server.app, tests.support.servers, matplotlib" 2>/dev/null; then
  . scripts/venv.sh
  ensure_venv "server,test,bench"
fi

# The peer lives in a virtualenv of its own, rebuilt when its pinned requirements change.
peer=.bench-venvs/peer
stamp=$(sha256sum bench/peer/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$peer/.requirements-sha256" 2>/dev/null)" != "$stamp" ]; then
  echo "bench: installing the peer (FastAPI-Users) into $peer" >&2
  rm -rf "$peer"
  "${PYTHON:-python3}" -m venv "$peer"
  "$peer/bin/python" -m pip install --quiet --disable-pip-version-check -r bench/peer/requirements.txt
  echo "$stamp" > "$peer/.requirements-sha256"
fi

scripts/services.sh

export BENCH_COMMAND="scripts/bench.sh${*:+ $*}"
exec .venv/bin/python -m bench "$@"

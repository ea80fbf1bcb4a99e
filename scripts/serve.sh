#!/usr/bin/env bash
# Installs Keyhall with the server extra into .venv and serves it on 127.0.0.1:3000 with an SQLite
# file ./keyhall.db (created and initialised on first run). Arguments go to `keyhall serve`.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/venv.sh
ensure_venv "server"
exec .venv/bin/keyhall serve "$@"

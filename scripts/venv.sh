#!/usr/bin/env bash
# Sourced by the other scripts: `ensure_venv EXTRAS` creates .venv with Python 3.11+ when missing
# and installs keyhall into it (editable) with the given extras, e.g. "server" or "server,test".
ensure_venv() {
  local python=${PYTHON:-python3}
  if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$1]"
}

#!/usr/bin/env bash
# Create or reuse the local virtual environment .venv (Python 3.11) with the pinned dependencies.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again (does nothing when up to date).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${EXGS_PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY="$cand"; break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "exgs setup: Python 3.11 is required (set EXGS_PYTHON to its path)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "exgs setup: creating .venv with $("$PY" --version)" >&2
  "$PY" -m venv .venv
fi
STAMP=.venv/.exgs-installed
WANT="$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
  echo "exgs setup: installing pinned dependencies into .venv (first run takes a few minutes)" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  echo "$WANT" > "$STAMP"
fi

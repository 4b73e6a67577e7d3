#!/usr/bin/env bash
# Lint, format check and type check, as CI runs them (config in pyproject.toml). Uses .venv (scripts/setup_env.sh).
# `scripts/lint.sh --fix` applies ruff's fixes and formatting first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN=.venv/bin
if [ "${1:-}" = "--fix" ]; then
  "$BIN/ruff" check --fix .
  "$BIN/ruff" format .
fi
echo "== ruff check" && "$BIN/ruff" check .
echo "== ruff format --check" && "$BIN/ruff" format --check .
echo "== mypy" && "$BIN/mypy"

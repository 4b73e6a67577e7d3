#!/usr/bin/env bash
# The main job on the scene bundled in the repo: sets up .venv if needed, then runs scripts/demo.py.
# Extra arguments go to demo.py (see `--help`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
exec .venv/bin/python scripts/demo.py "$@"

#!/usr/bin/env bash
# The whole test suite: sets up .venv if needed, then runs pytest. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
# Blender add-on tests: bpy 5.0.1 in .venv and bpy 5.3.0 in .venv-blender53, each in its own process
bash "$ROOT/scripts/test_blender.sh"
exec .venv/bin/python -m pytest -q tests "$@"

#!/usr/bin/env bash
# The whole test suite: sets up .venv if needed, then runs pytest. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
# Blender add-on tests: the built zip installed into bare bpy 4.5 / 5.0 / 5.3 environments, one after another
rc=0
bash "$ROOT/scripts/test_blender.sh" || rc=$?
.venv/bin/python -m pytest -q tests "$@" || rc=$?
exit $rc

#!/usr/bin/env bash
# The Blender part of the test suite: runs tests/blender (pytest, headless bpy) once per supported Blender line,
# each in its own process (one Blender per process):
#   * bpy 5.0.1 in .venv            (Python 3.11; set up by scripts/setup_env.sh from requirements.txt)
#   * bpy 5.3.0 in .venv-blender53  (Python 3.13 from pyenv, created/reused here; no torch)
# Idempotent: .venv-blender53 is (re)filled only when the pins below change (stamp file).
# Extra arguments go to pytest; --setup-only just creates/refreshes .venv-blender53.
# Without Python 3.13 the 5.3 run is skipped with a message (EXGS_REQUIRE_BLENDER53=1 makes that a failure);
# EXGS_SKIP_BLENDER53=1 skips the 5.3 run on purpose.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# ---- Blender 5.0 / Python 3.11: .venv from setup_env.sh (bpy==5.0.1 is in requirements.txt)
bash "$ROOT/scripts/setup_env.sh"

# ---- Blender 5.3 / Python 3.13: .venv-blender53
B53=.venv-blender53
PINS53=(bpy==5.3.0 "numpy>=2.2,<3" numba==0.68.1 llvmlite==0.50.0 plyfile==1.1.3 pillow==13.0.0
        zstandard==0.25.0 scikit-image==0.26.0 tqdm==4.70.1 pytest==9.2.0 "setuptools>=65")
setup_b53() {
  local py
  py="$(PYENV_VERSION=3.13.0 command -v python3.13 || true)"
  if [ -z "$py" ] || ! PYENV_VERSION=3.13.0 "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
    echo "exgs test_blender: SKIPPED Blender 5.3 tests: Python 3.13 not found (PYENV_VERSION=3.13.0 python3.13)" >&2
    return 2
  fi
  if [ ! -x "$B53/bin/python" ]; then
    echo "exgs test_blender: creating $B53 with $(PYENV_VERSION=3.13.0 "$py" --version)" >&2
    PYENV_VERSION=3.13.0 "$py" -m venv "$B53"
  fi
  local want stamp="$B53/.exgs-installed"
  want="$(printf '%s\n' "${PINS53[@]}" | cat - pyproject.toml | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "exgs test_blender: installing bpy 5.3.0 and exgs_core's dependencies into $B53 (first run: minutes)" >&2
    "$B53/bin/python" -m pip install -q --upgrade pip
    "$B53/bin/python" -m pip install -q "${PINS53[@]}"
    "$B53/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
    echo "$want" > "$stamp"
  fi
}

if [ "${1:-}" = "--setup-only" ]; then
  setup_b53
  exit $?
fi

rc=0
echo "== Blender tests: bpy 5.0.1, Python 3.11 (.venv)" >&2
EXGS_BLENDER_TESTS=1 .venv/bin/python -m pytest -q -p no:cacheprovider tests/blender "$@" || rc=$?
if [ "${EXGS_SKIP_BLENDER53:-0}" != "1" ]; then
  s53=0
  setup_b53 || s53=$?
  if [ "$s53" = 0 ]; then
    echo "== Blender tests: bpy 5.3.0, Python 3.13 ($B53)" >&2
    EXGS_BLENDER_TESTS=1 "$B53/bin/python" -m pytest -q -p no:cacheprovider tests/blender "$@" || rc=$?
  elif [ "$s53" != 2 ] || [ "${EXGS_REQUIRE_BLENDER53:-0}" = "1" ]; then
    rc=1  # install failure, or Python 3.13 required but missing
  fi
fi
exit $rc

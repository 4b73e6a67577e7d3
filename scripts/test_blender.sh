#!/usr/bin/env bash
# The Blender part of the test suite, run against the add-on **as users install it**:
#   1. build the extension zip with build.py (this machine's platform, cp311 + cp313 wheels);
#   2. for each supported Blender line, create (or reuse) a *bare* environment holding only what a stock Blender
#      has -- bpy and the packages its wheel declares (the numpy that Blender version bundles, zstandard, requests,
#      ...) -- plus pytest to drive it:
#        * Blender 4.5 LTS: bpy 4.5.15, Python 3.11  (.venv-bpy45)
#        * Blender 5.0:     bpy 5.0.1,  Python 3.11  (.venv-bpy50)
#        * Blender 5.3:     bpy 5.3.0,  Python 3.13  (.venv-bpy53, PYENV_VERSION=3.13.0 python3.13)
#   3. run tests/blender in each, one after another, from a folder outside the checkout with `python -P` (nothing
#      from the checkout on sys.path): the tests install the zip into a fresh Blender user folder and check that
#      exgs_core, numba, ... come from the installed extension. Restoration tests point the add-on's "Worker
#      Python" preference at .venv (torch, diffusers), as a user points it at their worker environment.
#
# Idempotent: environments are (re)filled only when their pins change (stamp files). Extra arguments go to pytest.
#   EXGS_BLENDER_LINES="4.5 5.0"   run only these lines (default: all three)
#   EXGS_REQUIRE_BLENDER53=1       a missing Python 3.13 fails the run instead of skipping Blender 5.3
#   --setup-only                   just build the zip and create/refresh the environments
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTEST_PIN="pytest==9.2.0"
declare -A BPY=([4.5]="bpy==4.5.15" [5.0]="bpy==5.0.1" [5.3]="bpy==5.3.0")
declare -A PYV=([4.5]="3.11" [5.0]="3.11" [5.3]="3.13")
LINES=(${EXGS_BLENDER_LINES:-4.5 5.0 5.3})

# The worker environment for restoration tests (torch + diffusers): .venv from setup_env.sh.
bash "$ROOT/scripts/setup_env.sh"

find_python() {  # $1 = 3.11 | 3.13 -> prints an interpreter of that version (pyenv's 3.13.0 included), or nothing
  local v="$1" cand path
  for cand in "python$v" python3; do
    for pyenv in "${PYENV_VERSION:-}" "$v.0"; do
      path="$(PYENV_VERSION="$pyenv" command -v "$cand" 2>/dev/null || true)"
      if [ -n "$path" ] && PYENV_VERSION="$pyenv" "$path" -c \
           "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$v'.split('.'))))" 2>/dev/null; then
        echo "PYENV_VERSION=$pyenv $path"; return 0
      fi
    done
  done
  return 0
}

setup_line() {  # $1 = line -> creates/refreshes .venv-bpyXY; returns 2 when its Python is missing
  local line="$1" dir=".venv-bpy${1/./}" py want stamp
  stamp="$dir/.exgs-bare"
  want="${BPY[$line]} $PYTEST_PIN"
  if [ -x "$dir/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
    return 0
  fi
  py="$(find_python "${PYV[$line]}")"
  if [ -z "$py" ]; then
    echo "exgs test_blender: no Python ${PYV[$line]} for Blender $line" >&2
    return 2
  fi
  echo "exgs test_blender: creating the bare Blender $line environment $dir (${BPY[$line]}, first run: minutes)" >&2
  rm -rf "$dir"
  env $py -m venv "$dir"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "${BPY[$line]}" "$PYTEST_PIN"
  echo "$want" > "$stamp"
}

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) PLATFORM=linux-x64 ;;
  Darwin-arm64) PLATFORM=macos-arm64 ;;
  *) PLATFORM=windows-x64 ;;
esac

rc=0
ready=()
for line in "${LINES[@]}"; do
  s=0
  setup_line "$line" || s=$?
  if [ "$s" = 0 ]; then
    ready+=("$line")
  elif [ "$s" = 2 ] && [ "$line" = 5.3 ] && [ "${EXGS_REQUIRE_BLENDER53:-0}" != "1" ]; then
    echo "exgs test_blender: SKIPPED Blender 5.3 tests: Python 3.13 not found (PYENV_VERSION=3.13.0 python3.13)" >&2
  else
    rc=1
  fi
done
[ "${#ready[@]}" -gt 0 ] || { echo "exgs test_blender: no Blender environment could be set up" >&2; exit 1; }

# Build the zip once, with the builder shipped in the first environment's bpy wheel.
ZIPDIR="$ROOT/build/addon-zip"
rm -rf "$ZIPDIR"
mkdir -p "$ZIPDIR"
first=".venv-bpy${ready[0]/./}"
echo "== building the extension zip ($PLATFORM)" >&2
"$first/bin/python" build.py --platforms "$PLATFORM" --out "$ZIPDIR" >&2
ZIP="$(ls "$ZIPDIR"/exgs-*.zip | head -1)"

if [ "${1:-}" = "--setup-only" ]; then
  echo "$ZIP"
  exit $rc
fi

RUNDIR="$(mktemp -d "${TMPDIR:-/tmp}/exgs-blender-tests-XXXXXX")"
trap 'rm -rf "$RUNDIR"' EXIT
for line in "${ready[@]}"; do
  dir="$ROOT/.venv-bpy${line/./}"
  echo "== Blender tests: ${BPY[$line]}, Python ${PYV[$line]}, bare ($dir), add-on installed from $(basename "$ZIP")" >&2
  # -P and a working folder outside the checkout: nothing from the checkout is importable; a fresh Blender
  # user folder per line (the tests' conftest makes one): first-use costs (numba compiling) are paid in the run.
  (cd "$RUNDIR" && env -u PYTHONPATH EXGS_BLENDER_TESTS=1 EXGS_ADDON_ZIP="$ZIP" EXGS_BLENDER_TAG="bpy${line/./}" \
     EXGS_TEST_WORKER_PYTHON="$ROOT/.venv/bin/python" \
     "$dir/bin/python" -P -m pytest -q -p no:cacheprovider --rootdir "$ROOT/tests/blender" \
     --confcutdir "$ROOT/tests/blender" -c "$ROOT/tests/blender/pytest.ini" "$ROOT/tests/blender" "$@") || rc=$?
done
exit $rc

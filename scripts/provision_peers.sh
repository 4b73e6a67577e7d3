#!/usr/bin/env bash
# Optional peers for the independent checks: PlayCanvas splat-transform 3.10.2 (npm, into .tools/), Debian's
# chromium (headless browser check), and the web viewer bundle (scripts/build_viewer.sh -> build/viewer/).
# Each step is skipped when already done; a failure is reported and the next step still runs. Exit status 1 if
# any step failed (the tests that need the missing piece skip).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
rc=0
ST=.tools/node_modules/.bin/splat-transform
if [ ! -x "$ST" ] || ! "$ST" --version 2>&1 | grep -q "v3.10.2"; then
  echo "provision: npm install @playcanvas/splat-transform@3.10.2 -> .tools/" >&2
  npm install --prefix .tools --no-audit --no-fund @playcanvas/splat-transform@3.10.2 >/dev/null || rc=1
fi
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "provision: apt-get install chromium" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || rc=1
  else
    echo "provision: /usr/bin/chromium missing and cannot apt-get install it (not root)" >&2
    rc=1
  fi
fi
if command -v node >/dev/null; then
  bash scripts/build_viewer.sh >/dev/null || { echo "provision: scripts/build_viewer.sh failed" >&2; rc=1; }
else
  echo "provision: node missing: no web viewer" >&2
  rc=1
fi
exit $rc

#!/usr/bin/env bash
# Build the exgs web viewer (`exgs view`, tests/test_browser.py) into build/viewer/.
#
# Installs pinned npm packages into .tools/viewer/ (git-ignored) and bundles the page sources in
# exgs_core/viewer/web/ with esbuild: build/viewer/{index.html, boot.js, spark.js, playcanvas.js, build.json}.
# The page loads nothing from elsewhere at run time (its Content-Security-Policy forbids it).
# Needs node >= 18 and npm; the npm registry is reached once per version change. Safe to run again.
#
#   bash scripts/build_viewer.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# The engines and the bundler, pinned. Spark renders .spz (v2-v4), .ply, .splat, .ksplat and .sog on three.js;
# PlayCanvas renders .sog, .ply and .glb (KHR_gaussian_splatting). fflate is Spark's one dependency, pinned here too.
PACKAGES=(
  "@sparkjsdev/spark@2.2.0"
  "three@0.187.0"
  "fflate@0.8.3"
  "playcanvas@2.23.3"
  "@babylonjs/core@9.28.0"
  "@babylonjs/loaders@9.28.0"
  "babylonjs-gltf2interface@9.28.0"
  "@adobe/spz@0.2.3"
  "esbuild@0.28.2"
)
TOOLS=.tools/viewer
OUT=build/viewer
SRC=exgs_core/viewer/web

command -v node >/dev/null || { echo "build_viewer: node is required (apt-get install nodejs npm)" >&2; exit 1; }
command -v npm >/dev/null || { echo "build_viewer: npm is required (apt-get install npm)" >&2; exit 1; }

WANT="$(printf '%s\n' "${PACKAGES[@]}")"
if [ "$(cat "$TOOLS/.exgs-packages" 2>/dev/null || true)" != "$WANT" ]; then
  echo "build_viewer: installing ${PACKAGES[*]} into $TOOLS" >&2
  mkdir -p "$TOOLS"
  npm install --prefix "$TOOLS" --save-exact --no-audit --no-fund --loglevel=error "${PACKAGES[@]}"
  printf '%s\n' "$WANT" > "$TOOLS/.exgs-packages"
fi

version() { node -p "require('./$TOOLS/node_modules/$1/package.json').version"; }
SPARK_VERSION="$(version @sparkjsdev/spark)"

rm -rf "$OUT.tmp"
mkdir -p "$OUT.tmp"
NODE_PATH="$TOOLS/node_modules" "$TOOLS/node_modules/.bin/esbuild" \
  "$SRC/spark.js" "$SRC/playcanvas.js" "$SRC/babylon.js" "$SRC/boot.js" \
  --bundle --format=esm --minify --target=es2022 --charset=ascii --legal-comments=eof --log-level=warning \
  --define:__SPARK_VERSION__="\"$SPARK_VERSION\"" \
  --outdir="$OUT.tmp"
cp "$SRC/index.html" "$OUT.tmp/index.html"
# Niantic's SPZ reference decoder (WebAssembly inside one ES module), loaded by Babylon.js for .spz at run time.
cp "$TOOLS/node_modules/@adobe/spz/dist/spz.js" "$OUT.tmp/spz.js"

# What was built from what: the server checks the sources' hash to say when this build is older than them.
SOURCES_SHA="$(cat "$SRC"/index.html "$SRC"/*.js | sha256sum | cut -d' ' -f1)"
cat > "$OUT.tmp/build.json" <<EOF
{
  "sources_sha256": "$SOURCES_SHA",
  "packages": {
    "@sparkjsdev/spark": "$SPARK_VERSION",
    "three": "$(version three)",
    "fflate": "$(version fflate)",
    "playcanvas": "$(version playcanvas)",
    "@babylonjs/core": "$(version @babylonjs/core)",
    "@babylonjs/loaders": "$(version @babylonjs/loaders)",
    "@adobe/spz": "$(version @adobe/spz)",
    "esbuild": "$(version esbuild)"
  }
}
EOF
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
echo "build_viewer: built $OUT ($(du -sh "$OUT" | cut -f1))" >&2

#!/usr/bin/env bash
# Builds the token console (GET /console/) from web/console/src into
# internal/console/assets, which the binary embeds and git tracks; CI runs
# this and fails if the tracked files differ from its output.
#
# Needs the npm packages the generated client imports, from the lock file:
#   npm ci --prefix web/console
# esbuild, the bundler, is a Go tool pinned in go.mod (go tool esbuild).
# The output depends only on the sources, gen/ts and the pinned versions.
set -euo pipefail
cd "$(dirname "$0")/.."

src=web/console
out=internal/console/assets
if [ ! -d "$src/node_modules/@connectrpc/connect-web" ]; then
  echo "build-console: the npm packages are missing; run: npm ci --prefix $src" >&2
  exit 1
fi

# esbuild does not type-check; tsc does, and writes nothing.
"$src/node_modules/.bin/tsc" -p "$src"

rm -rf "$out"
mkdir -p "$out"
# gen/ts imports @bufbuild/protobuf, which lives in web/console's
# node_modules, not beside gen/ts: NODE_PATH points esbuild there.
NODE_PATH="$src/node_modules" go tool esbuild "$src/src/main.ts" \
  --bundle --format=esm --platform=browser --target=es2022 \
  --minify --charset=utf8 --log-level=warning \
  --outfile="$out/console.js"
cp "$src/src/index.html" "$src/src/console.css" "$src/src/favicon.svg" "$out/"

#!/usr/bin/env bash
# Compiles src/ to dist/, bundles the CLI into dist/bundle/ (what bin/kiln
# runs when it is up to date), compiles the sandbox's C programs to
# dist/native/ (kiln-launcher, kiln-sandbox-init), and stamps the build;
# bin/kiln falls back to tsx when any source is newer.
# With --if-stale it does nothing when dist/ is already newer than every
# source (the benches call it so, to measure the compiled CLI).
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=dist/.build-stamp
if [ "${1:-}" = --if-stale ] && [ -f "$stamp" ] &&
  [ -z "$(find src tsconfig.json tsconfig.build.json package-lock.json -newer "$stamp" -print -quit)" ]; then
  exit 0
fi
rm -rf dist
npx --no-install tsc -p tsconfig.build.json
node scripts/bundle-cli.mjs
node --import tsx -e "(await import('./src/build/sandbox/native-programs.ts')).compileNativePrograms()"
touch "$stamp"

#!/usr/bin/env bash
# Compiles src/ to dist/ (what bin/kiln runs when it is up to date) and
# stamps the build; bin/kiln falls back to tsx when any source is newer.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf dist
npx --no-install tsc -p tsconfig.build.json
touch dist/.build-stamp

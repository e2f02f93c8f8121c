#!/usr/bin/env bash
# The whole test suite: installs what is missing, then `npm run check`
# (type-check, lint, layer rules, generated-code drift, every test).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
npm run check

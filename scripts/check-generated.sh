#!/usr/bin/env bash
# Regenerates src/gen from proto/ into a temp dir and fails if it differs
# from the committed code.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
npx --no-install buf lint
npx --no-install buf generate --output "$out"
if ! diff -r "$out/src/gen" src/gen; then
  echo "error: src/gen is out of date with proto/; run: npm run generate" >&2
  exit 1
fi
echo "generated code is up to date"

#!/usr/bin/env bash
# Runs every *.test.ts under src/ and test/ with node:test (explicit file
# list: node 20 does not expand globs). Extra arguments are passed to node.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(find src test -name '*.test.ts' -not -path '*/node_modules/*' | sort)
exec node --import tsx --test --test-concurrency="${KILN_TEST_CONCURRENCY:-2}" "$@" "${files[@]}"

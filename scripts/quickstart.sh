#!/usr/bin/env bash
# Quick start: install everything, then run the main job with the default
# builder (bwrap when installed, else runc) on the embedded default store
# ($KILN_HOME/store): build examples/hello-request.json with
# examples/sample-tree as its input `sample-tree`, logs on stderr, and print
# the BuildResponse (proto3 JSON) on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
bin/kiln build examples/hello-request.json --input sample-tree=examples/sample-tree --json

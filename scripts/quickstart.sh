#!/usr/bin/env bash
# Quick start: install everything, then run the main job on the embedded
# default store ($KILN_HOME/store): import the sample tree and print its root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
bin/kiln castore import examples/sample-tree

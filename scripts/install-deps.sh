#!/usr/bin/env bash
# Installs what Kiln needs on a fresh Debian 12 machine (run as root): the
# sandboxes and tools it drives or measures against, then the npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(b3sum runc crun bubblewrap busybox-static nix-bin python3-grpcio python3-protobuf python3-grpc-tools protobuf-compiler openssl)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -d node_modules/tsx ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
stamp=dist/.build-stamp
if [ ! -f "$stamp" ] || [ -n "$(find src tsconfig.json tsconfig.build.json package-lock.json -newer "$stamp" -print -quit)" ]; then
  scripts/build.sh
fi

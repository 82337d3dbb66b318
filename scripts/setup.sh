#!/usr/bin/env bash
# Installs what building and testing flowtap needs on a fresh Debian machine
# (the Rust toolchain is assumed). Idempotent and quick when all is present.
# System packages need root (or sudo); the offline demo needs none of this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages, each with what needs it.
packages=(
  clang llvm libbpf-dev   # build.rs compiles the XDP program
  iproute2                # live tests build SPAN ports from namespaces; host mode's veth
  ethtool                 # live tests turn offloads off to compare with tcpdump
  tcpdump                 # live tests record the mirror port for comparison
  prometheus              # promtool checks /metrics
  python3-venv            # the MCP client tests (Python mcp SDK)
  curl                    # HTTP tests and the README examples
  libcap2-bin             # setcap: the image's file capabilities, tested as non-root
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# kubectl validates the Kubernetes manifests; any kubectl will do.
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)

if ((${#missing[@]})); then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "setup: need root to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "setup: installing ${missing[*]}" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
# rustup may ask the network even when both are installed: ask only if missing.
{ cargo fmt --version && cargo clippy --version; } >/dev/null 2>&1 || rustup component add rustfmt clippy

# Python tools the tests drive, pinned, in the project's own venv.
python_packages=(
  "kubernetes-validate==1.37.0"   # validates deploy/kubernetes offline against the API schemas
)
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
for p in "${python_packages[@]}"; do
  installed=$(.venv/bin/pip show "${p%%==*}" 2>/dev/null | sed -n 's/^Version: //p')
  [ "$installed" = "${p##*==}" ] || .venv/bin/pip install -q "$p"
done

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
  faketime                # live tests step the wall clock under flowtap
  tshark                  # TCP-health truth from the corpus (scripts/tcp-health-truth.py)
  nftables                # the live TCP-health test drops segments behind the mirror
  nfdump pmacct           # nfcapd/nfdump and nfacctd read flowtap's IPFIX export in the tests
  chromium chromium-driver  # the service map's test drives the page in headless Chromium
  tmux                    # flowtap top's test runs it in a terminal and reads the screen
  zstd xz-utils           # capture tests compress captures with the tools users have
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# kubectl validates the Kubernetes manifests; any kubectl will do.
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
# The MCP client tests' TypeScript SDK needs Node 18 or later (Debian 12's);
# any node with npm will do.
{ command -v node && command -v npm; } >/dev/null 2>&1 || missing+=(nodejs npm)

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

# The IPFIX tests' collectors ask for 4 MiB socket buffers (a capture's
# records arrive in one burst at its end); the kernel caps them at
# net.core.rmem_max, 208 KiB by default. Raised where the tests run as root.
if [ "$(id -u)" -eq 0 ] && [ "$(sysctl -n net.core.rmem_max 2>/dev/null || echo 0)" -lt 4194304 ]; then
  echo "setup: net.core.rmem_max = 4194304 (the IPFIX collectors' buffers)" >&2
  sysctl -qw net.core.rmem_max=4194304
fi

command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
# The fuzz targets (scripts/fuzz.sh) and the dependency audit (scripts/audit.sh).
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
command -v cargo-deny >/dev/null 2>&1 || cargo install --locked cargo-deny
# rustup may ask the network even when both are installed: ask only if missing.
{ cargo fmt --version && cargo clippy --version; } >/dev/null 2>&1 || rustup component add rustfmt clippy

# Python tools the tests drive, pinned, each set in a venv of the project's
# own: the current MCP SDK (stateless 2026-07-28 and handshake revisions) and
# an older 1.x (handshake revisions only) cannot share one, being one package.
venv_packages() {
  local venv="$1"; shift
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  local p installed
  for p in "$@"; do
    # (pip show fails for a package not installed: that is "none", not an error)
    installed=$("$venv/bin/pip" show "${p%%==*}" 2>/dev/null | sed -n 's/^Version: //p') || installed=""
    [ "$installed" = "${p##*==}" ] || "$venv/bin/pip" install -q "$p"
  done
}
venv_packages .venv \
  "kubernetes-validate==1.37.0" `# validates deploy/kubernetes offline against the API schemas` \
  "mcp==2.3.0"                  `# the MCP client tests: the current official Python SDK` \
  "selenium==4.50.0"            `# the service map's test: drives Debian's chromium through chromedriver`
venv_packages .venv-mcp1 \
  "mcp==1.27.0"                 `# the MCP client tests: the last 1.x SDK`

# The official TypeScript MCP SDK, pinned by its package-lock.json, for the
# MCP client tests (flowtap/tests/support/mcp_client_ts).
ts_client=flowtap/tests/support/mcp_client_ts
ts_version() { node -p "require('./$1').version" 2>/dev/null || echo none; }
ts_pinned=$(node -p "require('./$ts_client/package.json').dependencies['@modelcontextprotocol/sdk']")
[ "$(ts_version "$ts_client/node_modules/@modelcontextprotocol/sdk/package.json")" = "$ts_pinned" ] ||
  npm ci --prefix "$ts_client" --no-audit --no-fund --loglevel=error

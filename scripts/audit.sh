#!/usr/bin/env bash
# Dependency audit (cargo-deny, rules in deny.toml): licenses, duplicate and
# wildcard versions, and sources always; RustSec advisories whenever the
# advisory database (on GitHub) can be fetched, else a loud notice that they
# were not checked this time.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo deny --locked check licenses bans sources
if cargo deny fetch db >/dev/null 2>&1; then
  cargo deny --locked check --disable-fetch advisories
else
  echo "audit: WARNING: the RustSec advisory database could not be fetched; advisories NOT checked" >&2
fi

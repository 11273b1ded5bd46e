#!/usr/bin/env bash
# Runs every check and test of the mesh: lint gates, unit, loopback integration and network-namespace
# end-to-end tests, then the `fips` (BoringSSL provider) build of the TLS crates. Needs root for the netns tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

echo "== fmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== build binaries used by the end-to-end tests"
cargo build --workspace --bins
echo "== tests"
cargo nextest run --workspace --no-fail-fast
echo "== fips: TLS crates with BoringSSL as the rustls crypto provider"
cargo nextest run -p mesh-identity -p hbone --no-default-features --features fips --no-fail-fast
echo "== fips: the waypoint (HBONE, JWKS fetches and JWT signatures through BoringSSL)"
cargo nextest run -p waypoint --features fips --no-fail-fast

#!/usr/bin/env bash
# Runs every check and test of the mesh: lint gates, unit, loopback integration and network-namespace
# end-to-end tests, then the `fips` (BoringSSL provider) build of the TLS crates. Needs root for the netns tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

if [ "${CI:-}" = true ]; then
  # CI's disk is small and a full build links ~80 executables. A one-shot build gains nothing from
  # incremental caches, and without debug info (line tables of our crates, std's debug info) each
  # executable is a third of its size; a failing test still names its file and line in the panic.
  export CARGO_INCREMENTAL=0
  export CARGO_PROFILE_DEV_DEBUG=0
  export CARGO_PROFILE_DEV_STRIP=debuginfo
fi
# Disk left after each stage, so a full disk is visible in the log, not only as a linker crash.
space() { df -h --output=avail,target "${CARGO_TARGET_DIR:-target}" 2>/dev/null | tail -1 || true; }

echo "== fmt"
cargo fmt --all -- --check
echo "== clippy (disk free: $(space))"
cargo clippy --workspace --all-targets -- -D warnings
echo "== build binaries used by the end-to-end tests (disk free: $(space))"
cargo build --workspace --bins
echo "== tests (disk free: $(space))"
cargo nextest run --workspace --no-fail-fast
echo "== fips: TLS crates with BoringSSL as the rustls crypto provider (disk free: $(space))"
cargo nextest run -p mesh-identity -p hbone --no-default-features --features fips --no-fail-fast
echo "== fips: the waypoint (HBONE, JWKS fetches and JWT signatures through BoringSSL) (disk free: $(space))"
cargo nextest run -p waypoint --features fips --no-fail-fast

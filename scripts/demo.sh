#!/usr/bin/env bash
# The L4 demo: two "nodes" in network namespaces, one real ztunnel each, pods enrolled with the real redirect
# rules; shows mTLS between nodes, the identities seen, and a policy taking effect. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release -p ztunnel -p mesh-testbed --bins
MESH_PROFILE=release exec target/release/mesh-l4-demo

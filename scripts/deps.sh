#!/usr/bin/env bash
# Installs what building and testing the mesh needs on a fresh Debian machine (run as root).
# Idempotent: skips apt when every package is already present.
# `--demo`: only what building and running the demo needs (no test-only tools: kubernetes-validate,
# kubectl, cargo-nextest).
set -euo pipefail
DEMO_ONLY=
[ "${1:-}" = "--demo" ] && DEMO_ONLY=1

PACKAGES=(
  iptables nftables iproute2 containernetworking-plugins   # capture rules, netns, the standard CNI plugins
  tcpdump                                                  # tests prove node-to-node bytes are TLS
  iperf3 sockperf wrk                                      # benchmarks (standard load tools)
  protobuf-compiler                                        # prost-build for control/api protos
  cmake clang libclang-dev g++ pkg-config                  # aws-lc-sys and boring-sys (the `fips` feature)
  curl ca-certificates procps psmisc python3               # python3: the demo and benches read JSON
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing Debian packages: ${missing[*]}; run as root (apt-get install)" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "deps: cargo not found: install a Rust toolchain (rustup) first" >&2
  exit 1
fi
[ -z "$DEMO_ONLY" ] || exit 0

# control/tests/it/deploy.rs renders deploy/ with `kubectl kustomize` and validates it with kubernetes-validate (PyPI).
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "deps: installing kubernetes-validate"
  python3 -m pip install -q kubernetes-validate
fi
if ! command -v kubectl >/dev/null 2>&1; then
  echo "deps: kubectl (with kustomize) not found: install it for control/tests/it/deploy.rs" >&2
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "deps: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

#!/usr/bin/env bash
# Local-mode benchmark (issue 5 targets): `meshctl local up` with 2 nodes ready (< 5 s after build),
# a Deployment of 100 replicas scheduled and Running with an IP (< 20 s), and `down` leaving nothing
# (no netns with the cluster prefix, no process, no /etc/netns dir), also after a crash (SIGKILL) of
# each component in turn. Run as root, after building:
#
#   cargo build --release -p meshctl -p mesh-control -p ztunnel -p mesh-cni
#   sudo bash benches/local_mode.sh [--pods 100] [--rounds 2] [--crash-pods 10]
#
# MESHCTL=path/to/meshctl picks another build (default target/release/meshctl). Prints a markdown
# table; exit code 1 when a `down` left something behind.
set -euo pipefail
cd "$(dirname "$0")/.."

PODS=100 ROUNDS=2 CRASH_PODS=10
while [ $# -gt 0 ]; do
  case "$1" in
    --pods) PODS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --crash-pods) CRASH_PODS=$2; shift 2 ;;
    *) echo "usage: $0 [--pods N] [--rounds N] [--crash-pods N]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "local_mode: run as root (network namespaces)" >&2; exit 1; }
MESHCTL=${MESHCTL:-target/release/meshctl}
[ -x "$MESHCTL" ] || { echo "local_mode: $MESHCTL not built (cargo build --release -p meshctl ...)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "local_mode: python3 needed (reads -o json)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/meshctl-bench.XXXXXX)
STATE=$WORK/state
trap '"$MESHCTL" local down --state "$STATE" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }

deployment() { # name replicas
  cat >"$WORK/$1.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: $1, namespace: default}
spec:
  replicas: $2
  selector: {matchLabels: {app: $1}}
  template:
    metadata: {labels: {app: $1}}
    spec:
      containers:
      - name: main
        command: [sleep, infinity]
EOF
  echo "$WORK/$1.yaml"
}

# Pods Running with an IP, as `get pods -o json` reports them.
running() {
  "$MESHCTL" local get pods --state "$STATE" -o json | python3 -c '
import json, sys
items = json.load(sys.stdin).get("items", [])
print(sum(1 for p in items if p.get("status", {}).get("phase") == "Running" and p.get("status", {}).get("podIP")))'
}

wait_running() { # n timeout_s
  local deadline=$(( $(date +%s) + $2 ))
  until [ "$(running)" -ge "$1" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "local_mode: $1 pods not Running after $2 s" >&2; return 1; }
    sleep 0.2
  done
}

cluster_id() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$STATE/state.json"; }
component_pid() { python3 -c '
import json, sys
print(next(p["pid"] for p in json.load(open(sys.argv[1]))["processes"] if p["name"] == sys.argv[2]))' "$STATE/state.json" "$1"; }

# A process's identity: pid and start time (a pid can be reused by then on a busy machine).
ident() { local st; st=$(cat "/proc/$1/stat" 2>/dev/null) || return 0; echo "$1:$(echo "${st##*) }" | awk '{print $20}')"; }

# Every process of the cluster: its recorded components and whatever runs in its namespaces (pods).
cluster_pids() { # id
  local p
  for p in $(python3 -c 'import json,sys; [print(p["pid"]) for p in json.load(open(sys.argv[1]))["processes"]]' "$STATE/state.json"); do
    ident "$p"
  done
  for ns in $(ip netns list | awk '{print $1}' | grep "^meshctl-$1-" || true); do
    for p in $(ip netns pids "$ns" 2>/dev/null || true); do ident "$p"; done
  done
}

# What `down` left: netns with the prefix, live processes among $2.. (pid:start), /etc/netns dirs.
leftovers() { # id idents...
  local id=$1; shift
  local left=()
  left+=($(ip netns list | awk '{print $1}' | grep "^meshctl-$id-" || true))
  for p in "$@"; do
    local pid=${p%%:*}
    if [ "$(ident "$pid")" = "$p" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
      left+=("pid:$pid($(cat "/proc/$pid/comm" 2>/dev/null))")
    fi
  done
  left+=($(ls -d /etc/netns/meshctl-"$id"-* 2>/dev/null || true))
  echo "${left[*]:-}"
}

FAILED=0
declare -a UP PODT DOWN
BIG=$(deployment bench "$PODS")
for r in $(seq 1 "$ROUNDS"); do
  t0=$(now); "$MESHCTL" local up --state "$STATE" --nodes 2 >/dev/null; t1=$(now)
  UP+=("$(secs "$t0" "$t1")")
  id=$(cluster_id)
  t0=$(now); "$MESHCTL" local apply --state "$STATE" -f "$BIG" >/dev/null; wait_running "$PODS" 300; t1=$(now)
  PODT+=("$(secs "$t0" "$t1")")
  pids=$(cluster_pids "$id")
  t0=$(now); "$MESHCTL" local down --state "$STATE" >/dev/null; t1=$(now)
  DOWN+=("$(secs "$t0" "$t1")")
  left=$(leftovers "$id" $pids)
  if [ -n "$left" ]; then echo "round $r: down left: $left" >&2; FAILED=1; fi
done

declare -a CRASH
SMALL=$(deployment crash "$CRASH_PODS")
for comp in control ztunnel-node-1 agent-node-2 runtime dns; do
  "$MESHCTL" local up --state "$STATE" --nodes 2 >/dev/null
  id=$(cluster_id)
  "$MESHCTL" local apply --state "$STATE" -f "$SMALL" >/dev/null
  wait_running "$CRASH_PODS" 120
  pids=$(cluster_pids "$id")
  kill -KILL "$(component_pid "$comp")"
  sleep 0.5
  t0=$(now); "$MESHCTL" local down --state "$STATE" >/dev/null; t1=$(now)
  left=$(leftovers "$id" $pids)
  if [ -n "$left" ]; then FAILED=1; fi
  CRASH+=("| down after SIGKILL of \`$comp\` ($CRASH_PODS pods running) | $(secs "$t0" "$t1") s | ${left:-nothing left} |")
done

echo
echo "| measure | runs | target |"
echo "|---|---|---|"
echo "| \`local up\`, 2 nodes ready (s) | ${UP[*]} | < 5 |"
echo "| $PODS replicas applied -> all Running with an IP (s) | ${PODT[*]} | < 20 |"
echo "| \`local down\` with $PODS pods (s) | ${DOWN[*]} | leaves nothing |"
echo
echo "| crash | down took | left behind |"
echo "|---|---|---|"
printf '%s\n' "${CRASH[@]}"
exit "$FAILED"

#!/usr/bin/env bash
# The demo (README's quick start), on a fresh Debian machine as root: installs the dependencies, builds
# the mesh, starts a 2-node local cluster (`meshctl local up`), applies the bookinfo example (reviews
# v1/v2/v3 on node-2, a client on node-1), drives requests through the mesh with `meshctl local exec`
# curl, and shows which versions answered (L4 only, then through a waypoint: default route, header
# route, weighted split), that traffic between nodes is mutual TLS (a capture on the fabric: only
# HBONE 15008, no plaintext marker; ztunnel metrics with connection_security_policy="mutual_tls" and
# the peers' SPIFFE identities), and the key Istio metrics. The cluster is removed at the end, also on failure or Ctrl-C.
# Exit code 0 only if every check passed.
#
#   sudo bash scripts/demo.sh            # the local-mode demo
#   sudo bash scripts/demo.sh --l4       # the older L4 demo: two real ztunnels, no control plane
#   DEMO_PROFILE=debug ...               # use (and build) debug binaries instead of release
#   DEMO_REQUESTS=40 ...                 # requests per measure
#   DEMO_SKIP_BUILD=1 ...                # skip deps.sh and the build (binaries already built)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if [ "$(id -u)" -ne 0 ]; then
  echo "demo: run as root (it creates network namespaces): sudo bash scripts/demo.sh" >&2
  exit 1
fi
PROFILE=${DEMO_PROFILE:-release}
case "$PROFILE" in release) FLAG=--release ;; debug) FLAG= ;; *) echo "demo: DEMO_PROFILE is release or debug" >&2; exit 2 ;; esac

if [ "${1:-}" = "--l4" ]; then
  bash scripts/deps.sh --demo
  nice -n 19 cargo build $FLAG -p ztunnel -p mesh-testbed --bins
  MESH_PROFILE=$PROFILE exec "target/$PROFILE/mesh-l4-demo"
fi
[ $# -eq 0 ] || { echo "usage: $0 [--l4]" >&2; exit 2; }

if [ -z "${DEMO_SKIP_BUILD:-}" ]; then
  echo "== dependencies"
  bash scripts/deps.sh --demo
  echo "== build ($PROFILE)"
  nice -n 19 cargo build $FLAG -p meshctl -p mesh-control -p ztunnel -p mesh-cni -p waypoint
fi

BIN=$ROOT/target/$PROFILE
MESHCTL=$BIN/meshctl
STATE=/run/meshctl-demo
N=${DEMO_REQUESTS:-40}
WORK=$(mktemp -d /tmp/meshctl-demo.XXXXXX)
FAILED=()
PASSED=()
check() { # name, then a command that succeeds when the check passes
  local name=$1; shift
  if "$@"; then PASSED+=("$name"); echo "  PASS $name"; else FAILED+=("$name"); echo "  FAIL $name"; fi
}
cleanup() {
  [ -n "${TCPDUMP:-}" ] && kill "$TCPDUMP" 2>/dev/null || true
  echo "== down"
  "$MESHCTL" local down --state "$STATE" | tail -1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "demo: interrupted" >&2; exit 130' INT TERM

if [ -e "$STATE/state.json" ]; then
  echo "demo: a cluster from an earlier run is still up in $STATE; removing it"
  "$MESHCTL" local down --state "$STATE" >/dev/null
fi

echo "== meshctl local up"
# Pods run with the PATH in force at `up`: the built `meshctl` (its `echo` is the test app) on it.
PATH=$BIN:$PATH "$MESHCTL" local up --state "$STATE" --nodes 2
ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$STATE/state.json")
NODE2=meshctl-$ID-node-2
FABRIC=meshctl-$ID-fabric
k() { local verb=$1; shift; "$MESHCTL" local "$verb" --state "$STATE" "$@"; }

# The example and its steps: examples/README.md (bookinfo, steps 1-5).
EX=$ROOT/examples/bookinfo
# Pods of bookinfo Running and Ready, as "ready total".
pods_ready() {
  k get pods -n bookinfo -o json | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
ok = [p for p in items if p.get("status", {}).get("phase") == "Running" and p.get("status", {}).get("podIP")
      and any(c.get("type") == "Ready" and c.get("status") == "True" for c in p["status"].get("conditions", []))]
print(len(ok), len(items))'
}
wait_pods() { # at least this many pods, all ready (at most ~30 s)
  for _ in $(seq 1 150); do
    ready=$(pods_ready)
    [ "${ready% *}" = "${ready#* }" ] && [ "${ready% *}" -ge "$1" ] && break
    sleep 0.2
  done
  k get pods -n bookinfo
  [ "${ready% *}" = "${ready#* }" ] && [ "${ready% *}" -ge "$1" ]
}

echo "== step 1: apply $EX/base.yaml"
k apply -f "$EX/base.yaml"
check "every bookinfo pod Running and Ready" wait_pods 1
PODS=${ready#* }

# A command's exit code after Ctrl-C/SIGTERM (128 + signal) stops the demo (the subshell of a
# $(...) would otherwise go on, and bash skips its INT trap when a child handled the signal).
interrupted() { if [ "$1" -eq 130 ] || [ "$1" -eq 143 ]; then exit "$1"; fi; }

# N requests from the client on node-1 to reviews (on node-2); prints "v1=.. v2=.. v3=.. failed=..".
CURL_HDRS=()
versions() {
  local out=$WORK/answers
  : >"$out"
  for _ in $(seq 1 "$N"); do
    k exec bookinfo/sleep -- curl -s -m 5 "${CURL_HDRS[@]}" -H "x-demo-marker: $MARKER" \
      http://reviews:9080/reviews >>"$out" 2>/dev/null || interrupted $?
    echo >>"$out"
  done
  python3 - "$out" "$N" <<'EOF'
import json, sys
counts = {}
for line in open(sys.argv[1]):
    line = line.strip()
    try:
        v = json.loads(line)["version"] if line else "failed"
    except (ValueError, KeyError):
        v = "failed"
    counts[v] = counts.get(v, 0) + 1
failed = int(sys.argv[2]) - sum(c for k, c in counts.items() if k != "failed")
print(" ".join(f"{k}={counts.get(k, 0)}" for k in ("v1", "v2", "v3")) + f" failed={failed}")
EOF
}
only() { # counts, version: every request answered by that version
  [ "$1" = "$(echo "v1=0 v2=0 v3=0 failed=0" | sed "s/$2=0/$2=$N/")" ]
}
split_ok() { # counts: v1 and v3 both answered, nothing else, no failure
  local v1 v2 v3 f
  read -r v1 v2 v3 f <<<"$(echo "$1" | sed 's/[a-z0-9]*=//g')"
  [ "$v1" -gt 0 ] && [ "$v3" -gt 0 ] && [ "$v2" -eq 0 ] && [ "$f" -eq 0 ]
}

# After a route change: until `times` answers in a row (with the given curl arguments) come from
# `version` (the config reached the waypoint; at most ~20 s); then the counting starts.
converge() { # times version curl-args...
  local times=$1 v=$2 run=0; shift 2
  for _ in $(seq 1 60); do
    local answer
    answer=$(k exec bookinfo/sleep -- curl -s -m 2 "$@" http://reviews:9080/reviews 2>/dev/null) || interrupted $?
    if echo "$answer" | grep -q "\"version\":\"$v\""; then
      run=$((run + 1)); [ "$run" -lt "$times" ] || return 0
    else
      run=0; sleep 0.3
    fi
  done
}

MARKER=PLAINTEXT-CANARY-$RANDOM$RANDOM
# Capture every TCP segment between the nodes (the fabric bridge) during the requests, except the
# ztunnels' config stream to control (15012).
ip netns exec "$FABRIC" tcpdump -i br0 -nn -U -s 0 -w "$WORK/fabric.pcap" 'tcp and not port 15012' \
  2>"$WORK/tcpdump.log" &
TCPDUMP=$!
sleep 1

echo "== first answer through the mesh"
for _ in $(seq 1 100); do
  answer=$(k exec bookinfo/sleep -- curl -s -m 2 http://reviews:9080/reviews 2>/dev/null) || interrupted $?
  echo "$answer" | grep -q '"version"' && break
  sleep 0.3
done

echo "== no waypoint yet (L4 only): ztunnel balances over every reviews pod"
R0=$(versions); echo "  $R0"
check "requests across nodes answered (L4 only)" test "${R0##*failed=}" = 0

echo "== step 2: a waypoint for bookinfo ($EX/waypoint.yaml)"
k apply -f "$EX/waypoint.yaml"
check "the waypoint pod runs and is ready" wait_pods $((PODS + 1))

echo "== step 3: all traffic to v1 ($EX/route-v1.yaml)"
k apply -f "$EX/route-v1.yaml"; converge 5 v1
R1=$(versions); echo "  default route: $R1"
check "default route: only v1 answers" only "$R1" v1

echo "== step 4: end-user: jason -> v2, others v1 ($EX/route-jason.yaml)"
k apply -f "$EX/route-jason.yaml"; converge 1 v2 -H "end-user: jason"
CURL_HDRS=(-H "end-user: jason")
R2=$(versions); echo "  with end-user: jason: $R2"
CURL_HDRS=()
R3=$(versions); echo "  without the header:   $R3"
check "header route: jason gets only v2" only "$R2" v2
check "header route: others get only v1" only "$R3" v1

echo "== step 5: split v1/v3 ($EX/route-split.yaml: $(grep -o 'subset: v[0-9]}, weight: [0-9]*' "$EX/route-split.yaml" | sed 's/subset: \(v[0-9]\)}, weight: \([0-9]*\)/\1 \2%/' | paste -sd' '))"
k apply -f "$EX/route-split.yaml"; converge 1 v3
R4=$(versions); echo "  split: $R4"
check "split: v1 and v3 answer, never v2" split_ok "$R4"

kill "$TCPDUMP" 2>/dev/null || true
wait "$TCPDUMP" 2>/dev/null || true
TCPDUMP=

echo "== mTLS between the nodes (capture on the fabric bridge)"
tcpdump -nn -r "$WORK/fabric.pcap" 2>/dev/null >"$WORK/fabric.txt" || true
TOTAL=$(grep -c ' IP ' "$WORK/fabric.txt" || true)
HBONE=$(grep -cE '\.15008[ :]' "$WORK/fabric.txt" || true)
echo "  $TOTAL TCP segments between nodes, $HBONE of them to or from port 15008 (HBONE); first ones:"
grep ' IP ' "$WORK/fabric.txt" | head -3 | sed 's/^/    /' || true
check "node-to-node traffic is only HBONE (port 15008)" test "$TOTAL" -gt 0 -a "$TOTAL" = "$HBONE"
check "the marker header reached reviews (echoed back)" grep -q "$MARKER" "$WORK/answers"
check "the plaintext marker header never crosses the fabric" bash -c "! grep -aq '$MARKER' '$WORK/fabric.pcap'"

echo "== ztunnel metrics of node-2 (destination side)"
ip netns exec "$NODE2" curl -s http://127.0.0.1:15020/metrics >"$WORK/ztunnel-node-2.prom"
python3 - "$WORK/ztunnel-node-2.prom" >"$WORK/metrics.txt" <<'EOF'
import re, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r'(istio_tcp_\w+_total)\{(.*)\} (\S+)$', line.strip())
    if not m:
        continue
    labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
    key = (labels.get("source_principal"), labels.get("destination_principal"),
           labels.get("destination_workload"), labels.get("connection_security_policy"))
    rows.setdefault(key, {})[m.group(1)] = rows.setdefault(key, {}).get(m.group(1), 0) + float(m.group(3))
print("  source_principal -> destination_principal (workload) policy: opened, sent bytes, received bytes")
for (src, dst, wl, pol), v in sorted(rows.items(), key=lambda kv: str(kv[0])):
    print(f"  {src} -> {dst} ({wl}) {pol}: {v.get('istio_tcp_connections_opened_total', 0):.0f}, "
          f"{v.get('istio_tcp_sent_bytes_total', 0):.0f}, {v.get('istio_tcp_received_bytes_total', 0):.0f}")
EOF
cat "$WORK/metrics.txt"
check "ztunnel on node-2 reports mutual_tls connections between SPIFFE identities" grep -q \
  'spiffe://cluster.local/ns/bookinfo/sa/[a-z-]* -> spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews .* mutual_tls' \
  "$WORK/metrics.txt"
check "ztunnel reports no plaintext connection" bash -c "! grep -q ' none:' '$WORK/metrics.txt'"

echo "== waypoint metrics (istio_requests_total)"
WP=$(k get pods -n bookinfo -o json | python3 -c '
import json, sys
for p in json.load(sys.stdin)["items"]:
    if p["metadata"].get("labels", {}).get("gateway.networking.k8s.io/gateway-name"):
        print(p["metadata"]["name"], p["status"].get("podIP", "")); break')
if [ -n "$WP" ]; then
  k exec "bookinfo/${WP% *}" -- curl -s http://127.0.0.1:15020/metrics >"$WORK/waypoint.prom"
  python3 - "$WORK/waypoint.prom" >"$WORK/requests.txt" <<'EOF2'
import re, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r'istio_requests_total\{(.*)\} (\S+)$', line.strip())
    if m:
        l = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        key = (l.get("source_principal"), l.get("destination_service"), l.get("destination_workload"),
               l.get("response_code"), l.get("connection_security_policy"))
        rows[key] = rows.get(key, 0) + float(m.group(2))
print("  waypoint pod: source_principal -> destination_service (workload) code policy: requests")
for (src, svc, wl, code, pol), n in sorted(rows.items(), key=lambda kv: str(kv[0])):
    print(f"  {src} -> {svc} ({wl}) {code} {pol}: {n:.0f}")
EOF2
  cat "$WORK/requests.txt"
  check "waypoint reports istio_requests_total 200 from the client's identity over mutual_tls" grep -q \
    'spiffe://cluster.local/ns/bookinfo/sa/sleep -> reviews.bookinfo.svc.cluster.local .* 200 mutual_tls' \
    "$WORK/requests.txt"
else
  echo "  no waypoint pod in bookinfo"
  check "a waypoint runs for the bookinfo Gateway" false
fi

echo
echo "== summary"
echo "  L4 only, no waypoint:          $R0"
echo "  default route (all v1):        $R1"
echo "  header route (jason -> v2):    $R2   (others: $R3)"
echo "  split (route-split.yaml):      $R4"
echo "  fabric capture: $HBONE of $TOTAL segments on 15008; marker $MARKER seen in clear: $(grep -aq "$MARKER" "$WORK/fabric.pcap" && echo yes || echo no)"
echo "  checks passed: ${#PASSED[@]}, failed: ${#FAILED[@]}"
for f in "${FAILED[@]}"; do echo "    FAILED: $f"; done
[ "${#FAILED[@]}" -eq 0 ]

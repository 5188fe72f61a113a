#!/usr/bin/env bash
# Scale-out across agents (issue 13), as root: do N agents, each capped by
# workerMaxThroughput, give N times one agent's throughput?
#
#   sudo bench/scale_out.sh                 # N = 1, 2, 4; cap 6144 KB/s per agent; 3 runs each
#   sudo bench/scale_out.sh --agents 1,2 --cap-kbps 4096 --mib-per-agent 64 --repeat 1
#
# Every host is a network namespace this script creates and removes:
# ossb-hub holds a bridge (10.231.0.1/24), SeaweedFS and ossimportd (no
# worker on the master); each agent runs in its own ossb-aK (10.231.0.1K),
# linked to the bridge by a veth pair. No address outside these namespaces
# is used. The job copies local files (the same disk for every agent: a
# shared NAS mount, as in the original's cluster mode) into a bucket on the
# hub; each agent's executor caps itself at the cap (one token bucket per
# job per agent). A run with N agents copies N x --mib-per-agent MiB in 2 MiB
# files (hard links of one generated set), so each run lasts about the same
# time.
#
# It reports, per N, the median aggregate MiB/s (bytes / wall from submit
# to the job's success, listing included) and its ratio to N x the one-agent
# median; the target is >= 0.9. Results go to bench/results/scale-out-<UTC>.json.
set -euo pipefail
shopt -s inherit_errexit
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
AGENTS_LIST="1,2,4" CAP=6144 MIB=96 REPEAT=3 BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --agents) AGENTS_LIST="$2"; shift 2 ;;
    --cap-kbps) CAP="$2"; shift 2 ;;
    --mib-per-agent) MIB="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "scale_out.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" != 0 ]; then
  echo "scale_out.sh: needs root (it creates network namespaces); skipped" >&2
  exit 2
fi
MAXN=0
for n in ${AGENTS_LIST//,/ }; do [ "$n" -gt "$MAXN" ] && MAXN="$n"; done
[ "$MAXN" -le 8 ] || { echo "scale_out.sh: at most 8 agents" >&2; exit 2; }
"$ROOT/scripts/setup-test-deps.sh" >/dev/null
if [ "$BUILD" = 1 ]; then
  (cd "$ROOT" && cargo build --release -p ctl -p daemon -p agent --bins)
fi
BIN="${OSSIMPORT_BIN_DIR:-$ROOT/target/release}"
PY="$ROOT/.venv/bin/python"
W="$ROOT/bench/work/scale-out"
HUB=10.231.0.1
mkdir -p "$W" "$ROOT/bench/results"
OUT="$ROOT/bench/results/scale-out-$(date -u +%Y-%m-%dT%H%M%SZ).json"

pids=()
teardown() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  ip netns exec ossb-hub env S3_SERVER_IP=$HUB "$ROOT/scripts/s3-server.sh" stop "$W/s3" >/dev/null 2>&1 || true
  for ns in $(ip netns list | awk '/^ossb-/ {print $1}'); do ip netns del "$ns" 2>/dev/null || true; done
}
trap teardown EXIT
teardown
rm -rf "$W/s3"

# The hosts.
ip netns add ossb-hub
ip -n ossb-hub link set lo up
ip -n ossb-hub link add br0 type bridge
ip -n ossb-hub addr add $HUB/24 dev br0
ip -n ossb-hub link set br0 up
for k in $(seq 1 "$MAXN"); do
  ip netns add "ossb-a$k"
  ip -n "ossb-a$k" link set lo up
  ip link add "ossb-h$k" netns ossb-hub type veth peer name eth0 netns "ossb-a$k"
  ip -n ossb-hub link set "ossb-h$k" master br0 up
  ip -n "ossb-a$k" addr add "10.231.0.1$k/24" dev eth0
  ip -n "ossb-a$k" link set eth0 up
done

# The data: 2 MiB files of random bytes, enough for the largest N.
FILES=$((MIB / 2))
if [ "$(cat "$W/src.complete" 2>/dev/null)" != "$MAXN x $FILES" ]; then
  rm -rf "$W/src" && mkdir -p "$W/src"
  "$PY" - "$W/src" "$MAXN" "$FILES" <<'PY'
import os, sys
root, n, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for k in range(1, n + 1):
    for i in range(files):
        d = os.path.join(root, f"a{k}", f"d{i // 16:02d}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:04d}.bin"), "wb") as f:
            f.write(os.urandom(2 << 20))
PY
  echo "$MAXN x $FILES" >"$W/src.complete"
fi

EP="$(ip netns exec ossb-hub env S3_SERVER_IP=$HUB "$ROOT/scripts/s3-server.sh" start "$W/s3" | sed -n 's/^S3_ENDPOINT=//p')"
[ -n "$EP" ] || { echo "scale_out.sh: SeaweedFS did not start (see $W/s3/weed.log)" >&2; exit 1; }

one_run() { # N RUN_INDEX -> prints seconds
  local n="$1" r="$2" run="$W/run-$1-$2"
  # This runs in a subshell: its own processes are its to stop.
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
  rm -rf "$run" && mkdir -p "$run/job"
  ip netns exec ossb-hub "$PY" -c "
import boto3; boto3.client('s3', endpoint_url='$EP', aws_access_key_id='testkey',
    aws_secret_access_key='testsecret', region_name='us-east-1').create_bucket(Bucket='so-$n-$r')"
  # The job: the first N agents' shares of the data.
  local prefix="$run/src"
  mkdir -p "$prefix"
  for k in $(seq 1 "$n"); do cp -al "$W/src/a$k" "$prefix/a$k"; done
  cat >"$run/job/job.cfg" <<EOF
jobName=scale_out
srcType=local
srcPrefix=$prefix/
destDomain=$EP
destBucket=so-$n-$r
destAccessKey=testkey
destSecretKey=testsecret
taskObjectCountLimit=8
EOF
  printf 'workerMaxThroughput(KB/s)=%s\nworkerTaskThreadNum=4\n' "$CAP" >"$run/job/sys.properties"
  "$BIN/ossimportd" --init --work-dir "$run/d" >/dev/null
  : >"$run/d/agent_keys"
  printf 'testkey=testsecret\n' >"$run/secrets" && chmod 600 "$run/secrets"
  for k in $(seq 1 "$n"); do
    "$BIN/ossimport-agent" --init --key "$run/a$k.key" | awk -v a="a$k" '{print $1, $2, a}' >>"$run/d/agent_keys"
  done
  OSSIMPORT_LOG=warn ip netns exec ossb-hub "$BIN/ossimportd" --work-dir "$run/d" --socket "$run/d.sock" \
    --listen "$HUB:7600" --local-worker off 2>"$run/daemon.log" &
  pids+=($!)
  for k in $(seq 1 "$n"); do
    OSSIMPORT_LOG=warn ip netns exec "ossb-a$k" "$BIN/ossimport-agent" --key "$run/a$k.key" \
      --daemon "$HUB:7600" --daemon-key "$run/d/daemon_ed25519.pub" --listen "10.231.0.1$k:7601" \
      --name "a$k" --tasks 2 --secrets "$run/secrets" --heartbeat-ms 1000 \
      --allow-root "$run/src" 2>"$run/a$k.log" &
    pids+=($!)
  done
  for _ in $(seq 1 100); do [ -S "$run/d.sock" ] && break; sleep 0.05; done
  # Every agent joined before the clock starts.
  for _ in $(seq 1 100); do
    up="$("$BIN/ossimportctl" workers --json --socket "$run/d.sock" 2>/dev/null |
      "$PY" -c 'import json,sys; print(sum(w["state"] == "up" for w in json.load(sys.stdin)["workers"]))' 2>/dev/null || echo 0)"
    [ "$up" -ge "$n" ] && break
    sleep 0.1
  done
  local t0 t1
  t0="$(date +%s.%N)"
  "$BIN/ossimportctl" submit "$run/job/job.cfg" --socket "$run/d.sock" >/dev/null
  "$PY" - "$run/d.sock" <<'PY'
import http.client, json, socket, sys, time
sock = sys.argv[1]
class Conn(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(sock)
while True:
    c = Conn("localhost")
    c.request("GET", "/v1/jobs/scale_out")
    st = json.loads(c.getresponse().read())
    c.close()
    if st.get("state") == "succeed":
        sys.exit(0)
    if st.get("state") == "failed":
        sys.exit(f"job failed: {st}")
    time.sleep(0.1)
PY
  t1="$(date +%s.%N)"
  # Who copied what (the cap is per agent: each should have a share).
  "$BIN/ossimportctl" workers --socket "$run/d.sock" >"$run/workers.txt" 2>&1 || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  "$PY" -c "print(round($t1 - $t0, 3))"
}

declare -A secs
for n in ${AGENTS_LIST//,/ }; do
  for r in $(seq 1 "$REPEAT"); do
    s="$(one_run "$n" "$r")"
    echo "N=$n run $r: $s s for $((n * FILES * 2)) MiB"
    secs[$n]="${secs[$n]:-} $s"
  done
done

args=()
for n in ${AGENTS_LIST//,/ }; do args+=("$n:${secs[$n]}"); done
"$PY" - "$OUT" "$CAP" "$((FILES * 2))" "${args[@]}" <<'PY'
import json, os, platform, statistics, sys
out, cap, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
runs = {}
for a in sys.argv[4:]:
    n, s = a.split(":")
    runs[int(n)] = [float(x) for x in s.split()]
rate = {n: statistics.median([n * mib / s for s in v]) for n, v in runs.items()}
one = rate.get(1)
rows = []
print(f"\ncap {cap} KB/s per agent ({cap / 1024:.1f} MiB/s), {mib} MiB per agent\n")
print("| agents | MiB/s median (min-max) | of the cap x N | / (N x one agent) |")
print("|---|---|---|---|")
for n in sorted(runs):
    v = [n * mib / s for s in runs[n]]
    ratio = rate[n] / (n * one) if one else None
    rows.append({"agents": n, "seconds": runs[n], "mib_per_s": rate[n], "ratio_to_n_x_one": ratio})
    print(f"| {n} | {rate[n]:.2f} ({min(v):.2f}-{max(v):.2f}) | {rate[n] / (n * cap / 1024):.2f} | "
          + (f"{ratio:.2f}" if ratio else "-") + " |")
json.dump({"machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "loadavg": os.getloadavg()},
           "cap_kbps": cap, "mib_per_agent": mib, "runs": rows}, open(out, "w"), indent=1)
print(f"\nwritten: {out}")
PY

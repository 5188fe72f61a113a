#!/usr/bin/env bash
# The daemon's capacity and its store at scale (issue 13): one ossimportd,
# no worker on the master, a job of N objects planned by the daemon from an
# HTTP URL list (the real scanner into the real SQLite store), then
# recorded by played agents (daemon/examples/agent_load.rs: real keys, real
# signed task batches and event reports over loopback HTTP; nothing is
# copied, every object is reported verified at once).
#
#   bench/daemon_capacity.sh                       # N = 1,000,000 and 10,000,000
#   bench/daemon_capacity.sh --objects 100000      # quick
#   bench/daemon_capacity.sh --objects 1000000 --agents 20 --tasks 2 --task-objects 1000 --rate 0
#   bench/daemon_capacity.sh --objects 1000000 --source local   # a tree of N empty files instead
#
# For each N it prints and writes to bench/results/capacity-<UTC>.json:
# plan rate, object results recorded per second, dispatch latency (report
# of TaskDone sent -> the next batch at that agent), the daemon's
# RSS (sampled, and its peak), job-store bytes per object, and the wall
# time of `ossimportctl stat JOB` and `stat JOB --json` (median of 11,
# process start included). About 10 min for 1M + 10M on 2 cores and ~3 GB
# of disk under bench/work/capacity (each run's store is removed after it
# unless --keep; the URL lists stay for the next run).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OBJECTS="1000000,10000000" AGENTS=20 TASKS=2 TASK_OBJECTS=1000 RATE=0 BUILD=1 KEEP=0 SOURCE=http
while [ $# -gt 0 ]; do
  case "$1" in
    --objects) OBJECTS="$2"; shift 2 ;;
    --agents) AGENTS="$2"; shift 2 ;;
    --tasks) TASKS="$2"; shift 2 ;;
    --task-objects) TASK_OBJECTS="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --source) SOURCE="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "daemon_capacity.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
BIN="${OSSIMPORT_BIN_DIR:-$ROOT/target/release}"
if [ "$BUILD" = 1 ]; then
  (cd "$ROOT" && cargo build --release -p ctl -p daemon --bins --example agent_load)
fi
BASE="$ROOT/bench/work/capacity"
mkdir -p "$BASE" "$ROOT/bench/results"
OUT="$ROOT/bench/results/capacity-$(date -u +%Y-%m-%dT%H%M%SZ).json"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }

results=()
for N in ${OBJECTS//,/ }; do
  WORK="$BASE/run-$N"
  rm -rf "$WORK" "$WORK.dest" && mkdir -p "$WORK" "$WORK.dest"
  "$BIN/ossimportd" --init --work-dir "$WORK" >/dev/null
  : >"$WORK/agent_keys"
  if [ "$SOURCE" = local ]; then
    # The same names as the URL list's, as empty files: each row then
    # keeps a local file's identity tag instead of a URL prefix.
    TREE="$BASE/tree-$N"
    if [ ! -e "$TREE/.done" ]; then
      echo "== writing a tree of $N empty files"
      rm -rf "$TREE"
      python3 - "$TREE" "$N" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%05d" % (i // 1000))
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    os.close(os.open(os.path.join(d, "%08d.dat" % i), os.O_CREAT | os.O_WRONLY, 0o644))
open(os.path.join(root, ".done"), "w").close()
PY
    fi
    SRC_LINES="srcType=local
srcPrefix=$TREE/"
  else
    LIST="$BASE/list-$N.txt"
    if [ ! -s "$LIST" ]; then
      echo "== writing a URL list of $N lines"
      awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++) printf "http://127.0.0.1:9/ d%05d/%08d.dat\n", int(i / 1000), i }' >"$LIST.tmp"
      mv "$LIST.tmp" "$LIST"
    fi
    SRC_LINES="srcType=http
httpListFilePath=$LIST
httpPrefixColumn=1
relativePathColumn=2"
  fi
  cat >"$WORK/job.cfg" <<EOF
jobName=capacity
$SRC_LINES
destType=local
destDir=$WORK.dest/
taskObjectCountLimit=$TASK_OBJECTS
EOF
  DPORT="$(port)"
  OSSIMPORT_LOG=warn "$BIN/ossimportd" --work-dir "$WORK" --socket "$WORK/d.sock" \
    --listen "127.0.0.1:$DPORT" --local-worker off 2>"$WORK/daemon.log" &
  DPID=$!
  trap 'kill $DPID 2>/dev/null || true' EXIT
  for _ in $(seq 1 200); do [ -S "$WORK/d.sock" ] && break; sleep 0.05; done
  echo "== N=$N: planning"
  t0="$(now)"
  "$BIN/ossimportctl" submit "$WORK/job.cfg" --socket "$WORK/d.sock" >/dev/null
  until "$BIN/ossimportctl" stat capacity --json --socket "$WORK/d.sock" |
    python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["scan_done"] else 1)'; do
    sleep 1
  done
  t1="$(now)"
  echo "== N=$N: recording through $AGENTS played agents"
  "$BIN/examples/agent_load" --daemon "127.0.0.1:$DPORT" --daemon-key "$WORK/daemon_ed25519.pub" \
    --agent-keys "$WORK/agent_keys" --agents "$AGENTS" --tasks "$TASKS" --rate "$RATE" \
    --expect "$N" --daemon-pid "$DPID" >"$WORK/load.json"
  for _ in $(seq 1 300); do
    state="$("$BIN/ossimportctl" stat capacity --json --socket "$WORK/d.sock" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')"
    [ "$state" = succeed ] && break
    sleep 0.2
  done
  [ "$state" = succeed ] || { echo "job ended $state" >&2; exit 1; }
  # stat's wall time, process start included; the first call warms the
  # page cache as an operator's first look would not, so it is left out.
  python3 - "$BIN/ossimportctl" "$WORK/d.sock" >"$WORK/stat.json" <<'PY'
import json, statistics, subprocess, sys, time
ctl, sock = sys.argv[1], sys.argv[2]
out = {}
for label, extra in (("stat_ms", []), ("stat_json_ms", ["--json"])):
    subprocess.run([ctl, "stat", "capacity", "--socket", sock, *extra], check=True, capture_output=True)
    times = []
    for _ in range(11):
        t = time.perf_counter()
        subprocess.run([ctl, "stat", "capacity", "--socket", sock, *extra], check=True, capture_output=True)
        times.append((time.perf_counter() - t) * 1000)
    out[label] = {"median": round(statistics.median(times), 1), "max": round(max(times), 1)}
json.dump(out, sys.stdout)
PY
  "$BIN/ossimportctl" stat capacity --socket "$WORK/d.sock" >"$WORK/stat.txt"
  HWM="$(awk '/^VmHWM:/ {print $2}' "/proc/$DPID/status")"
  kill "$DPID"; wait "$DPID" 2>/dev/null || true
  trap - EXIT
  # The store after the daemon checkpointed its WAL at exit.
  STORE_BYTES="$(du -cb "$WORK"/*.db* 2>/dev/null | awk 'END {print $1}')"
  r="$(python3 - "$N" "$t0" "$t1" "$WORK/load.json" "$WORK/stat.json" "$HWM" "$STORE_BYTES" "$WORK/ossimport.db" "$SOURCE" <<'PY'
import json, sqlite3, sys
n, t0, t1, load, stat, hwm, store, db = sys.argv[1:9]
n = int(n)
load, stat = json.load(open(load)), json.load(open(stat))
# Where the bytes are: each table and index, and the URL (src_ref) that an
# HTTP job keeps per object (a local source keeps none).
c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
try:
    split = {name: round(b / n, 1) for name, b in c.execute(
        "SELECT name, sum(pgsize) FROM dbstat GROUP BY name HAVING sum(pgsize) > 65536 ORDER BY 2 DESC")}
except sqlite3.OperationalError:
    split = {}
src_ref = c.execute("SELECT avg(length(src_ref)) FROM objects").fetchone()[0] or 0
print(json.dumps({
    "objects": n,
    "source": sys.argv[9],
    "plan_seconds": round(float(t1) - float(t0), 1),
    "plan_objects_per_s": round(n / (float(t1) - float(t0))),
    "record": load,
    "daemon_peak_rss_kib": int(hwm),
    "store_bytes": int(store),
    "store_bytes_per_object": round(int(store) / n, 1),
    "store_bytes_per_object_by_table": split,
    "src_ref_bytes_per_object": round(src_ref, 1),
    **stat,
}))
PY
)"
  echo "$r"
  results+=("$r")
  [ "$KEEP" = 1 ] || rm -rf "$WORK" "$WORK.dest"
done
python3 - "$OUT" "${results[@]}" <<'PY'
import json, os, platform, sys
out, runs = sys.argv[1], [json.loads(r) for r in sys.argv[2:]]
doc = {"machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                   "loadavg": os.getloadavg()}, "runs": runs}
json.dump(doc, open(out, "w"), indent=1)
print()
print("| objects | plan obj/s | results/s | dispatch p50 / p99 ms | daemon RSS q1/q2/q3/end MiB | peak RSS MiB | store B/object (URL) | stat ms | stat --json ms |")
print("|---|---|---|---|---|---|---|---|---|")
for r in runs:
    rec, rss = r["record"], r["record"]["daemon_rss_kib"]
    q = "/".join(f"{rss[k] / 1024:.0f}" for k in ("q1", "q2", "q3", "end"))
    print(f"| {r['objects']:,} | {r['plan_objects_per_s']:,} | {rec['results_per_s']:,.0f} | "
          f"{rec['dispatch_ms']['p50']:.1f} / {rec['dispatch_ms']['p99']:.1f} | {q} | "
          f"{r['daemon_peak_rss_kib'] / 1024:.0f} | {r['store_bytes_per_object']} ({r['src_ref_bytes_per_object']}) | "
          f"{r['stat_ms']['median']} | {r['stat_json_ms']['median']} |")
print(f"\nwritten: {out}")
PY

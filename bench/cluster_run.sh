#!/usr/bin/env bash
# One bench run through the distributed path: ossimportd (no worker on the
# master) and N agents on loopback, the job submitted and waited for with
# ossimportctl; everything is a child of this script, so the harness's
# wait4 and process-tree samples count the daemon and the agents.
#
#   bench/cluster_run.sh BIN_DIR RUN_DIR AGENTS JOB_CFG
#
# JOB_CFG's sys.properties (next to it) is sent with the job. Exits 0 when
# the job succeeded.
set -euo pipefail
BIN="$1" RUN="$2" N="$3" CFG="$4"
WORK="$RUN/cluster"
rm -rf "$WORK" && mkdir -p "$WORK"
# Harness overhead is not the hop's: python without site (12 ms, not 100)
# picks the daemon's port; each agent binds port 0 and advertises the port
# it got.
PY=(/usr/bin/python3 -S)
port() { "${PY[@]}" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$BIN/ossimportd" --init --work-dir "$WORK" >/dev/null
: >"$WORK/agent_keys"
printf 'testkey=testsecret\n' >"$WORK/secrets" && chmod 600 "$WORK/secrets"
for i in $(seq 1 "$N"); do
  "$BIN/ossimport-agent" --init --key "$WORK/a$i.key" | awk -v n="a$i" '{print $1, $2, n}' >>"$WORK/agent_keys"
done
# The agents may use the job's local source directory, if it has one.
ALLOW=()
SRC="$(sed -n 's|^srcPrefix=\(/.*\)|\1|p' "$CFG" | head -n 1)"
# (Builds from before --allow-root take any local path.)
if [ -n "$SRC" ] && "$BIN/ossimport-agent" --help | grep -q -- --allow-root; then
  ALLOW=(--allow-root "$SRC")
fi
DPORT="$(port)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
OSSIMPORT_LOG=warn "$BIN/ossimportd" --work-dir "$WORK" --socket "$WORK/d.sock" \
  --listen "127.0.0.1:$DPORT" --local-worker off 2>"$WORK/daemon.log" &
pids+=($!)
for i in $(seq 1 "$N"); do
  OSSIMPORT_LOG=warn "$BIN/ossimport-agent" --key "$WORK/a$i.key" --daemon "127.0.0.1:$DPORT" \
    --daemon-key "$WORK/daemon_ed25519.pub" --listen 127.0.0.1:0 --name "a$i" \
    --tasks 2 --secrets "$WORK/secrets" --heartbeat-ms 1000 "${ALLOW[@]}" 2>"$WORK/a$i.log" &
  pids+=($!)
done
for _ in $(seq 1 100); do [ -S "$WORK/d.sock" ] && break; sleep 0.05; done
# `submit --wait` returns when the job ends, woken by the daemon (no
# polling); builds from before it are waited for by one poller over the
# control socket (GET /v1/jobs/NAME every 0.05 s: a process per poll would
# cost more CPU than it measures).
if "$BIN/ossimportctl" submit --help | grep -q -- --wait; then
  "$BIN/ossimportctl" submit --wait "$CFG" --socket "$WORK/d.sock" >/dev/null
  exit $?
fi
"$BIN/ossimportctl" submit "$CFG" --socket "$WORK/d.sock" >/dev/null
"${PY[@]}" - "$WORK/d.sock" "$(sed -n 's/^jobName=//p' "$CFG")" <<'PY'
import http.client, json, socket, sys, time
sock, job = sys.argv[1], sys.argv[2]
class Conn(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(sock)
while True:
    c = Conn("localhost")
    c.request("GET", f"/v1/jobs/{job}")
    state = json.loads(c.getresponse().read()).get("state")
    c.close()
    if state == "succeed":
        sys.exit(0)
    if state == "failed":
        sys.exit("job failed")
    time.sleep(0.05)
PY

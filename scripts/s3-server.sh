#!/usr/bin/env bash
# Throw-away S3 server (SeaweedFS `weed mini`) for tests, on 127.0.0.1 only
# (S3_SERVER_IP=ADDR binds another address: bench/scale_out.sh's namespace).
#
#   scripts/s3-server.sh start DATA_DIR   -> prints exactly one line: S3_ENDPOINT=http://127.0.0.1:PORT
#   scripts/s3-server.sh stop  DATA_DIR   -> stops it (no-op when not running)
#
# Credentials: access key "testkey", secret "testsecret" (admin identity).
# Every port is picked free at start, so several instances can run in parallel.
# Files in DATA_DIR: weed.log, weed.pid, s3.env (endpoint, keys, ports), s3.json, data/.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IP="${S3_SERVER_IP:-127.0.0.1}"
ACCESS_KEY=testkey
SECRET_KEY=testsecret
READY_TIMEOUT="${S3_SERVER_READY_TIMEOUT:-30}"
# Port reservations shared by all instances on this machine (see pick_ports).
PORT_REG="${TMPDIR:-/tmp}/ossimport-s3-ports"

die() { echo "s3-server: $*" >&2; exit 1; }

usage() { die "usage: $0 start|stop DATA_DIR"; }

find_weed() {
  if [ -x "$REPO_ROOT/.venv/bin/weed" ]; then
    echo "$REPO_ROOT/.venv/bin/weed"
  elif command -v weed >/dev/null; then
    command -v weed
  else
    die "weed not found: run scripts/setup-test-deps.sh"
  fi
}

find_python() {
  if [ -x "$REPO_ROOT/.venv/bin/python" ]; then
    echo "$REPO_ROOT/.venv/bin/python"
  else
    command -v python3 || die "python3 not found"
  fi
}

# alive PID: the process exists and is not a zombie (the machine's init may be
# slow to reap orphans, and kill -0 succeeds on zombies).
alive() {
  local st
  st="$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)" || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# Prints the pid in DATA_DIR/weed.pid if that process is alive and is our weed.
running_pid() {
  local pidfile="$DATA_DIR/weed.pid" pid
  [ -f "$pidfile" ] || return 1
  pid="$(cat "$pidfile" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  # Guard against a recycled pid: the process must be weed serving this DATA_DIR.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-dir=$DATA_DIR/data" || return 1
  echo "$pid"
}

# Picks 5 "pairs" (HTTP port P with P+10000 free too, used as its gRPC port:
# SeaweedFS derives some gRPC addresses as port+10000 even when the gRPC flag
# is given, e.g. the admin worker) and one single port (metrics).
# Ports are taken from 12000-31999, below the kernel's ephemeral range, and are
# recorded in $PORT_REG under a lock for 120 s, so that parallel starts never
# pick the same ones before weed has bound them.
pick_ports() {
  mkdir -p "$PORT_REG"
  "$PY" - "$PORT_REG" "$DATA_DIR" "$IP" <<'EOF'
import errno, fcntl, os, random, socket, sys, time
reg, owner, ip = sys.argv[1], sys.argv[2], sys.argv[3]
TTL = 120
def free(p):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((ip, p))
        return True
    except OSError:
        return False
    finally:
        s.close()
with open(os.path.join(reg, ".lock"), "w") as lk:
    fcntl.flock(lk, fcntl.LOCK_EX)
    now = time.time()
    reserved = set()
    for name in os.listdir(reg):
        if not name.isdigit():
            continue
        path = os.path.join(reg, name)
        try:
            if now - os.path.getmtime(path) > TTL:
                os.unlink(path)
            else:
                reserved.add(int(name))
        except FileNotFoundError:
            pass
    rnd = random.SystemRandom()
    chosen = []
    def ok(p):
        return p not in reserved and p not in chosen and free(p)
    names = ["MASTER", "VOLUME", "FILER", "S3", "ADMIN"]
    out = {}
    for n in names:
        for _ in range(2000):
            p = rnd.randrange(12000, 22000)
            if ok(p) and ok(p + 10000):
                chosen += [p, p + 10000]
                out[n] = p
                break
        else:
            sys.exit("no free port pair found")
    for _ in range(2000):
        p = rnd.randrange(12000, 32000)
        if ok(p):
            chosen.append(p)
            out["METRICS"] = p
            break
    else:
        sys.exit("no free port found")
    for p in chosen:
        with open(os.path.join(reg, str(p)), "w") as f:
            f.write(owner + "\n")
    for n, p in out.items():
        print(f"PORT_{n}={p}")
EOF
}

write_s3_json() {
  cat >"$DATA_DIR/s3.json" <<EOF
{
  "identities": [
    {
      "name": "test",
      "credentials": [{"accessKey": "$ACCESS_KEY", "secretKey": "$SECRET_KEY"}],
      "actions": ["Admin", "Read", "Write", "List", "Tagging"]
    }
  ]
}
EOF
}

# 0 when the S3 endpoint answers a signed ListBuckets with 200.
s3_ready() {
  local url="http://$IP:$PORT_S3/"
  if command -v curl >/dev/null; then
    [ "$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --max-time 2 \
        --aws-sigv4 'aws:amz:us-east-1:s3' --user "$ACCESS_KEY:$SECRET_KEY" "$url")" = 200 ]
  else
    # Without curl: any HTTP answer counts.
    "$PY" - "$url" <<'EOF'
import sys, urllib.request, urllib.error
o = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    o.open(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
EOF
  fi
}

kill_group() {
  local pid="$1"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      alive "$pid" || break
      sleep 0.1
    done
  fi
}

# weed leaves unix sockets /tmp/seaweedfs-<svc>[-grpc]-<port>.sock behind.
remove_sockets() {
  local p
  for p in "$@"; do
    [ -n "$p" ] || continue
    rm -f /tmp/seaweedfs-*-"$p".sock
  done
}

cmd_start() {
  local pid attempt
  if pid="$(running_pid)"; then
    # Already running: report the same endpoint again.
    # shellcheck disable=SC1091
    . "$DATA_DIR/s3.env"
    echo "S3_ENDPOINT=$S3_ENDPOINT"
    return 0
  fi
  WEED="$(find_weed)"
  PY="$(find_python)"
  mkdir -p "$DATA_DIR/data"
  write_s3_json

  for attempt in 1 2 3; do
    local ports
    ports="$(pick_ports)" || die "could not pick free ports"
    eval "$ports"
    # -logtostderr: glog would otherwise leave weed.*.log.* files in /tmp.
    local args=(
      -logtostderr
      mini
      "-dir=$DATA_DIR/data"
      "-ip=$IP" "-ip.bind=$IP"
      "-s3.config=$DATA_DIR/s3.json"
      -master.telemetry=false -admin.ui=false -webdav=false
      -s3.port.iceberg=0 -s3.port.lance=0
      "-master.port=$PORT_MASTER" "-master.port.grpc=$((PORT_MASTER + 10000))"
      "-volume.port=$PORT_VOLUME" "-volume.port.grpc=$((PORT_VOLUME + 10000))"
      "-filer.port=$PORT_FILER" "-filer.port.grpc=$((PORT_FILER + 10000))"
      "-s3.port=$PORT_S3" "-s3.port.grpc=$((PORT_S3 + 10000))"
      "-admin.port=$PORT_ADMIN" "-admin.port.grpc=$((PORT_ADMIN + 10000))"
      "-metricsPort=$PORT_METRICS"
    )
    {
      echo "=== $(date -u +%FT%TZ) s3-server.sh start (attempt $attempt)"
      echo "$WEED ${args[*]}"
    } >>"$DATA_DIR/weed.log"
    # setsid: weed leads its own process group, so stop can kill the whole group.
    # Its stdio must not be the caller's (a caller reading our stdout would hang).
    setsid "$WEED" "${args[@]}" >>"$DATA_DIR/weed.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$DATA_DIR/weed.pid"
    cat >"$DATA_DIR/s3.env" <<EOF
S3_ENDPOINT=http://$IP:$PORT_S3
AWS_ACCESS_KEY_ID=$ACCESS_KEY
AWS_SECRET_ACCESS_KEY=$SECRET_KEY
AWS_REGION=us-east-1
PORT_MASTER=$PORT_MASTER
PORT_VOLUME=$PORT_VOLUME
PORT_FILER=$PORT_FILER
PORT_S3=$PORT_S3
PORT_ADMIN=$PORT_ADMIN
PORT_METRICS=$PORT_METRICS
EOF

    local deadline=$((SECONDS + READY_TIMEOUT)) died=0
    while :; do
      if ! alive "$pid"; then
        died=1
        break
      fi
      if s3_ready; then
        echo "S3_ENDPOINT=http://$IP:$PORT_S3"
        return 0
      fi
      if [ "$SECONDS" -ge "$deadline" ]; then
        break
      fi
      sleep 0.1
    done

    if [ "$died" -eq 1 ] && tail -n 20 "$DATA_DIR/weed.log" | grep -q 'Port allocation failed'; then
      # Someone else took one of the ports between our check and weed's: retry.
      echo "s3-server: port taken, retrying with new ports" >&2
      continue
    fi
    break
  done

  if [ "$died" -eq 1 ]; then
    echo "s3-server: weed exited before S3 became ready; tail of $DATA_DIR/weed.log:" >&2
  else
    echo "s3-server: S3 not ready after ${READY_TIMEOUT}s; tail of $DATA_DIR/weed.log:" >&2
  fi
  tail -n 30 "$DATA_DIR/weed.log" >&2 || true
  kill_group "$pid"
  cmd_stop >/dev/null 2>&1 || true
  exit 1
}

cmd_stop() {
  local pid
  if pid="$(running_pid)"; then
    kill_group "$pid"
  fi
  if [ -f "$DATA_DIR/s3.env" ]; then
    local PORT_MASTER="" PORT_VOLUME="" PORT_FILER="" PORT_S3="" PORT_ADMIN="" PORT_METRICS=""
    # shellcheck disable=SC1091
    . "$DATA_DIR/s3.env"
    local p ports=()
    for p in "$PORT_MASTER" "$PORT_VOLUME" "$PORT_FILER" "$PORT_S3" "$PORT_ADMIN"; do
      [ -n "$p" ] && ports+=("$p" "$((p + 10000))")
    done
    remove_sockets "${ports[@]}"
    # Drop our port reservations (they would expire after 120 s anyway).
    [ -n "${PORT_METRICS:-}" ] && ports+=("$PORT_METRICS")
    for p in "${ports[@]}"; do
      if [ "$(cat "$PORT_REG/$p" 2>/dev/null)" = "$DATA_DIR" ]; then
        rm -f "$PORT_REG/$p"
      fi
    done
  fi
  rm -f "$DATA_DIR/weed.pid"
}

[ $# -eq 2 ] || usage
[ -n "$2" ] || usage
if [ "$1" = stop ] && [ ! -d "$2" ]; then
  exit 0 # nothing was ever started there
fi
mkdir -p "$2"
DATA_DIR="$(cd "$2" && pwd -P)"

case "$1" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  *) usage ;;
esac

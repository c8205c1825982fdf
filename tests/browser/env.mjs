// What both browser test files need to find: the dashboard binary, Chromium, and where
// screenshots go. CI builds into CARGO_TARGET_DIR (see .ci/run), so that wins over the
// in-tree target/; DLQ_DASHBOARD_BIN and CHROMIUM_PATH win over both.

import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, "..", "..");
export const BIN = path.resolve(
  process.env.DLQ_DASHBOARD_BIN ||
    path.join(process.env.CARGO_TARGET_DIR ? path.resolve(REPO, process.env.CARGO_TARGET_DIR) : path.join(REPO, "target"), "debug", "dlq-dashboard"),
);
export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
export const SHOTS = path.join(REPO, "test-output", "browser");

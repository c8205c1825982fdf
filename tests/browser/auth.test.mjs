// Signing in, acting as an operator, signing out, and what a viewer sees, in headless
// Chromium against the real binary with a users file made by `dlq-dashboard user add`
// (the password piped on stdin, as a script would).
//
//   node --test tests/browser/auth.test.mjs     (or tests/browser/run.sh, which installs)
//
// Same environment as pages.test.mjs: DLQ_DASHBOARD_BIN, CHROMIUM_PATH.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { BIN, CHROMIUM, SHOTS } from "./env.mjs";

const OVERALL_TIMEOUT_MS = 150_000;
const PASSWORD = "a browser test password";

let child;
let tmp;
let base;
let browser;
let page;

const watchdog = setTimeout(() => {
  console.error(`# auth browser tests exceeded ${OVERALL_TIMEOUT_MS} ms; exiting`);
  if (child && child.exitCode === null) child.kill("SIGKILL");
  process.exit(1);
}, OVERALL_TIMEOUT_MS);
watchdog.unref();
process.on("exit", () => {
  if (child && child.exitCode === null) child.kill("SIGKILL");
});

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitFor(what, timeoutMs, probe) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`dashboard exited while waiting for ${what}`);
    try {
      const v = await probe();
      if (v) return v;
    } catch {
      // not up yet
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

function addUser(users, name, role) {
  const r = spawnSync(BIN, ["user", "add", name, "--role", role, "--users", users], { input: `${PASSWORD}\n`, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
}

async function signIn(name) {
  await page.goto("/messages?topic=orders.dlq&limit=20");
  assert.equal(new URL(page.url()).pathname, "/login", "a stranger is sent to sign in");
  await page.getByLabel("Name").fill(name);
  await page.getByLabel("Password").fill(PASSWORD);
  await Promise.all([page.waitForURL((u) => new URL(u).pathname === "/messages"), page.getByRole("button", { name: "Sign in" }).click()]);
}

async function signOut() {
  await Promise.all([page.waitForURL((u) => new URL(u).pathname === "/login"), page.getByRole("button", { name: "Sign out" }).click()]);
}

describe("signing in and roles in a headless browser", { timeout: OVERALL_TIMEOUT_MS }, () => {
  before(async () => {
    assert.ok(fs.existsSync(BIN), `dashboard binary not found at ${BIN}`);
    fs.mkdirSync(SHOTS, { recursive: true });
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "dlq-browser-auth-"));
    const users = path.join(tmp, "users.json");
    addUser(users, "olga", "operator");
    addUser(users, "victor", "viewer");
    const portFile = path.join(tmp, "port");
    const log = fs.openSync(path.join(SHOTS, "dashboard-auth.log"), "w");
    child = spawn(BIN, ["--listen", "127.0.0.1:0", "--database", path.join(tmp, "x.db"), "--port-file", portFile, "--users", users], {
      stdio: ["ignore", log, log],
    });
    fs.closeSync(log);
    const port = await waitFor("the port file", 30_000, () => {
      const text = fs.existsSync(portFile) ? fs.readFileSync(portFile, "utf8").trim() : "";
      return /^\d+$/.test(text) ? text : null;
    });
    base = `http://127.0.0.1:${port}`;
    const token = spawnSync(BIN, ["token", "create", "--role", "viewer", "--name", "probe", "--users", users], { encoding: "utf8" });
    assert.equal(token.status, 0, token.stderr);
    const bearer = token.stdout.trim().split("\n").pop().trim();
    await waitFor("demo records in orders.dlq", 60_000, async () => {
      const res = await fetch(`${base}/api/messages?topic=orders.dlq&limit=5`, { headers: { Authorization: `Bearer ${bearer}` } });
      return res.status === 200 && (await res.json()).messages.length >= 5;
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--headless", "--no-sandbox", "--disable-gpu"] });
    const context = await browser.newContext({ baseURL: base, viewport: { width: 1280, height: 900 } });
    context.setDefaultTimeout(10_000);
    page = await context.newPage();
  });

  after(async () => {
    if (browser) await browser.close();
    if (child && child.exitCode === null) child.kill("SIGTERM");
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("an operator signs in, replays a message through its preview, and signs out", async () => {
    await signIn("olga");
    assert.match(await page.locator(".who").innerText(), /olga · operator/);
    await page.locator("table.messages tbody input[type=checkbox]").first().check();
    await Promise.all([page.waitForURL(/\/replays\/r[a-z0-9]+\/preview$/), page.getByRole("button", { name: /^Replay selected/ }).click()]);
    await Promise.all([page.waitForURL(/\/replays\/r[a-z0-9]+$/), page.locator("form.confirm button[type=submit]").click()]);
    await page.screenshot({ path: path.join(SHOTS, "auth-operator-job.png"), fullPage: true });
    await page.goto("/audit");
    assert.match(await page.locator("table.audit tbody").innerText(), /olga \(password\)/, "the audit log names the operator");
    await signOut();
    await page.goto("/messages");
    assert.equal(new URL(page.url()).pathname, "/login", "signed out: back to the sign-in page");
  });

  it("a viewer sees no action buttons", async () => {
    await signIn("victor");
    assert.equal(await page.locator(".bulk").count(), 0, "no bulk bar");
    const href = await page.locator("table.messages tbody td.mono.nowrap a").first().getAttribute("href");
    for (const p of ["/messages?topic=orders.dlq&limit=20", href, "/groups", "/purges", "/replays"]) {
      await page.goto(p);
      const forms = await page.locator("form[method=post]:not(.signout)").count();
      assert.equal(forms, 0, `no action forms on ${p}`);
    }
    await page.screenshot({ path: path.join(SHOTS, "auth-viewer-groups.png"), fullPage: true });
    await signOut();
  });
});

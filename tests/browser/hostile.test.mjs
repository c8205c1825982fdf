// A hostile corpus on every page, in headless Chromium: script tags, attribute breakouts,
// SVG, javascript: URLs, very long lines, control characters and invalid UTF-8 in payloads,
// keys, header names and values, error fields and topic names. Records are produced with
// KafkaJS into `dlq-dashboard dev-cluster` (a mock cluster in its own process), indexed by
// the real binary, and every page that shows them must stay inert: no dialog, no element
// the corpus would create, no blocked inline script (a CSP violation), no page error.
//
//   node --test tests/browser/hostile.test.mjs     (or tests/browser/run.sh, which installs)
//
// Same environment as pages.test.mjs: DLQ_DASHBOARD_BIN, CHROMIUM_PATH; KafkaJS comes from
// tests/kafkajs (run.sh installs it).

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { chromium } from "playwright-core";
import kafkajs from "../kafkajs/node_modules/kafkajs/index.js";
import { BIN, CHROMIUM, SHOTS } from "./env.mjs";

const { Kafka, logLevel } = kafkajs;
const OVERALL_TIMEOUT_MS = 150_000;

// Every marker the corpus would create if it were parsed as markup.
const INJECTED = '[id^="injected"], iframe, object, embed, [onload], [onerror], [onclick], a[href^="javascript:" i], svg script';

const S = {
  script: "<script>alert('script')</script>",
  attr: `"><img src=x onerror=alert('attr') id=injected-img>`,
  single: `'><svg id=injected-svg onload=alert('svg')><b id=injected-b>b</b></svg>`,
  js: "javascript:alert('js')",
  close: `</textarea></pre></code></title></style><iframe id=injected-iframe src="javascript:alert('iframe')"></iframe>`,
  control: "\u0000\u0001\u0007\u0008\u001b[31m\u007f\u202e\u2028\u2029\ufeff<b id=injected-control>",
};
// Long enough to overflow any layout, short enough that a batch stays under the broker's
// 1 MB limit with the key, value and two headers of it.
const LONG = "L".repeat(60_000) + S.script;
// Invalid UTF-8 around markup: a lone continuation byte, a truncated sequence, 0xff.
const INVALID = Buffer.concat([Buffer.from([0xff, 0xfe, 0x80]), Buffer.from(S.attr), Buffer.from([0xc3]), Buffer.from(S.script), Buffer.from([0xe2, 0x82])]);

// Topic names as far as the broker takes them (no spaces); each ends in .dlq to be indexed.
const TOPICS = [
  "plain.dlq",
  "<svg/onload=alert('topic')>.dlq",
  `"><img/src=x/onerror=alert('topic2')/id=injected-topic>.dlq`,
  "javascript:alert('topic3').dlq",
];

function records() {
  const out = [];
  let i = 0;
  for (const [name, text] of Object.entries(S)) {
    out.push({
      key: text,
      value: JSON.stringify({ note: text, [text]: text, nested: { deeper: [text] } }),
      headers: {
        [`x-${name}-${text}`]: text,
        "dlq-origin-topic": text,
        "dlq-error-class": `com.acme.${text}`,
        "dlq-error-message": text,
        "dlq-error-stacktrace": `${text}\n\tat ${text}`,
        "dlq-consumer-group": text,
      },
    });
    i += 1;
  }
  out.push({ key: Buffer.from([0xff, 0x3c, 0x62, 0x3e]), value: INVALID, headers: { [S.attr]: INVALID, "dlq-error-message": INVALID } });
  out.push({ key: LONG, value: LONG, headers: { "dlq-error-message": LONG, [`long-${"h".repeat(5000)}`]: LONG } });
  out.push({ key: S.js, value: S.js, headers: { "dlq-origin-topic": S.js, "dlq-error-class": S.js } });
  return out;
}

let cluster;
let child;
let tmp;
let base;
let browser;
let page;
const dialogs = [];
const pageErrors = [];

const watchdog = setTimeout(() => {
  console.error(`# hostile browser tests exceeded ${OVERALL_TIMEOUT_MS} ms; exiting`);
  for (const c of [child, cluster]) if (c && c.exitCode === null) c.kill("SIGKILL");
  process.exit(1);
}, OVERALL_TIMEOUT_MS);
watchdog.unref();
process.on("exit", () => {
  for (const c of [child, cluster]) if (c && c.exitCode === null) c.kill("SIGKILL");
});

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitFor(what, timeoutMs, probe) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) throw new Error(`dashboard exited while waiting for ${what}`);
    try {
      const v = await probe();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}${last ? ` (${last.message})` : ""}`);
}

/** Open `url` and check that nothing of the corpus came alive. */
async function inert(url, what = url) {
  await page.goto(url);
  await page.waitForLoadState("load");
  await sleep(150);
  const found = await page.evaluate((sel) => [...document.querySelectorAll(sel)].map((e) => e.outerHTML.slice(0, 120)), INJECTED);
  assert.deepEqual(found, [], `${what}: no element made by the corpus`);
  assert.deepEqual(await page.evaluate(() => window.__cspViolations), [], `${what}: no blocked inline script or source`);
  assert.deepEqual(dialogs, [], `${what}: no dialog`);
  assert.deepEqual(pageErrors, [], `${what}: no page error`);
}

describe("a hostile corpus renders inert on every page", { timeout: OVERALL_TIMEOUT_MS }, () => {
  before(async () => {
    assert.ok(fs.existsSync(BIN), `dashboard binary not found at ${BIN}`);
    fs.mkdirSync(SHOTS, { recursive: true });
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "dlq-hostile-"));
    cluster = spawn(BIN, ["dev-cluster", "--brokers-count", "1", ...TOPICS.flatMap((t) => ["--topic", `${t}:1`])], {
      stdio: ["pipe", "pipe", "ignore"],
    });
    const lines = readline.createInterface({ input: cluster.stdout });
    const bootstrap = await new Promise((resolve, reject) => {
      lines.on("line", (l) => l.startsWith("bootstrap: ") && resolve(l.slice(11).trim()));
      cluster.once("exit", (c) => reject(new Error(`dev-cluster exited (${c})`)));
    });

    const kafka = new Kafka({ clientId: "hostile", brokers: bootstrap.split(","), logLevel: logLevel.NOTHING, retry: { retries: 5 } });
    const producer = kafka.producer();
    await producer.connect();
    const corpus = records();
    for (const topic of TOPICS) {
      await producer.send({ topic, acks: -1, messages: topic === "plain.dlq" ? corpus : corpus.slice(0, 2) });
    }
    await producer.disconnect();
    const expected = corpus.length + (TOPICS.length - 1) * 2;

    const portFile = path.join(tmp, "port");
    const log = fs.openSync(path.join(SHOTS, "hostile-dashboard.log"), "w");
    child = spawn(BIN, ["--brokers", bootstrap, "--listen", "127.0.0.1:0", "--database", path.join(tmp, "h.db"), "--port-file", portFile], {
      stdio: ["ignore", log, log],
      env: { ...process.env, NO_COLOR: "1" },
    });
    fs.closeSync(log);
    const port = await waitFor("the port file", 30_000, () => {
      const text = fs.existsSync(portFile) ? fs.readFileSync(portFile, "utf8").trim() : "";
      return /^\d+$/.test(text) ? text : null;
    });
    base = `http://127.0.0.1:${port}`;
    await waitFor(`${expected} records indexed and searchable`, 60_000, async () => {
      const all = await (await fetch(`${base}/api/messages?limit=500`)).json();
      const found = await (await fetch(`${base}/api/messages?q=alert&limit=500`)).json();
      return all.messages.length >= expected && found.messages.length >= 1;
    });

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, timeout: 30_000, args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"] });
    const context = await browser.newContext({ baseURL: base, viewport: { width: 1280, height: 900 } });
    context.setDefaultTimeout(10_000);
    context.setDefaultNavigationTimeout(20_000);
    await context.addInitScript(() => {
      window.__cspViolations = [];
      document.addEventListener("securitypolicyviolation", (e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
    });
    page = await context.newPage();
    page.on("dialog", (d) => {
      dialogs.push(`${d.type()}: ${d.message()} on ${page.url()}`);
      d.dismiss().catch(() => {});
    });
    page.on("pageerror", (e) => pageErrors.push(`${e.message} on ${page.url()}`));
  });

  after(async () => {
    await browser?.close().catch(() => {});
    for (const c of [child, cluster]) {
      if (c && c.exitCode === null) {
        const exited = new Promise((r) => c.once("exit", r));
        c.kill("SIGTERM");
        await Promise.race([exited, sleep(10_000).then(() => c.kill("SIGKILL"))]);
      }
    }
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    clearTimeout(watchdog);
  });

  it("the overview, lists, searches, groups, jobs, purges and audit pages", async () => {
    for (const url of ["/", "/messages", "/messages?limit=200", "/messages?q=alert", "/messages?status=all", "/groups", "/replays", "/purges", "/audit"]) {
      await inert(url);
    }
    // The filter form puts hostile values back as text.
    const q = new URLSearchParams({ q: S.attr, key: S.single, topic: TOPICS[2], error_class: S.close });
    await inert(`/messages?${q}`, "filters with markup");
    await page.screenshot({ path: path.join(SHOTS, "hostile-messages.png"), fullPage: false });
  });

  it("every message page, showing the corpus as text", async () => {
    await page.goto("/messages?limit=200");
    const links = [...new Set(await page.locator('table.messages tbody a[href^="/messages/"]').evaluateAll((as) => as.map((a) => a.getAttribute("href"))))];
    assert.ok(links.length >= records().length, `one link per message (${links.length})`);
    for (const href of links) await inert(href, `message ${href}`);
    // A message of the plain topic shows the script tag as text in its payload and headers.
    const scripted = links.find((h) => h.startsWith("/messages/plain.dlq/0/0"));
    await inert(scripted);
    const text = await page.locator("main").innerText();
    assert.ok(text.includes(S.script), "the payload's script tag is shown as text");
    await page.screenshot({ path: path.join(SHOTS, "hostile-message.png"), fullPage: false });
  });

  it("every topic page and every failure group's messages", async () => {
    await page.goto("/");
    const topicLinks = [...new Set(await page.locator('a[href^="/topics/"]').evaluateAll((as) => as.map((a) => a.getAttribute("href"))))];
    assert.ok(topicLinks.length >= TOPICS.length, `a page per topic (${topicLinks})`);
    for (const href of topicLinks) await inert(href, `topic ${href}`);
    await page.goto("/groups");
    const groupLinks = [...new Set(await page.locator('a[href^="/messages?group="]').evaluateAll((as) => as.map((a) => a.getAttribute("href"))))];
    assert.ok(groupLinks.length >= 1);
    for (const href of groupLinks) await inert(href, `group ${href}`);
  });

  it("the replay and purge previews, a purge and its page, and the audit log after them", async () => {
    await inert("/messages?limit=200");
    await page.locator('table.messages tbody input[type="checkbox"][name="message"]').evaluateAll((boxes) => boxes.forEach((b) => (b.checked = true)));
    await page.getByRole("button", { name: /^Replay selected/ }).click();
    await page.waitForURL(/\/replays\/[^/]+\/preview$/);
    await inert(page.url(), "replay preview");
    await page.screenshot({ path: path.join(SHOTS, "hostile-replay-preview.png"), fullPage: false });

    await page.goto("/messages?topic=plain.dlq&limit=200");
    await page.locator('table.messages tbody input[type="checkbox"][name="message"]').evaluateAll((boxes) => boxes.forEach((b) => (b.checked = true)));
    await page.locator('[data-action="purge-selected"]').click();
    await page.waitForURL(/\/purges\/[^/]+\/preview$/);
    await inert(page.url(), "purge preview");
    await page.locator('textarea[name="reason"], input[name="reason"]').first().fill(S.attr + S.script);
    await page.locator('form button[type="submit"]').filter({ hasText: /^Purge/ }).first().click();
    await page.waitForURL(/\/purges\/[^/]+$/);
    await inert(page.url(), "purge page");
    await inert("/purges", "purges after one");
    await inert("/audit", "audit after a purge");
    await inert("/messages?status=purged", "purged messages");
  });
});

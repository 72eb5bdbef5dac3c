// The admin page in a real browser (Debian's Chromium, headless, driven by
// playwright-core): a published message appears in the live tail masked for a billing
// token and unmasked for a clinician token; redrive moves a dead letter back to its
// stream; a consumer and a stream are deleted from the page; the audit log verifies. Saves a screenshot. Usage:
//   node admin-page.mjs <gateway base URL> <screenshot path>
// with BILLING, CLINICIAN and ADMIN tokens in the environment (scripts/test-gateway.sh).
import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const [base, screenshot] = process.argv.slice(2);
const { BILLING, CLINICIAN, ADMIN } = process.env;
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

async function api(path, token, options = {}) {
  const res = await fetch(base + path, {
    ...options,
    headers: { Authorization: `Bearer ${token}`, ...(options.headers || {}) },
  });
  const body = await res.json();
  assert.ok(res.ok, `${path}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

const browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox"] });
try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  async function login(token) {
    const page = await context.newPage();
    await page.goto(base + "/");
    await page.fill("#token", token);
    await page.click("#login");
    return page;
  }
  async function tail(page, pattern) {
    await page.fill("#pattern", pattern);
    await page.click("#tail-start");
    await page.waitForSelector("#tail[data-ready=true]", { timeout: 10000 });
  }

  const billing = await login(BILLING);
  await tail(billing, "claims.>");
  const clinician = await login(CLINICIAN);
  await tail(clinician, "claims.>");
  // A billing token may not tail a restricted subject: the page shows the forbidden error.
  await tail(billing, "psych.>").catch(() => {});
  await billing.waitForSelector("#tail .error", { timeout: 10000 });
  assert.match(await billing.textContent("#tail"), /forbidden/);
  await tail(billing, "claims.>");

  await api("/v1/publish/claims.new", ADMIN, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ssn: "123-45-6789", diagnosis: "flu" }),
  });
  await billing.waitForSelector("#tail .message", { timeout: 10000 });
  await clinician.waitForSelector("#tail .message", { timeout: 10000 });
  const billingSees = await billing.textContent("#tail .message");
  const clinicianSees = await clinician.textContent("#tail .message");
  assert.equal(billingSees, 'claims.new {"ssn":"123-45-6789","diagnosis":"[REDACTED]"}');
  assert.equal(clinicianSees, 'claims.new {"ssn":"123-45-6789","diagnosis":"flu"}');

  const before = (await api("/v1/admin/streams/JOBS", ADMIN)).messages;
  const admin = await login(ADMIN);
  await admin.waitForSelector("#dlq button.redrive", { timeout: 10000 });
  assert.match(await admin.textContent("#dlq"), /jobs\.run.*terminated: broken input/);
  assert.equal(await admin.locator("#streams tbody tr").count() >= 1, true);
  await admin.click("#dlq button.redrive");
  await admin.waitForFunction(() => document.querySelectorAll("#dlq button.redrive").length === 0, null, { timeout: 10000 });
  const after = (await api("/v1/admin/streams/JOBS", ADMIN)).messages;
  assert.equal(after, before + 1, "the redriven job is back in its stream");

  // Consumers of a stream, and deleting one and a whole stream from the page.
  admin.on("dialog", (dialog) => dialog.accept());
  await admin.click('#streams button.consumers[data-stream="JOBS"]');
  await admin.waitForSelector('#consumers[data-loaded="JOBS"] button.delete-consumer[data-consumer="worker"]', { timeout: 10000 });
  await admin.click('#consumers button.delete-consumer[data-consumer="worker"]');
  await admin.waitForFunction(() => !document.querySelector('#consumers button.delete-consumer[data-consumer="worker"]'), null, { timeout: 10000 });
  const left = (await api("/v1/admin/streams/JOBS/consumers", ADMIN)).consumers.map((c) => c.name);
  assert.ok(!left.includes("worker"), `consumers left: ${left}`);
  await api("/v1/admin/streams", ADMIN, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name: "SCRATCH", subjects: ["scratch.>"] }),
  });
  await admin.click("#streams-refresh");
  await admin.click('#streams button.delete-stream[data-stream="SCRATCH"]', { timeout: 10000 });
  await admin.waitForFunction(() => !document.querySelector('#streams button.delete-stream[data-stream="SCRATCH"]'), null, { timeout: 10000 });
  const names = (await api("/v1/admin/streams", ADMIN)).streams.map((s) => s.name);
  assert.ok(names.includes("JOBS") && !names.includes("SCRATCH"), `streams: ${names}`);

  await admin.click("#streams-refresh");
  await admin.click("#audit-verify");
  await admin.waitForFunction(() => document.querySelector("#audit").textContent.length > 0, null, { timeout: 10000 });
  assert.match(await admin.textContent("#audit"), /^intact: \d+ records$/);
  await admin.screenshot({ path: screenshot, fullPage: true });
  const tails = screenshot.replace(/\.png$/, "");
  await billing.screenshot({ path: `${tails}-billing-tail.png`, fullPage: true });
  await clinician.screenshot({ path: `${tails}-clinician-tail.png`, fullPage: true });
  console.log(`admin page: masked for billing, clear for the clinician, redrive, consumer and stream deletes, audit verified; screenshots ${tails}*.png`);
} finally {
  await browser.close();
}

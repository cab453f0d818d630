// Opens one page in headless Debian Chromium and waits until the page
// reports its result by setting window.browsertestResult to
// {passed, failed, lines}. Prints the page's console, its lines and a
// closing "NAME: N passed, M failed" line; exits 0 only when the page ran
// with no failure. Used by browsertest.go.
//
// Usage: node run.mjs URL NAME TIMEOUT_MS

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { chromium } from "playwright-core";

const [url, name = "browser", timeoutArg = "60000"] = process.argv.slice(2);
if (!url) {
  console.error("usage: node run.mjs URL [NAME] [TIMEOUT_MS]");
  process.exit(2);
}
const timeout = Number(timeoutArg);

// A fresh profile every run, and no background traffic: this machine's
// network is closed, and Chromium's own connections would only be refused.
const profile = mkdtempSync(join(tmpdir(), "browsertest-"));
let context;
let code = 1;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.BROWSERTEST_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    timeout,
  });
  const page = await context.newPage();
  page.on("console", (m) => console.log(`[console.${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => console.log(`[pageerror] ${e.stack || e}`));
  await page.goto(url, { timeout });
  const handle = await page.waitForFunction(() => window.browsertestResult, null, { timeout });
  const result = await handle.jsonValue();
  for (const line of result.lines || []) console.log(line);
  console.log(`${name}: ${result.passed} passed, ${result.failed} failed`);
  code = result.failed === 0 && result.passed > 0 ? 0 : 1;
} catch (e) {
  console.log(`${name}: the page did not report a result: ${e.stack || e}`);
} finally {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.exit(code);

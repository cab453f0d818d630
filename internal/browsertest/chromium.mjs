// Launches headless Debian Chromium with a fresh profile, for run.mjs and
// console.mjs: no background traffic (this machine's network is closed,
// and Chromium's own connections would only be refused), no sandbox (CI
// runs as root). withBrowser hands fn the browser context and removes the
// profile afterwards, whatever fn did.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { chromium } from "playwright-core";

export async function withBrowser(timeout, fn, options = {}) {
  const profile = mkdtempSync(join(tmpdir(), "browsertest-"));
  let context;
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
      ...options,
    });
    return await fn(context);
  } finally {
    await context?.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
}

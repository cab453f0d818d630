// Opens one page in headless Debian Chromium and waits until the page
// reports its result by setting window.browsertestResult to
// {passed, failed, lines}. Prints the page's console, its lines and a
// closing "NAME: N passed, M failed" line; exits 0 only when the page ran
// with no failure. Used by browsertest.go.
//
// Usage: node run.mjs URL NAME TIMEOUT_MS

import { withBrowser } from "./chromium.mjs";

const [url, name = "browser", timeoutArg = "60000"] = process.argv.slice(2);
if (!url) {
  console.error("usage: node run.mjs URL [NAME] [TIMEOUT_MS]");
  process.exit(2);
}
const timeout = Number(timeoutArg);

let code = 1;
try {
  await withBrowser(timeout, async (context) => {
    const page = await context.newPage();
    page.on("console", (m) => console.log(`[console.${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => console.log(`[pageerror] ${e.stack || e}`));
    await page.goto(url, { timeout });
    const handle = await page.waitForFunction(() => window.browsertestResult, null, { timeout });
    const result = await handle.jsonValue();
    for (const line of result.lines || []) console.log(line);
    console.log(`${name}: ${result.passed} passed, ${result.failed} failed`);
    code = result.failed === 0 && result.passed > 0 ? 0 : 1;
  });
} catch (e) {
  console.log(`${name}: the page did not report a result: ${e.stack || e}`);
}
process.exit(code);

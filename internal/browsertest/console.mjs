// Drives the token console (/console/) in headless Chromium the way an
// operator would, finding everything by its accessible name (label or
// button name), against a real cbkgate that console_test.go started. Each
// run is one flow in a fresh browser; after it, the same checks hold for
// every flow: no request to another origin, no console error, no page
// error, no Content-Security-Policy violation, nothing in cookies, Web
// Storage, IndexedDB or the Cache API.
//
// Usage: node console.mjs FLOW NAME
// Environment: CONSOLE_URL (http://host:port/console/), CONSOLE_KEY (the
// API key to type), CONSOLE_USER (the user id to type), and per flow
// CONSOLE_TOTAL (tokens the user has), CONSOLE_SCREENSHOT (a PNG path),
// CONSOLE_PROBE (a URL saying whether the upstream listing ended).
// Prints one "ok"/"FAIL" line per check and "NAME: N passed, M failed".

import { withBrowser } from "./chromium.mjs";

const [flow, name = flow] = process.argv.slice(2);
const env = process.env;
const url = env.CONSOLE_URL;
const origin = new URL(url).origin;
const timeout = 60_000;

let passed = 0;
let failed = 0;
function check(ok, what, detail) {
  ok ? passed++ : failed++;
  console.log(`${ok ? "ok  " : "FAIL"} ${what}${ok || detail === undefined ? "" : ": " + JSON.stringify(detail)}`);
}

/** en-US count, as the page must show it. */
const tokensText = (n) => `${n.toLocaleString("en-US")} ${n === 1 ? "token" : "tokens"}`;

/** Polls fn (bounded) until it returns a truthy value, which it returns;
 * undefined after ms. */
async function until(fn, ms = 20_000, every = 20) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) return undefined;
    await new Promise((r) => setTimeout(r, every));
  }
}

/** Whether locator's action fails within ms (the element does not take
 * the action: inert behind a modal dialog). */
async function refuses(action) {
  try {
    await action();
    return false;
  } catch {
    return true;
  }
}

// What each page did, recorded from outside the page (and, for CSP
// violations, by a listener added before any of the page's scripts).
function watch(context) {
  const seen = { requests: [], consoleErrors: [], pageErrors: [], alerts: [], csp: [] };
  context.on("request", (r) => seen.requests.push(r.url()));
  return {
    seen,
    async page() {
      await context.exposeBinding("reportCSPViolation", (_src, v) => seen.csp.push(v));
      await context.addInitScript(() => {
        document.addEventListener("securitypolicyviolation", (e) =>
          window.reportCSPViolation(`${e.violatedDirective} ${e.blockedURI}`));
      });
      const page = context.pages()[0] ?? (await context.newPage());
      page.on("console", (m) => {
        if (m.type() === "error" || m.type() === "warning") seen.consoleErrors.push(`${m.text()} at ${m.location().url}`);
      });
      page.on("pageerror", (e) => seen.pageErrors.push(String(e.stack || e)));
      page.on("dialog", (d) => {
        seen.alerts.push(d.message());
        void d.dismiss();
      });
      return page;
    },
  };
}

// The console's parts, by accessible name.
function ui(page) {
  const create = page.getByRole("region", { name: "Create a token" });
  return {
    key: page.getByLabel("API key", { exact: true }),
    user: page.getByLabel("User ID", { exact: true }),
    list: page.getByRole("button", { name: "List tokens", exact: true }),
    stop: page.getByRole("button", { name: "Stop", exact: true }),
    count: page.getByText(/^[\d,]+ tokens?$/),
    status: page.getByRole("status"),
    alert: page.getByRole("alert"),
    search: page.getByLabel("Search by name", { exact: true }),
    rows: page.getByRole("row"),
    row: (text) => page.getByRole("row").filter({ hasText: text }),
    create,
    name: create.getByLabel("Name", { exact: true }),
    description: create.getByLabel("Description", { exact: true }),
    metaKey: create.getByLabel("Key", { exact: true }),
    metaValue: create.getByLabel("Value", { exact: true }),
    addMeta: create.getByRole("button", { name: "Add meta row", exact: true }),
    createButton: create.getByRole("button", { name: "Create token", exact: true }),
    secret: page.getByRole("region", { name: /^Secret of token/ }),
    copy: page.getByRole("button", { name: "Copy", exact: true }),
    dismiss: page.getByRole("button", { name: "Dismiss", exact: true }),
  };
}

async function listAs(c, key, user) {
  await c.key.fill(key);
  await c.user.fill(user);
  await c.list.click();
}

const flows = {
  // 1,000+ tokens stream in, the count live and in en-US; search by name;
  // names, descriptions and meta shown as text, never as HTML.
  async list(page, c) {
    const total = Number(env.CONSOLE_TOTAL);
    await page.goto(url);
    // A wrong key first: the streamed call's error, shown in full.
    await listAs(c, "not-a-key", env.CONSOLE_USER);
    await c.alert.waitFor();
    const refused = (await c.alert.textContent()) ?? "";
    check(/^UNAUTHENTICATED: .*Reason\s*INVALID_CREDENTIALS\s*Request ID\s*[0-9a-f]{32}$/.test(refused),
      "a wrong key's listing shows UNAUTHENTICATED, its reason and request id", refused);
    await c.count.evaluate((el) => {
      window.countsShown = [];
      new MutationObserver(() => window.countsShown.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true });
    });
    await listAs(c, env.CONSOLE_KEY, env.CONSOLE_USER);
    const first = await until(async () => {
      const t = await c.count.textContent();
      return t !== "0 tokens" ? t : "";
    });
    check(first !== undefined && first !== tokensText(total), `the count moves while the listing runs (first seen: ${first})`);
    const done = await until(async () => (await c.count.textContent()) === tokensText(total), 60_000);
    check(done, `the count ends at "${tokensText(total)}"`, await c.count.textContent());
    check((await c.rows.count()) === total + 1, `${total} rows`, await c.rows.count());
    const counts = await page.evaluate(() => window.countsShown);
    const numbers = counts.map((t) => Number(t.replace(/ tokens?$/, "").replaceAll(",", "")));
    check(counts.every((t, i) => t === tokensText(numbers[i])), "every count shown reads like \"1 token\" or \"1,200 tokens\"", counts.slice(0, 5));
    check(counts.includes("1 token") && counts.includes("1,000 tokens"), "\"1 token\" and \"1,000 tokens\" were shown");
    check(numbers.every((n, i) => i === 0 || n >= numbers[i - 1]), "the count only went up");
    check((await c.stop.isDisabled()) && /Listed/.test(await c.status.textContent()), "a finished listing says so and disables Stop", await c.status.textContent());
    check((await c.alert.count()) === 0, "the earlier error is gone");

    await c.search.fill("alpha");
    check((await c.rows.count()) === 3 && (await c.row("alpha").count()) === 2, "searching \"alpha\" shows the two alpha tokens", await c.rows.count());
    await c.search.fill("");
    check((await c.rows.count()) === total + 1, "clearing the search shows every token again");

    const hostile = env.CONSOLE_HOSTILE;
    check((await page.getByRole("cell", { name: hostile, exact: true }).count()) === 1, "a name made of HTML is shown as its text");
    check((await page.locator("tbody img, tbody b, tbody script").count()) === 0, "no element was made from an upstream string");
    check((await c.row("k=<b>bold</b>").count()) === 1, "meta is shown as text");
    check((await c.row("deep meta").textContent()).includes("(nested too deep to show)"), "meta too deep to pass on says so");
  },

  // Stop freezes the count and cancels the listing, upstream too: with the
  // page still open, console_test.go's probe (asked from here, not from
  // the page) says the upstream listing ended, long before its pace would
  // have ended it.
  async stop(page, c) {
    const total = Number(env.CONSOLE_TOTAL);
    await page.goto(url);
    await listAs(c, env.CONSOLE_KEY, env.CONSOLE_USER);
    await until(async () => (await c.count.textContent()) !== "0 tokens");
    await c.stop.click();
    const frozen = await c.count.textContent();
    await page.waitForTimeout(2_000);
    const later = await c.count.textContent();
    check(frozen === later, `the count stays at ${frozen} after Stop`, later);
    check(frozen !== tokensText(total), "Stop came before the listing's end");
    check((await c.rows.count()) - 1 === Number(frozen.replace(/ tokens?$/, "").replaceAll(",", "")), "the rows are the tokens counted");
    check(/Stopped/.test(await c.status.textContent()) && (await c.stop.isDisabled()), "the page says it stopped", await c.status.textContent());
    check((await c.alert.count()) === 0, "stopping is not an error");
    const upstream = await until(async () => {
      const r = await (await fetch(env.CONSOLE_PROBE)).json();
      return r.ended ? r : undefined;
    }, 5_000, 100);
    check(upstream?.requests === 1, "the upstream listing was cancelled while the page stayed open", upstream);
  },

  // Create (the secret shown once, copied, gone once dismissed or
  // reloaded), edit, revoke behind a modal confirmation.
  async crud(page, c, context) {
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin });
    await page.goto(url);
    await listAs(c, env.CONSOLE_KEY, env.CONSOLE_USER);
    check(await until(async () => (await c.count.textContent()) === "2 tokens"), "the user's 2 tokens are listed");

    await c.name.fill("deploy bot");
    await c.description.fill("CI deploys");
    await c.metaKey.nth(0).fill("team");
    await c.metaValue.nth(0).fill("infra");
    await c.addMeta.click();
    await c.metaKey.nth(1).fill("env");
    await c.metaValue.nth(1).fill("prod");
    await c.createButton.click();
    await c.secret.waitFor();
    const secret = (await c.secret.locator("code").textContent()) ?? "";
    check(secret.length >= 16, "the new token's secret is shown");
    check((await c.secret.getByText("shown once").count()) === 1, "it says the secret is shown once");
    check((await c.count.textContent()) === "3 tokens" && (await c.row("deploy bot").count()) === 1, "the new token is listed");
    check((await c.row("deploy bot").textContent()).includes("team=infra, env=prod"), "with its meta");
    await c.copy.click();
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    check(copied === secret, "Copy puts the secret on the clipboard");
    await c.dismiss.click();
    check(!(await c.secret.isVisible()) && !(await page.content()).includes(secret), "dismissed, the secret is gone from the page");

    await c.name.fill("temp");
    await c.createButton.click();
    await c.secret.waitFor();
    const secret2 = (await c.secret.locator("code").textContent()) ?? "";
    check(secret2.length >= 16 && secret2 !== secret, "a second token's secret is shown");
    await page.reload();
    check(!(await page.content()).includes(secret2) && (await page.getByText("shown once").isHidden()), "after a reload the secret is gone");
    check((await c.key.inputValue()) === "" && (await c.user.inputValue()) === "", "and so are the API key and the user id");

    await listAs(c, env.CONSOLE_KEY, env.CONSOLE_USER);
    check(await until(async () => (await c.count.textContent()) === "4 tokens"), "listed again: 4 tokens");
    check(!(await page.content()).includes(secret) && !(await page.content()).includes(secret2), "no secret is listed");

    await c.row("deploy bot").getByRole("button", { name: "Edit", exact: true }).click();
    const edit = page.getByRole("dialog", { name: "Edit token" });
    await edit.getByLabel("Name", { exact: true }).fill("deploy bot v2");
    await edit.getByLabel("Description", { exact: true }).fill("CI deploys to prod");
    await edit.getByRole("button", { name: "Save", exact: true }).click();
    await edit.waitFor({ state: "hidden" });
    check((await c.row("deploy bot v2").count()) === 1 && (await c.row("CI deploys to prod").count()) === 1, "the edited name and description are shown");
    check(await page.evaluate(() => document.activeElement?.textContent === "Edit"), "focus is back on the row's Edit button");

    await c.row("temp").getByRole("button", { name: "Revoke", exact: true }).click();
    const confirm = page.getByRole("dialog", { name: "Revoke this token?" });
    await confirm.waitFor();
    check(await confirm.evaluate((d) => d.matches(":modal")), "the confirmation is a modal dialog");
    check(await refuses(() => c.list.click({ trial: true, timeout: 1_000 })), "the page behind it takes no click");
    check((await confirm.textContent()).includes("temp"), "it names the token");
    await confirm.getByRole("button", { name: "Revoke", exact: true }).click();
    await confirm.waitFor({ state: "hidden" });
    check((await c.row("temp").count()) === 0 && (await c.count.textContent()) === "3 tokens", "the revoked token is gone: 3 tokens");
    check(/Revoked temp/.test(await c.status.textContent()), "the page says what it revoked", await c.status.textContent());
  },

  // Listing with the keyboard alone, the page as a screen reader sees it.
  async keyboard(page, c) {
    await page.goto(url);
    const focused = () => page.evaluate(() => {
      const a = document.activeElement;
      return a?.labels?.[0]?.textContent ?? a?.textContent ?? "";
    });
    let reached = false;
    for (let i = 0; i < 10 && !reached; i++) {
      await page.keyboard.press("Tab");
      reached = (await focused()) === "API key";
    }
    check(reached, "Tab reaches the API key field");
    await page.keyboard.type(env.CONSOLE_KEY);
    await page.keyboard.press("Tab");
    check((await focused()) === "User ID", "then the User ID field", await focused());
    await page.keyboard.type(env.CONSOLE_USER);
    await page.keyboard.press("Tab");
    check((await focused()) === "List tokens", "then the List tokens button", await focused());
    await page.keyboard.press("Enter");
    const total = Number(env.CONSOLE_TOTAL);
    check(await until(async () => (await c.count.textContent()) === tokensText(total)), `Enter lists the user's ${tokensText(total)}`);

    // Escape closes the confirmation and Revoke stays undone.
    await c.row(env.CONSOLE_NAMED).getByRole("button", { name: "Revoke", exact: true }).focus();
    await page.keyboard.press("Enter");
    const confirm = page.getByRole("dialog", { name: "Revoke this token?" });
    await confirm.waitFor();
    check(await page.evaluate(() => document.activeElement?.textContent === "Cancel"), "the confirmation opens on Cancel");
    await page.keyboard.press("Escape");
    await confirm.waitFor({ state: "hidden" });
    check((await c.count.textContent()) === tokensText(total), "Escape closes it, nothing revoked");

    const tree = await page.locator("body").ariaSnapshot();
    for (const want of ['textbox "API key"', 'textbox "User ID"', 'button "List tokens"', 'button "Stop" [disabled]',
      'textbox "Name"', 'textbox "Description"', 'button "Create token"', 'searchbox "Search by name"', "- status:", 'columnheader "Name"']) {
      check(tree.includes(want), `a screen reader finds ${want}`);
    }
  },

  // A key granted only list: creating is refused, and the page shows the
  // code, the reason and the call's request id.
  async denied(page, c) {
    await page.goto(url);
    await listAs(c, env.CONSOLE_KEY, env.CONSOLE_USER);
    check(await until(async () => (await c.count.textContent()) === tokensText(Number(env.CONSOLE_TOTAL))), "the key may list");
    await c.name.fill("not allowed");
    await c.createButton.click();
    await c.alert.waitFor();
    const text = (await c.alert.textContent()) ?? "";
    check(text.startsWith("PERMISSION_DENIED: "), "the error names its code", text);
    check(/Reason\s*PERMISSION_DENIED/.test(text), "and its reason", text);
    const id = /Request ID\s*([A-Za-z0-9._:-]{1,64})$/.exec(text)?.[1];
    check(id !== undefined, "and the call's request id", text);
    console.log(`denied request id: ${id}`);
    check(!(await c.secret.isVisible()) && (await c.count.textContent()) === tokensText(Number(env.CONSOLE_TOTAL)), "nothing was created");
  },

  // The README's picture.
  async screenshot(page, c) {
    await page.setViewportSize({ width: 1200, height: 900 });
    await page.goto(url);
    await listAs(c, env.CONSOLE_KEY, env.CONSOLE_USER);
    check(await until(async () => (await c.count.textContent()) === tokensText(Number(env.CONSOLE_TOTAL))), "listed");
    await c.name.fill("support inbox");
    await c.description.fill("Zendesk bridge");
    await c.metaKey.nth(0).fill("team");
    await c.metaValue.nth(0).fill("support");
    await c.createButton.click();
    await c.secret.waitFor();
    await c.key.blur();
    await page.screenshot({ path: env.CONSOLE_SCREENSHOT, fullPage: true });
    check(true, `screenshot written to ${env.CONSOLE_SCREENSHOT}`);
  },
};

// Console errors a flow expects: the browser logs every HTTP error status
// of a fetch, and a refused call is one.
const expectedErrors = {
  denied: (e) => /status of 403/.test(e) && e.includes("/cbkgate.token.v1.TokenService/Create"),
};

async function after(page, w, context) {
  const { seen } = w;
  const foreign = seen.requests.filter((u) => new URL(u).origin !== origin);
  check(foreign.length === 0, "no request went to another origin", foreign);
  check(seen.requests.includes(origin + "/console/favicon.svg") && !seen.requests.some((u) => u.endsWith("/favicon.ico")),
    "the icon comes from the console's own folder, /favicon.ico is never asked for");
  const allowed = expectedErrors[flow] ?? (() => false);
  const errors = seen.consoleErrors.filter((e) => !allowed(e));
  check(errors.length === 0, "no console error or warning", errors);
  if (expectedErrors[flow]) check(seen.consoleErrors.length > 0, "the expected console error was seen (the check can see one)");
  check(seen.pageErrors.length === 0, "no uncaught error", seen.pageErrors);
  check(seen.alerts.length === 0, "no alert, confirm or prompt", seen.alerts);
  check(seen.csp.length === 0, "no Content-Security-Policy violation", seen.csp);
  const stored = await page.evaluate(async () => ({
    cookie: document.cookie,
    local: localStorage.length,
    session: sessionStorage.length,
    indexedDB: (await indexedDB.databases()).length,
    caches: (await caches.keys()).length,
  }));
  check(JSON.stringify(stored) === '{"cookie":"","local":0,"session":0,"indexedDB":0,"caches":0}', "nothing stored in the page", stored);
  check((await context.cookies()).length === 0, "no cookie in the browser");
  // The violation check itself: an inline style is refused, and seen.
  await page.evaluate(() => {
    const s = document.createElement("style");
    s.textContent = "body { color: red }";
    document.head.append(s);
  });
  check(await until(() => seen.csp.length === 1, 5_000), "the policy check sees a violation when there is one", seen.csp);
}

let code = 1;
try {
  if (!flows[flow]) throw new Error(`unknown flow ${flow}; one of ${Object.keys(flows).join(", ")}`);
  await withBrowser(timeout, async (context) => {
    context.setDefaultTimeout(20_000);
    const w = watch(context);
    const page = await w.page();
    await flows[flow](page, ui(page), context);
    await after(page, w, context);
  });
  code = failed === 0 && passed > 0 ? 0 : 1;
} catch (e) {
  check(false, `the ${flow} flow ran to the end`, String(e?.stack ?? e));
}
console.log(`${name}: ${passed} passed, ${failed} failed`);
process.exit(code);

// The token console against tokens a hostile or careless writer left
// upstream, in headless Chromium. Usage: node console_hostile.mjs FLOW NAME
// Env: CONSOLE_URL (the console's page), CONSOLE_KEY (an API key),
// PROBE_USER (the user whose tokens the flow lists).
import { withBrowser } from "./chromium.mjs";

const [flow, name = flow] = process.argv.slice(2);
const env = process.env;
const url = env.CONSOLE_URL;
const api = new URL("..", url).href.replace(/\/$/, "");
const key = env.CONSOLE_KEY;
const user = env.PROBE_USER;
let passed = 0, failed = 0;
function check(ok, what, detail) {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? "ok  " : "FAIL"} ${what}${ok || detail === undefined ? "" : ": " + JSON.stringify(detail).slice(0, 400)}`);
}
async function until(fn, ms = 30_000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) return undefined;
    await new Promise((r) => setTimeout(r, 25));
  }
}
// The user's tokens as ChatBotKit holds them, through the JSON gateway.
async function stored() {
  const r = await fetch(`${api}/v1/users/${encodeURIComponent(user)}/tokens?order=ORDER_ASC`, { headers: { Authorization: `Bearer ${key}` } });
  return (await r.text()).split("\n").filter(Boolean).map((l) => JSON.parse(l).result.token);
}
async function list(page) {
  await page.getByLabel("API key", { exact: true }).fill(key);
  await page.getByLabel("User ID", { exact: true }).fill(user);
  await page.getByRole("button", { name: "List tokens", exact: true }).click();
  return until(async () => /^Listed/.test(await page.getByRole("status").textContent()));
}

const flows = {
  // Editing one field leaves the other as it was, line breaks included
  // (a one-line field used to drop them, and Save sent both fields).
  async edit(page) {
    const [before] = await stored();
    check(await list(page), "listed");
    const dialog = page.getByRole("dialog", { name: "Edit token" });
    await page.getByRole("button", { name: "Edit", exact: true }).first().click();
    await dialog.getByLabel("Name", { exact: true }).fill("renamed only");
    await dialog.getByRole("button", { name: "Save", exact: true }).click();
    await until(async () => !(await dialog.isVisible()));
    let [after] = await stored();
    check(after.name === "renamed only", "the name changed", after.name);
    check(after.description === before.description, "the description is as it was", { before: before.description, after: after.description });
    await page.getByRole("button", { name: "Edit", exact: true }).first().click();
    check(await dialog.getByLabel("Description", { exact: true }).inputValue() === before.description, "the edit field shows the description's line breaks");
    await dialog.getByLabel("Description", { exact: true }).fill("one line now");
    await dialog.getByRole("button", { name: "Save", exact: true }).click();
    await until(async () => !(await dialog.isVisible()));
    [after] = await stored();
    check(after.description === "one line now" && after.name === "renamed only", "then only the description changed", after);
  },
  // A right-to-left override in a name does not reorder the token's id in
  // the revoke confirmation: its first character stays left of its last.
  async bidi(page) {
    check(await list(page), "listed");
    const row = page.getByRole("row").filter({ hasText: "rtl spoof" });
    const id = (await row.locator("td.id").textContent()).trim();
    await row.getByRole("button", { name: "Revoke", exact: true }).click();
    const xs = await page.locator("#revoke-what").evaluate((p, id) => {
      const walker = document.createTreeWalker(p, NodeFilter.SHOW_TEXT);
      for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        const i = n.data.indexOf(id);
        if (i < 0) continue;
        const r = document.createRange();
        const x = (k) => { r.setStart(n, k); r.setEnd(n, k + 1); return r.getBoundingClientRect().x; };
        return [x(i), x(i + id.length - 1)];
      }
      return null;
    }, id);
    check(xs !== null && xs[0] < xs[1], "the id in the confirmation reads left to right", xs);
    await page.getByRole("button", { name: "Cancel", exact: true }).click();
  },
  // One 100 KB name does not make the page many screens wide, and every
  // row's buttons stay on it.
  async long(page) {
    await page.setViewportSize({ width: 1280, height: 900 });
    check(await list(page), "listed");
    const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, innerWidth]);
    check(scroll <= inner * 1.5, "the page is not many screens wide", { scroll, inner });
    for (const b of await page.getByRole("button", { name: "Revoke", exact: true }).all()) {
      const box = await b.boundingBox();
      check(box !== null && box.x + box.width <= inner * 1.5, "a row's Revoke button is on the page", box);
    }
  },
};

try {
  await withBrowser(60_000, async (context) => {
    const page = context.pages()[0] ?? (await context.newPage());
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("dialog", (d) => { errors.push(`a dialog: ${d.message()}`); void d.dismiss(); });
    await page.goto(url);
    await flows[flow](page);
    check(errors.length === 0, "no page error and no alert", errors);
  });
} catch (e) {
  check(false, `the ${flow} flow ran to the end`, String(e?.stack ?? e));
}
console.log(`${name}: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);

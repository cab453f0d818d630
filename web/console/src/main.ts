// The token console: list a user's tokens as they stream in, search them
// by name, create one (its secret shown once), edit a name or description,
// revoke one after a confirmation. The API key lives only in its input
// field: the page stores nothing (no cookie, no Web Storage, no IndexedDB).

import { timestampDate } from "@bufbuild/protobuf/wkt";

import type { Token } from "../../../gen/ts/cbkgate/token/v1/token_service_pb.js";
import { cancelled, describe, tokens, type Call } from "./api.js";
import { byId, clearError, el, showError, tokenCount } from "./dom.js";
import { TokenTable, type Item } from "./table.js";

const apiKey = byId<HTMLInputElement>("api-key");
const userId = byId<HTMLInputElement>("user-id");
const stop = byId<HTMLButtonElement>("stop");
const listError = byId("list-error");
const count = byId("count");
const status = byId("status");
const tokensHeading = byId("tokens-heading");

const table = new TokenTable(byId<HTMLTableSectionElement>("tokens"), openEdit, openRevoke);

/** The user whose tokens the table holds. */
let shownUser = "";

function say(text: string): void {
  status.textContent = text;
}

function showCount(): void {
  count.textContent = tokenCount(table.size);
}

function item(t: Token): Item {
  return {
    id: t.id,
    name: t.name,
    description: t.description,
    meta: t.meta ?? {},
    metaOmitted: t.metaOmitted,
    created: t.createTime ? timestampDate(t.createTime) : undefined,
  };
}

// Listing. One at a time: a new one, or Stop, cancels the one running,
// which cancels its upstream requests too (the fetch is aborted, so
// cbkgate sees its caller go).

interface Listing {
  abort: AbortController;
  stopped: boolean;
}
let listing: Listing | null = null;

function stopListing(): void {
  if (listing === null) return;
  listing.stopped = true;
  listing.abort.abort();
  listing = null;
  stop.disabled = true;
  showCount();
  say(`Stopped: ${tokenCount(table.size)} loaded.`);
}

async function list(): Promise<void> {
  stopListing();
  clearError(listError);
  const l: Listing = { abort: new AbortController(), stopped: false };
  listing = l;
  shownUser = userId.value;
  table.clear();
  showCount();
  stop.disabled = false;
  say(`Listing the tokens of ${shownUser}…`);
  const call: Call = { requestId: "" };
  try {
    const stream = tokens(apiKey.value, call).list({ userId: shownUser, pageSize: 100 }, { signal: l.abort.signal });
    for await (const r of stream) {
      if (l.stopped) break;
      if (r.token) table.add(item(r.token));
      showCount();
    }
    if (!l.stopped) say(`Listed ${tokenCount(table.size)} of ${shownUser}.`);
  } catch (e) {
    if (l.stopped && cancelled(e)) return;
    showError(listError, describe(e, call));
    say(`The listing failed after ${tokenCount(table.size)}.`);
  } finally {
    if (listing === l) {
      listing = null;
      stop.disabled = true;
    }
  }
}

byId<HTMLFormElement>("list-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  void list();
});
stop.addEventListener("click", stopListing);

byId<HTMLInputElement>("search").addEventListener("input", (ev) => {
  const q = (ev.target as HTMLInputElement).value;
  table.search(q);
  say(q.trim() === "" ? `Showing all ${tokenCount(table.size)}.` : `${tokenCount(table.shown)} match “${q.trim()}”.`);
});

// Creating, and the secret shown once.

const createForm = byId<HTMLFormElement>("create-form");
const createName = byId<HTMLInputElement>("create-name");
const createDescription = byId<HTMLTextAreaElement>("create-description");
const createError = byId("create-error");
const metaRows = byId("meta-rows");
const secretPanel = byId("secret-panel");
const secretName = byId("secret-name");
const secretValue = byId("secret-value");

function addMetaRow(): void {
  const row = el("div", "row meta-row");
  for (const what of ["Key", "Value"]) {
    const field = el("div", "field");
    const label = el("label", "", what);
    const input = el("input");
    input.type = "text";
    input.autocomplete = "off";
    input.className = what === "Key" ? "meta-key" : "meta-value";
    label.append(input);
    field.append(label);
    row.append(field);
  }
  const remove = el("button", "", "Remove");
  remove.type = "button";
  remove.addEventListener("click", () => {
    row.remove();
    createForm.querySelector<HTMLButtonElement>("#add-meta")?.focus();
  });
  row.append(remove);
  metaRows.append(row);
}

function meta(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const row of metaRows.querySelectorAll(".meta-row")) {
    const key = row.querySelector<HTMLInputElement>(".meta-key")?.value ?? "";
    if (key !== "") out[key] = row.querySelector<HTMLInputElement>(".meta-value")?.value ?? "";
  }
  return out;
}

function dismissSecret(): void {
  secretValue.textContent = "";
  secretName.textContent = "";
  secretPanel.hidden = true;
}

async function create(submit: HTMLButtonElement): Promise<void> {
  clearError(createError);
  dismissSecret();
  const user = userId.value;
  const req = { userId: user, name: createName.value, description: createDescription.value, meta: meta() };
  const call: Call = { requestId: "" };
  submit.disabled = true;
  try {
    const r = await tokens(apiKey.value, call).create(req);
    if (user === shownUser) {
      table.add({ id: r.id, name: req.name, description: req.description, meta: req.meta, created: r.createTime ? timestampDate(r.createTime) : undefined }, true);
      showCount();
    }
    secretName.textContent = req.name || r.id;
    secretValue.textContent = r.token;
    secretPanel.hidden = false;
    secretPanel.focus();
    createForm.reset();
    metaRows.replaceChildren();
    addMetaRow();
    say(`Created ${req.name || r.id} for ${user}.`);
  } catch (e) {
    showError(createError, describe(e, call));
  } finally {
    submit.disabled = false;
  }
}

createForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  void create(ev.submitter as HTMLButtonElement);
});
byId("add-meta").addEventListener("click", addMetaRow);
addMetaRow();

byId("copy-secret").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(secretValue.textContent ?? "");
    say("Copied the secret to the clipboard.");
  } catch {
    // No clipboard (a page not served over HTTPS or from loopback, or
    // permission refused): select the secret for Ctrl+C instead.
    getSelection()?.selectAllChildren(secretValue);
    say("Could not copy: the secret is selected, press Ctrl+C to copy it.");
  }
});
byId("dismiss-secret").addEventListener("click", () => {
  dismissSecret();
  say("The secret was dismissed.");
  createName.focus();
});

// Editing.

const editDialog = byId<HTMLDialogElement>("edit-dialog");
const editName = byId<HTMLInputElement>("edit-name");
const editDescription = byId<HTMLTextAreaElement>("edit-description");
const editError = byId("edit-error");
// The token being edited, and its name and description as the fields
// showed them: a field can change a value as it shows it (a one-line
// field drops line breaks), so only a field the operator changed is sent.
let editing: { it: Item; name: string; description: string } | null = null;

function openEdit(it: Item): void {
  byId("edit-id").textContent = it.id;
  editName.value = it.name;
  editDescription.value = it.description;
  editing = { it, name: editName.value, description: editDescription.value };
  clearError(editError);
  editDialog.showModal();
  editName.focus();
}

byId<HTMLFormElement>("edit-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  if (editing === null) return;
  const { it } = editing;
  const submit = ev.submitter as HTMLButtonElement;
  const name = editName.value !== editing.name ? editName.value : undefined;
  const description = editDescription.value !== editing.description ? editDescription.value : undefined;
  if (name === undefined && description === undefined) {
    editDialog.close();
    say("Nothing was changed.");
    table.editButton(it.id)?.focus();
    return;
  }
  const call: Call = { requestId: "" };
  submit.disabled = true;
  try {
    // Unset fields are left as they are (UpdateRequest's optional fields).
    await tokens(apiKey.value, call).update({ userId: shownUser, tokenId: it.id, name, description });
    table.update(it.id, name ?? it.name, description ?? it.description);
    editDialog.close();
    say(`Saved ${(name ?? it.name) || it.id}.`);
    table.editButton(it.id)?.focus();
  } catch (e) {
    showError(editError, describe(e, call));
  } finally {
    submit.disabled = false;
  }
});
byId("edit-cancel").addEventListener("click", () => editDialog.close());

// Revoking, after a confirmation in a modal dialog (the rows behind it
// are inert while it is open).

const revokeDialog = byId<HTMLDialogElement>("revoke-dialog");
const revokeConfirm = byId<HTMLButtonElement>("revoke-confirm");
const revokeError = byId("revoke-error");
let revoking: Item | null = null;

function openRevoke(it: Item): void {
  revoking = it;
  // The name and the id each in a <bdi>: a name holding a right-to-left
  // override must not reorder the id or the words after it.
  const what = byId("revoke-what");
  const id = el("bdi", "token-ref", it.id);
  if (it.name) what.replaceChildren("“", el("bdi", "token-ref", it.name), "” (", id, ") stops working at once. This cannot be undone.");
  else what.replaceChildren(id, " stops working at once. This cannot be undone.");
  clearError(revokeError);
  revokeDialog.showModal();
}

revokeConfirm.addEventListener("click", async () => {
  const it = revoking;
  if (it === null) return;
  const call: Call = { requestId: "" };
  revokeConfirm.disabled = true;
  try {
    await tokens(apiKey.value, call).delete({ userId: shownUser, tokenId: it.id });
    table.remove(it.id);
    showCount();
    revokeDialog.close();
    say(`Revoked ${it.name || it.id}.`);
    tokensHeading.focus();
  } catch (e) {
    showError(revokeError, describe(e, call));
  } finally {
    revokeConfirm.disabled = false;
  }
});
byId("revoke-cancel").addEventListener("click", () => revokeDialog.close());

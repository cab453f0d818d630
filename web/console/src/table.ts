// The table of loaded tokens: rows added as a listing streams in, found by
// name, updated and removed in place.

import { el } from "./dom.js";

/** A token as the table shows it. */
export interface Item {
  id: string;
  name: string;
  description: string;
  meta: Record<string, unknown>;
  /** ChatBotKit holds meta nested too deep for cbkgate to pass on. */
  metaOmitted?: boolean;
  created?: Date;
}

interface Row {
  item: Item;
  tr: HTMLTableRowElement;
  name: HTMLTableCellElement;
  description: HTMLTableCellElement;
  edit: HTMLButtonElement;
}

export class TokenTable {
  private readonly rows = new Map<string, Row>();
  private query = "";
  private serial = 0;

  constructor(
    private readonly body: HTMLTableSectionElement,
    private readonly onEdit: (item: Item) => void,
    private readonly onRevoke: (item: Item) => void,
  ) {}

  get size(): number {
    return this.rows.size;
  }

  /** The number of rows the search shows. */
  get shown(): number {
    let n = 0;
    for (const r of this.rows.values()) if (!r.tr.hidden) n++;
    return n;
  }

  clear(): void {
    this.rows.clear();
    this.body.replaceChildren();
  }

  has(id: string): boolean {
    return this.rows.has(id);
  }

  /** Adds a row at the end, or at the top for a token just created. */
  add(item: Item, atTop = false): void {
    if (this.rows.has(item.id)) return;
    const n = ++this.serial;
    const tr = el("tr");
    const name = el("td", "name");
    name.id = `token-name-${n}`;
    const description = el("td", "description");
    const id = el("td", "id", item.id);
    id.id = `token-id-${n}`;
    const meta = el("td", "meta", item.metaOmitted ? "(nested too deep to show)" : metaText(item.meta));
    const created = el("td", "", item.created ? when(item.created) : "");
    const actions = el("td", "actions");
    // The buttons are named "Edit" and "Revoke" on every row; their
    // description names the token, so a screen reader tells them apart.
    const edit = el("button", "", "Edit");
    const revoke = el("button", "", "Revoke");
    for (const b of [edit, revoke]) {
      b.type = "button";
      b.setAttribute("aria-describedby", `${name.id} ${id.id}`);
    }
    edit.addEventListener("click", () => this.onEdit(item));
    revoke.addEventListener("click", () => this.onRevoke(item));
    actions.append(edit, revoke);
    tr.append(name, description, id, meta, created, actions);
    const row = { item, tr, name, description, edit };
    this.fill(row);
    this.rows.set(item.id, row);
    tr.hidden = !this.matches(item);
    if (atTop) this.body.prepend(tr);
    else this.body.append(tr);
  }

  update(id: string, name: string, description: string): void {
    const row = this.rows.get(id);
    if (row === undefined) return;
    row.item.name = name;
    row.item.description = description;
    this.fill(row);
    row.tr.hidden = !this.matches(row.item);
  }

  remove(id: string): void {
    this.rows.get(id)?.tr.remove();
    this.rows.delete(id);
  }

  /** The Edit button of a row, to give focus back to after editing. */
  editButton(id: string): HTMLButtonElement | undefined {
    return this.rows.get(id)?.edit;
  }

  /** Shows only the tokens whose name contains query (case-insensitive). */
  search(query: string): void {
    this.query = query.trim().toLowerCase();
    for (const r of this.rows.values()) r.tr.hidden = !this.matches(r.item);
  }

  private matches(item: Item): boolean {
    return this.query === "" || item.name.toLowerCase().includes(this.query);
  }

  private fill(row: Row): void {
    if (row.item.name === "") {
      row.name.replaceChildren(el("span", "note", "(no name)"));
    } else {
      row.name.textContent = row.item.name;
    }
    row.description.textContent = row.item.description;
  }
}

function metaText(meta: Record<string, unknown>): string {
  return Object.entries(meta)
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(", ");
}

/** "2025-01-31 14:05 UTC". */
function when(d: Date): string {
  return `${d.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

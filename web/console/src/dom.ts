// Small DOM helpers. Everything that came from upstream (names,
// descriptions, meta) or from a caller reaches the page through text nodes
// (textContent), never as HTML.

import type { Failure } from "./api.js";

export function byId<T extends HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (e === null) throw new Error(`the page has no #${id}`);
  return e as T;
}

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, className = "", text = ""): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (className !== "") e.className = className;
  if (text !== "") e.textContent = text;
  return e;
}

const numbers = new Intl.NumberFormat("en-US");

/** "1 token", "1,200 tokens". */
export function tokenCount(n: number): string {
  return `${numbers.format(n)} ${n === 1 ? "token" : "tokens"}`;
}

/** Shows a failed call in slot: its status code and message, its
 * ErrorInfo reason and its request id (what an operator quotes when
 * asking about it). role=alert has screen readers read it out. */
export function showError(slot: HTMLElement, f: Failure): void {
  const box = el("div", "error");
  box.setAttribute("role", "alert");
  const head = el("p");
  head.append(el("strong", "", f.code), document.createTextNode(`: ${f.message}`));
  const list = el("dl");
  list.append(
    el("dt", "", "Reason"), el("dd", "", f.reason || "(none given)"),
    el("dt", "", "Request ID"), el("dd", "", f.requestId || "(none: cbkgate did not answer)"),
  );
  box.append(head, list);
  slot.replaceChildren(box);
}

export function clearError(slot: HTMLElement): void {
  slot.replaceChildren();
}

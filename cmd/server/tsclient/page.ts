// A page on another origin than cbkgate's, in a real browser: the
// generated TypeScript client over Connect streaming List (connect-web, and
// over gRPC-Web too),
// fetch reading the NDJSON List incrementally, Server-Sent Events read
// through fetch (and through EventSource), and an error shown with its
// reason. Served and driven by ../tsclient_test.go through
// internal/browsertest; the API's base URL comes in the "api" query
// parameter.

import { ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";

import { Order, TokenService } from "../../../gen/ts/cbkgate/token/v1/token_service_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../../../gen/ts/google/rpc/error_details_pb.js";

declare global {
  interface Window {
    browsertestResult?: { passed: number; failed: number; lines: string[] };
  }
}

const api = new URL(location.href).searchParams.get("api") ?? "";
const lines: string[] = [];
let passed = 0;
let failed = 0;
function check(name: string, ok: boolean, detail?: unknown) {
  if (ok) passed++;
  else failed++;
  lines.push(`${ok ? "ok  " : "FAIL"} ${name}${ok ? "" : ": " + JSON.stringify(detail)}`);
}

const client = createClient(TokenService, createConnectTransport({ baseUrl: api }));
const user = `browser-${Date.now()}`;
const listURL = `${api}/v1/users/${encodeURIComponent(user)}/tokens?order=ORDER_ASC&page_size=2`;

// Reads a response body as it arrives, handing each complete line to
// onLine: a line may be split across chunks, or a chunk hold several.
async function readLines(resp: Response, onLine: (line: string) => void): Promise<number> {
  const reader = resp.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  let chunks = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    chunks++;
    buffered += value;
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      onLine(buffered.slice(0, nl));
      buffered = buffered.slice(nl + 1);
    }
  }
  if (buffered !== "") onLine(buffered);
  return chunks;
}

type SSEEvent = { event: string; id: string; data: string };

// Parses an event stream read through fetch, as EventSource would.
async function readSSE(resp: Response): Promise<SSEEvent[]> {
  const events: SSEEvent[] = [];
  let cur: SSEEvent = { event: "", id: "", data: "" };
  let hasData = false;
  await readLines(resp, (line) => {
    if (line === "") {
      if (hasData) events.push(cur);
      cur = { event: "", id: "", data: "" };
      hasData = false;
      return;
    }
    const colon = line.indexOf(":");
    const field = line.slice(0, colon);
    const value = line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") cur.event = value;
    if (field === "id") cur.id = value;
    if (field === "data") {
      cur.data = hasData ? cur.data + "\n" + value : value;
      hasData = true;
    }
  });
  return events;
}

async function main() {
  check("the page is on another origin than the API", new URL(api).origin !== location.origin, { api, page: location.origin });

  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    const r = await client.create({ userId: user, name: `t${i}`, meta: { from: "browser" } });
    ids.push(r.id);
  }
  check("Create over Connect from the page", ids.every((id) => id !== ""), ids);

  // 1. The generated client, Connect server streaming.
  const streamed: string[] = [];
  for await (const r of client.list({ userId: user, order: Order.ASC, pageSize: 2 })) {
    streamed.push(r.token?.id ?? "");
  }
  check("TS client over Connect streams List across pages", JSON.stringify(streamed) === JSON.stringify(ids), streamed);

  // 2. fetch, NDJSON read incrementally.
  const nd = await fetch(listURL);
  check("NDJSON List: 200 application/x-ndjson", nd.status === 200 && nd.headers.get("content-type") === "application/x-ndjson",
    [nd.status, nd.headers.get("content-type")]);
  const ndIDs: string[] = [];
  const ndCursors: string[] = [];
  await readLines(nd, (line) => {
    if (line.trim() === "") return;
    const frame = JSON.parse(line);
    ndIDs.push(frame.result?.token?.id);
    ndCursors.push(frame.result?.cursor ?? "");
  });
  check("NDJSON lines parsed as they arrive give every token", JSON.stringify(ndIDs) === JSON.stringify(ids), ndIDs);

  // 3. SSE through fetch, then resumed with Last-Event-ID.
  const sse = await fetch(listURL, { headers: { Accept: "text/event-stream" } });
  check("SSE List: 200 text/event-stream", sse.status === 200 && sse.headers.get("content-type") === "text/event-stream",
    [sse.status, sse.headers.get("content-type")]);
  const all = await readSSE(sse);
  // Tokens are default (message) events; a complete listing then ends
  // with one "end" event, empty data.
  const events = all.filter((e) => e.event === "");
  check("a complete SSE listing ends with an end event", all.length === events.length + 1 && all[all.length - 1].event === "end",
    all.map((e) => e.event));
  const sseIDs = events.map((e) => JSON.parse(e.data).token?.id);
  check("SSE events give every token", JSON.stringify(sseIDs) === JSON.stringify(ids), sseIDs);
  check("SSE event ids are the cursors", events.every((e, i) => e.id === ndCursors[i]) && events[1].id !== "",
    { ids: events.map((e) => e.id), cursors: ndCursors });
  const resumed = await readSSE(await fetch(listURL, { headers: { Accept: "text/event-stream", "Last-Event-ID": events[1].id } }));
  const resumedIDs = resumed.filter((e) => e.event === "").map((e) => JSON.parse(e.data).token?.id);
  check("Last-Event-ID resumes after that token", JSON.stringify(resumedIDs) === JSON.stringify(ids.slice(2)), resumedIDs);

  // 3b. The same stream through EventSource, which insists on the MIME type.
  const viaEventSource = await new Promise<string[]>((resolve) => {
    const got: string[] = [];
    const es = new EventSource(listURL);
    const timer = setTimeout(() => { es.close(); resolve(got); }, 10_000);
    es.onmessage = (e) => {
      got.push(JSON.parse(e.data).token?.id);
      if (got.length === ids.length) { clearTimeout(timer); es.close(); resolve(got); }
    };
  });
  check("EventSource reads the listing", JSON.stringify(viaEventSource) === JSON.stringify(ids), viaEventSource);

  // 3c. A failing SSE listing ends with an error event carrying the Status.
  const badSSE = await readSSE(await fetch(`${api}/v1/users/${user}/tokens?page_size=-1`, { headers: { Accept: "text/event-stream" } }));
  const badStatus = badSSE.length === 1 && badSSE[0].event === "error" ? JSON.parse(badSSE[0].data) : null;
  check("a failing SSE listing is one error event with the Status", badStatus?.details?.[0]?.reason === "INVALID_ARGUMENT", badSSE);

  // 1b. The same client over gRPC-Web: a streamed List, and an error whose
  // status and details come in gRPC-Web's trailer frame.
  const web = createClient(TokenService, createGrpcWebTransport({ baseUrl: api }));
  const viaGrpcWeb: string[] = [];
  for await (const r of web.list({ userId: user, order: Order.ASC, pageSize: 2 })) {
    viaGrpcWeb.push(r.token?.id ?? "");
  }
  check("TS client over gRPC-Web streams List", JSON.stringify(viaGrpcWeb) === JSON.stringify(ids), viaGrpcWeb);
  try {
    await web.delete({ userId: user, tokenId: ".." });
    check("an invalid Delete over gRPC-Web fails", false, "it succeeded");
  } catch (e) {
    const err = ConnectError.from(e);
    const [info] = err.findDetails(ErrorInfoSchema);
    check("gRPC-Web error carries its code and reason", err.code === 3 && info?.reason === "INVALID_ARGUMENT", { code: err.code, info, msg: err.rawMessage });
  }

  // 4. An error shown with its reason.
  try {
    await client.create({ userId: "", name: "x" });
    check("an invalid Create fails", false, "it succeeded");
  } catch (e) {
    const err = ConnectError.from(e);
    const [info] = err.findDetails(ErrorInfoSchema);
    const [bad] = err.findDetails(BadRequestSchema);
    const shown = document.getElementById("error")!;
    shown.textContent = `${info?.reason}: ${bad?.fieldViolations.map((v) => v.field).join(", ")}: ${err.rawMessage}`;
    check("the error is shown with its reason and field", shown.textContent.startsWith("INVALID_ARGUMENT: user_id: "), shown.textContent);
  }
}

main()
  .catch((e) => check("the page ran to the end", false, String(e?.stack ?? e)))
  .finally(() => {
    window.browsertestResult = { passed, failed, lines };
  });
